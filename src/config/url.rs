//! Where objects and state live, chosen by URL: `file://` or `s3://bucket/prefix?…` storage,
//! `sqlite://` or `postgres://` databases. Pure.

use super::{invalid, ConfigError};
use std::path::{Path, PathBuf};

/// Where objects are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    /// Local files under this directory (`file:///path`).
    File(PathBuf),
    /// An S3 bucket (`s3://bucket/prefix?options`); credentials, region and endpoint come from
    /// the standard `AWS_*` variables (`AWS_ENDPOINT_URL` for other S3 servers).
    S3(S3Location),
}

/// An S3 bucket, the key prefix under it, and how to write multipart uploads there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// Prepended to every key (empty, or ending in `/`).
    pub prefix: String,
    /// Path-style addressing (`endpoint/bucket/key`), as MinIO and most non-AWS servers want.
    pub path_style: bool,
    /// The part size to start from (`part_size=16MiB`; default 8 MiB).
    pub part_size: u64,
    /// Parts uploaded at once per upload (`parts_in_flight=4`).
    pub parts_in_flight: usize,
    /// Every part but the last the same size (`equal_parts=true`; Cloudflare R2 needs it).
    pub equal_parts: bool,
}

impl StorageUrl {
    /// Parses `file:///path` (or a bare absolute or relative path).
    ///
    /// # Errors
    /// A message for an unknown scheme.
    pub fn parse(raw: &str, key: &str) -> Result<Self, ConfigError> {
        if let Some(path) = raw.strip_prefix("file://") {
            if path.is_empty() {
                return Err(invalid(
                    key,
                    "file:// needs a directory, e.g. file:///var/lib/uplink/objects",
                ));
            }
            return Ok(StorageUrl::File(PathBuf::from(path)));
        }
        if let Some(rest) = raw.strip_prefix("s3://") {
            return parse_s3(rest)
                .map(StorageUrl::S3)
                .map_err(|e| invalid(key, e));
        }
        if raw.contains("://") {
            return Err(invalid(
                key,
                format!("unknown storage scheme in {raw:?}; use file:///path"),
            ));
        }
        Ok(StorageUrl::File(PathBuf::from(raw)))
    }
}

const S3_OPTIONS: &str = "path_style, part_size, parts_in_flight, equal_parts";

/// `bucket/prefix?path_style=true&part_size=16MiB&parts_in_flight=4&equal_parts=true`.
fn parse_s3(rest: &str) -> Result<S3Location, String> {
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid_bucket {
        return Err(format!(
            "{bucket:?} is not an S3 bucket name (3 to 63 lower-case letters, digits, - or .)"
        ));
    }
    let prefix = prefix.trim_matches('/');
    let mut s3 = S3Location {
        bucket: bucket.to_owned(),
        prefix: if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        },
        path_style: false,
        part_size: 8 * 1024 * 1024,
        parts_in_flight: 4,
        equal_parts: false,
    };
    let flag = |name: &str, v: &str| match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{name} must be true or false, not {v:?}")),
    };
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "path_style" => s3.path_style = flag(&name, &value)?,
            "equal_parts" => s3.equal_parts = flag(&name, &value)?,
            "part_size" => {
                s3.part_size = value
                    .parse::<bytesize::ByteSize>()
                    .map_err(|_| format!("part_size {value:?} is not a size like 16MiB"))?
                    .as_u64();
                if s3.part_size < 5 * 1024 * 1024 {
                    return Err("part_size must be at least 5MiB (S3's smallest part)".into());
                }
            }
            "parts_in_flight" => {
                s3.parts_in_flight = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or("parts_in_flight must be a number from 1 to 64")?;
            }
            other => return Err(format!("unknown S3 option {other:?} ({S3_OPTIONS})")),
        }
    }
    Ok(s3)
}

/// Which database holds the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// SQLite file, as a sqlx URL (`sqlite://path?mode=rwc`).
    Sqlite(String),
    /// PostgreSQL URL (`postgres://user@host:port/db`).
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses a `sqlite:` or `postgres://` URL.
    ///
    /// # Errors
    /// A message for any other scheme.
    pub fn parse(raw: &str, key: &str) -> Result<Self, ConfigError> {
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(raw.to_owned()))
        } else if raw.starts_with("sqlite:") {
            Ok(DatabaseUrl::Sqlite(raw.to_owned()))
        } else {
            Err(invalid(
                key,
                format!("unsupported database URL {raw:?}; use sqlite://PATH or postgres://…"),
            ))
        }
    }

    /// The SQLite database of a data directory.
    #[must_use]
    pub fn in_data_dir(dir: &Path) -> Self {
        DatabaseUrl::Sqlite(format!(
            "sqlite://{}?mode=rwc",
            dir.join("uplink.db").display()
        ))
    }

    /// The URL for sqlx.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            DatabaseUrl::Sqlite(u) | DatabaseUrl::Postgres(u) => u,
        }
    }
}
