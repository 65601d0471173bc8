//! Configuration: raw TOML (`deny_unknown_fields`, a doc comment per key) → `validate()` →
//! typed settings, one per role. Sizes and durations are strings (`"8MiB"`, `"30s"`); secrets
//! are given by reference (`{ env = "NAME" }` or `{ file = "/path" }`), never inline.
//!
//! Layout, by concern: `secret` (references), `url` (storage and database URLs), `value` (sizes,
//! durations, addresses), `defaults` (every default, shared by the roles and `uplink dev`),
//! `processing` (`[processing]`, `[notify]`), `origin`, `edge`, `dev` (one file per role).
//!
//! Pure: the environment is passed in as a lookup function and files are only read for secret
//! references; no networking, no database.

mod defaults;
mod dev;
mod edge;
mod limits;
mod origin;
mod processing;
mod secret;
mod url;
mod value;

pub use dev::{DevSettings, RawDev};
pub use edge::{
    EdgeSettings, FetchSettings, OneOrMany, OriginAddr, RawEdge, RawFetch, RawTls, TlsSettings,
};
pub use limits::{Limits, RawLimits};
pub use origin::{
    FleetSettings, OriginSettings, RawFleet, RawFleetEdge, RawFleetRegion, RawOrigin, Routing,
};
pub use processing::{
    NotifySettings, Processing, RawNotify, RawProcessing, RawRendition, RawTemplate,
};
pub use secret::{Secret, SecretRef};
pub use url::{DatabaseUrl, S3Location, StorageUrl};

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// How a role writes its log lines (to stderr).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event (`timestamp`, `level`, `fields`, `target`, `spans`), for log
    /// collectors.
    Json,
}

/// What went wrong with a configuration, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this role (includes unknown keys).
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause, with the key and position.
        #[source]
        source: toml::de::Error,
    },
    /// A key has a value that cannot be used.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// The key path, e.g. `internal_secret.env`.
        key: String,
        /// What is wrong, in words.
        message: String,
    },
}

pub(super) fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Reads and parses a TOML file into a raw config.
///
/// # Errors
/// The file cannot be read, or is not valid for this role.
pub fn load<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Keyring;
    use std::time::Duration;
    use value::parse_base_url;

    fn env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("0123456789abcdef0123".to_owned()),
            "KEYS" => Some(format!("k1:{}", "A".repeat(44))),
            _ => None,
        }
    }

    fn edge(extra: &str) -> Result<RawEdge, toml::de::Error> {
        toml::from_str(&format!(
            "listen = \"127.0.0.1:1\"\norigin_url = \"http://127.0.0.1:2\"\n\
             internal_secret = {{ env = \"SECRET\" }}\nstorage = \"file:///tmp/x\"\n\
             token_keys = {{ env = \"KEYS\" }}\nspool_dir = \"/tmp/spool\"\n{extra}"
        ))
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let err = edge("colour = \"red\"").unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn sizes_and_durations_are_parsed() {
        let s = edge("max_upload_size = \"8MiB\"\nauth_cache_ttl = \"2m\"")
            .unwrap()
            .validate(&env)
            .unwrap();
        assert_eq!(s.max_upload_size, 8 * 1024 * 1024);
        assert_eq!(s.auth_cache_ttl, Duration::from_secs(120));
        assert_eq!(s.origins[0].addr, "127.0.0.1:2");
        let err = edge("max_upload_size = \"lots\"")
            .unwrap()
            .validate(&env)
            .unwrap_err();
        assert!(err.to_string().contains("max_upload_size"), "{err}");
    }

    #[test]
    fn missing_or_short_secrets_name_their_key() {
        let raw: RawEdge = toml::from_str(
            "listen = \"127.0.0.1:1\"\norigin_url = \"http://127.0.0.1:2\"\n\
             internal_secret = { env = \"NOPE\" }\nstorage = \"file:///tmp/x\"\n\
             token_keys = { env = \"KEYS\" }\nspool_dir = \"/tmp/spool\"",
        )
        .unwrap();
        let err = raw.validate(&env).unwrap_err().to_string();
        assert!(
            err.contains("internal_secret") && err.contains("NOPE"),
            "{err}"
        );
        let short = |n: &str| {
            if n == "KEYS" {
                env(n)
            } else {
                Some("short".to_owned())
            }
        };
        assert!(raw.validate(&short).unwrap_err().to_string().contains("16"));
    }

    #[test]
    fn token_keys_and_edge_urls_are_checked() {
        let bad_keys = |n: &str| {
            if n == "KEYS" {
                Some("k1:c2hvcnQ=".to_owned())
            } else {
                env(n)
            }
        };
        let err = edge("")
            .unwrap()
            .validate(&bad_keys)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("token_keys") && err.contains("32 bytes"),
            "{err}"
        );
        assert_eq!(
            parse_base_url("https://up.example.com/", "edge_url").unwrap(),
            "https://up.example.com"
        );
        for bad in ["up.example.com", "https://", "https://x/path", "ftp://x"] {
            assert!(parse_base_url(bad, "edge_url").is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_are_checked() {
        let StorageUrl::S3(s3) = StorageUrl::parse(
            "s3://media-bucket/uploads/edge1?path_style=true&part_size=16MiB",
            "storage",
        )
        .unwrap() else {
            panic!("not S3")
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str(), s3.path_style),
            ("media-bucket", "uploads/edge1/", true)
        );
        assert_eq!((s3.part_size, s3.parts_in_flight), (16 << 20, 4));
        for bad in [
            "s3://B/p",
            "s3://ok-bucket?part_size=1MiB",
            "s3://ok-bucket?colour=red",
            "s3://ok-bucket?path_style=maybe",
        ] {
            assert!(StorageUrl::parse(bad, "storage").is_err(), "{bad}");
        }
        assert!(StorageUrl::parse("ftp://x", "storage").is_err());
        assert_eq!(
            StorageUrl::parse("file:///srv/o", "storage").unwrap(),
            StorageUrl::File("/srv/o".into())
        );
        assert!(DatabaseUrl::parse("mysql://x", "database").is_err());
        assert!(matches!(
            DatabaseUrl::parse("postgres://postgres@127.0.0.1/x", "database"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        let bad = edge("").map(|mut e| {
            e.origin_url = OneOrMany::One("https://origin".into());
            e
        });
        assert!(bad
            .unwrap()
            .validate(&env)
            .unwrap_err()
            .to_string()
            .contains("origin_url"));
    }

    #[test]
    fn region_urls_name_a_known_region_once() {
        let fleet = |regions: &str| -> Result<FleetSettings, ConfigError> {
            let geoip = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/geoip/geo-whois-asn-country.mmdb"
            );
            let raw: RawFleet = toml::from_str(&format!(
                "geoip_database = \"{geoip}\"\nfallback = \"a\"\n{regions}\n\
                 [[edges]]\nname = \"a\"\nregion = \"eu\"\nlatitude = 50.0\nlongitude = 8.0\n\
                 url = \"https://a.example.com\"\ncapacity = 10\n"
            ))
            .unwrap();
            raw.validate()
        };
        let eu = "[[regions]]\nname = \"eu\"\nurl = \"https://eu.example.com/\"\n";
        let settings = fleet(eu).unwrap();
        let edge = settings.fleet.edge("a").unwrap();
        assert_eq!(settings.url_for(edge), "https://eu.example.com");
        assert_eq!(fleet("").unwrap().url_for(edge), "https://a.example.com");
        let err = fleet(&eu.replace("eu\"\nurl", "na\"\nurl")).unwrap_err();
        assert!(err.to_string().contains("fleet.regions[0].name"), "{err}");
        assert!(fleet(&format!("{eu}{eu}")).is_err(), "twice");
    }

    #[test]
    fn dev_takes_the_roles_defaults() {
        let keys = Keyring::parse(&format!("k1:{}", "A".repeat(44))).unwrap();
        let dev = RawDev::default()
            .validate(Secret::new("x".repeat(32)), keys)
            .unwrap();
        let edge = edge("").unwrap().validate(&env).unwrap();
        let origin: RawOrigin = toml::from_str(
            "listen = \"127.0.0.1:1\"\ndatabase = \"sqlite:///tmp/x.db\"\n\
             storage = \"file:///tmp/x\"\ninternal_secret = { env = \"SECRET\" }\n\
             scratch_dir = \"/tmp/s\"\ntoken_keys = { env = \"KEYS\" }\n\
             edge_url = \"http://127.0.0.1:1\"",
        )
        .unwrap();
        let origin = origin.validate(&env).unwrap();
        let (d, e) = (&dev.edge, &edge);
        assert_eq!(
            (
                d.max_upload_size,
                d.form_max_size,
                d.threads,
                d.auth_cache_ttl
            ),
            (
                e.max_upload_size,
                e.form_max_size,
                e.threads,
                e.auth_cache_ttl
            )
        );
        assert_eq!(
            (d.token_skew, d.sweep_interval, d.heartbeat_interval),
            (e.token_skew, e.sweep_interval, e.heartbeat_interval)
        );
        let (d, o) = (&dev.origin, &origin);
        assert_eq!(
            (d.workers, d.job_lease, d.job_attempts, d.token_ttl),
            (o.workers, o.job_lease, o.job_attempts, o.token_ttl)
        );
        assert_eq!(
            (d.max_upload_size, d.abandon_after, d.sweep_interval),
            (o.max_upload_size, o.abandon_after, o.sweep_interval)
        );
    }

    #[test]
    fn dev_defaults_live_under_the_data_dir() {
        let raw = RawDev {
            data_dir: Some("/tmp/d".into()),
            ..RawDev::default()
        };
        let keys = Keyring::parse(&format!("k1:{}", "A".repeat(44))).unwrap();
        let s = raw.validate(Secret::new("x".repeat(32)), keys).unwrap();
        assert!(matches!(&s.origin.routing, Routing::Single(u) if u == "http://127.0.0.1:8080"));
        assert_eq!(s.edge.storage, StorageUrl::File("/tmp/d/objects".into()));
        assert_eq!(
            s.origin.database,
            DatabaseUrl::Sqlite("sqlite:///tmp/d/uplink.db?mode=rwc".into())
        );
        assert_eq!(s.edge.listen.to_string(), "127.0.0.1:8080");
    }
}
