//! Configuration: raw TOML (`deny_unknown_fields`, a doc comment per key) → `validate()` →
//! typed settings, one per role. Sizes and durations are strings (`"8MiB"`, `"30s"`); secrets
//! are given by reference (`{ env = "NAME" }` or `{ file = "/path" }`), never inline.
//!
//! Pure: the environment is passed in as a lookup function and files are only read for secret
//! references; no networking, no database.

use crate::token::Keyring;
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// A secret value. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    #[must_use]
    pub fn new(value: String) -> Self {
        Self(value)
    }
    /// The secret itself, for the one place that needs it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where a secret comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretRef {
    /// The value of this environment variable.
    Env(String),
    /// The contents of this file, surrounding white space removed.
    File(PathBuf),
}

impl SecretRef {
    fn read(&self, key: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
        match self {
            SecretRef::Env(name) => env(name)
                .ok_or_else(|| invalid(key, format!("environment variable {name} is not set"))),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display()))),
        }
    }

    fn resolve(
        &self,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Secret, ConfigError> {
        let value = self.read(key, env)?.trim().to_owned();
        if value.len() < 16 {
            return Err(invalid(key, "the secret must be at least 16 characters"));
        }
        Ok(Secret(value))
    }

    fn keyring(
        &self,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Keyring, ConfigError> {
        Keyring::parse(&self.read(key, env)?).map_err(|e| invalid(key, e))
    }
}

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

fn parse_size(raw: &str, key: &str) -> Result<u64, ConfigError> {
    raw.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| invalid(key, format!("{raw:?} is not a size like \"8MiB\": {e}")))
}

fn parse_duration(raw: &str, key: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(raw)
        .map_err(|e| invalid(key, format!("{raw:?} is not a duration like \"30s\": {e}")))
}

fn parse_addr(raw: &str, key: &str) -> Result<SocketAddr, ConfigError> {
    raw.parse().map_err(|_| {
        invalid(
            key,
            format!("{raw:?} is not an address like \"127.0.0.1:8080\""),
        )
    })
}

fn parse_base_url(raw: &str, key: &str) -> Result<String, ConfigError> {
    let url = raw.trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| invalid(key, format!("{raw:?} must start with http:// or https://")))?;
    if rest.is_empty() || rest.contains(['/', '?', '#']) {
        return Err(invalid(
            key,
            format!("{raw:?} must be a base URL like https://upload.example.com"),
        ));
    }
    Ok(url.to_owned())
}

fn optional_id(raw: Option<&String>, key: &str) -> Result<Option<String>, ConfigError> {
    match raw {
        Some(id) if !crate::token::valid_id(id) => Err(invalid(
            key,
            format!("{id:?} must be 1-64 letters, digits, '-' or '_'"),
        )),
        other => Ok(other.cloned()),
    }
}

fn nonzero(n: usize, key: &str) -> Result<usize, ConfigError> {
    if n == 0 {
        Err(invalid(key, "must be at least 1"))
    } else {
        Ok(n)
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

/// The origin's config file (`config/origin.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrigin {
    /// Address of the control API and the internal edge API, e.g. `"127.0.0.1:8081"`.
    pub listen: String,
    /// State database: `sqlite://PATH?mode=rwc` or `postgres://user@host/db`.
    pub database: String,
    /// Object storage: `file:///path`.
    pub storage: String,
    /// Shared secret the edges present on the internal API.
    pub internal_secret: SecretRef,
    /// Directory for the transcode workers' temporary files.
    pub scratch_dir: PathBuf,
    /// Transcode workers on this node; 0 for an origin that takes no jobs (other origins
    /// sharing the database process them).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// How long a worker holds a job before another may take it over, e.g. `"10m"`.
    #[serde(default = "default_job_lease")]
    pub job_lease: String,
    /// Attempts at a job (after crashes or storage errors) before the upload fails.
    #[serde(default = "default_job_attempts")]
    pub job_attempts: u32,
    /// Keys that sign edge upload tokens, `ID:BASE64` per line or comma-separated (at least
    /// 32 bytes each); the first signs, all verify. By reference, like every secret.
    pub token_keys: SecretRef,
    /// Default validity of an upload token or URL (an account may set its own), e.g. `"4h"`.
    #[serde(default = "default_token_ttl")]
    pub token_ttl: String,
    /// Public base URL of the one edge that upload URLs name, e.g.
    /// `"https://upload.example.com"`; or `[fleet]` to choose among several.
    pub edge_url: Option<String>,
    /// The edges upload URLs may name, chosen by the client's location (instead of `edge_url`).
    pub fleet: Option<RawFleet>,
    /// Largest upload a control API will open (declared sizes above it are refused); keep it
    /// equal to the edges' `max_upload_size`.
    #[serde(default = "default_max_upload")]
    pub max_upload_size: String,
    /// The longest an upload may stay unfinished (its own expiry may be sooner); then the
    /// sweeper releases its record, partial object and spool, e.g. `"7d"`.
    #[serde(default = "default_abandon_after")]
    pub abandon_after: String,
    /// How often the sweeper runs, e.g. `"5m"`.
    #[serde(default = "default_sweep_interval")]
    pub sweep_interval: String,
    /// Transcode templates, watermarks and job limits.
    #[serde(default)]
    pub processing: RawProcessing,
    /// How notifications are retried and guarded.
    #[serde(default)]
    pub notify: RawNotify,
}

/// Processing (`[processing]`, origin and dev): transcode templates, the watermarks Cloud VoD
/// clients name, and the limits of one job.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcessing {
    /// Templates by name (`[processing.templates.NAME]`); `default` is built in (1080p, 720p,
    /// 480p, thumbnail) unless given here.
    #[serde(default)]
    pub templates: std::collections::BTreeMap<String, RawTemplate>,
    /// Watermark images by name, for Cloud VoD's `waterMarkName`.
    #[serde(default)]
    pub watermarks: std::collections::BTreeMap<String, PathBuf>,
    /// Subtitle files by name, for Cloud VoD's `subtitleId`, drawn onto the video.
    #[serde(default)]
    pub subtitles: std::collections::BTreeMap<String, PathBuf>,
    /// The longest one job may run before its upload fails, e.g. `"2h"`. Default `"2h"`.
    pub job_timeout: Option<String>,
    /// The largest video frame accepted, in pixels (width × height). Default 8192 × 4320.
    pub max_pixels: Option<u64>,
}

/// One transcode template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    /// The ladder: `{ height = 720, video_bitrate = "2800k" }` per rung; rungs taller than the
    /// source are left out (never upscaled).
    pub renditions: Vec<RawRendition>,
    /// AAC bit rate, e.g. `"128k"`. Default `"128k"`.
    pub audio_bitrate: Option<String>,
    /// Whether to make a JPEG thumbnail. Default true.
    pub thumbnail: Option<bool>,
    /// Whether to also package the renditions as HLS. Default false.
    pub hls: Option<bool>,
    /// An image (PNG) drawn at the bottom right of every rendition.
    pub watermark: Option<PathBuf>,
    /// A subtitle file (SRT, ASS, WebVTT) drawn onto every rendition.
    pub subtitles: Option<PathBuf>,
}

/// One rung of a template's ladder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRendition {
    /// Output height in pixels.
    pub height: u32,
    /// H.264 bit rate, e.g. `"2800k"` or `"5M"`.
    pub video_bitrate: String,
}

/// Notifications (`[notify]`, origin and dev).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// The wait before the first retry (at most 10 s), doubled on each retry. Default `"5s"`.
    pub first_retry: Option<String>,
    /// The longest wait between retries. Default `"1h"`.
    pub max_retry: Option<String>,
    /// How long a notification is retried before it is given up. Default `"24h"`.
    pub retry_window: Option<String>,
    /// Time limit of one request to the customer's application. Default `"10s"`.
    pub timeout: Option<String>,
    /// Whether notification URLs may reach private, loopback and link-local addresses. Default
    /// false on `uplink origin`, true on `uplink dev`.
    pub allow_private_addresses: Option<bool>,
    /// Notifications sent at once. Default 4.
    pub senders: Option<usize>,
}

fn parse_bitrate(raw: &str, key: &str) -> Result<u64, ConfigError> {
    let (digits, factor) = match raw.strip_suffix(['k', 'K']) {
        Some(d) => (d, 1_000),
        None => match raw.strip_suffix('M') {
            Some(d) => (d, 1_000_000),
            None => (raw, 1),
        },
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .filter(|&n| (8_000..=200_000_000).contains(&n))
        .ok_or_else(|| {
            invalid(
                key,
                format!("{raw:?} is not a bit rate between 8k and 200M, like \"2800k\""),
            )
        })
}

impl RawProcessing {
    /// Checks every template and limit.
    ///
    /// # Errors
    /// The first unusable key.
    pub fn validate(&self) -> Result<Processing, ConfigError> {
        let mut templates = std::collections::BTreeMap::new();
        templates.insert(
            crate::transcode::DEFAULT_TEMPLATE.to_owned(),
            crate::transcode::Template::default(),
        );
        for (name, raw) in &self.templates {
            let key = format!("processing.templates.{name}");
            if raw.renditions.is_empty() {
                return Err(invalid(
                    &format!("{key}.renditions"),
                    "give at least one rung",
                ));
            }
            let mut renditions = Vec::new();
            for (i, r) in raw.renditions.iter().enumerate() {
                let at = format!("{key}.renditions[{i}]");
                if !(16..=8192).contains(&r.height) {
                    return Err(invalid(
                        &format!("{at}.height"),
                        "must be 16 to 8192 pixels",
                    ));
                }
                renditions.push(crate::transcode::Rendition {
                    height: r.height,
                    video_bitrate: parse_bitrate(&r.video_bitrate, &format!("{at}.video_bitrate"))?,
                });
            }
            if let Some(path) = &raw.watermark {
                drawn_file(path, &format!("{key}.watermark"))?;
            }
            if let Some(path) = &raw.subtitles {
                drawn_file(path, &format!("{key}.subtitles"))?;
            }
            templates.insert(
                name.clone(),
                crate::transcode::Template {
                    renditions,
                    audio_bitrate: parse_bitrate(
                        raw.audio_bitrate.as_deref().unwrap_or("128k"),
                        &format!("{key}.audio_bitrate"),
                    )?,
                    thumbnail: raw.thumbnail.unwrap_or(true),
                    hls: raw.hls.unwrap_or(false),
                    watermark: raw.watermark.clone(),
                    subtitles: raw.subtitles.clone(),
                },
            );
        }
        for (name, path) in &self.watermarks {
            drawn_file(path, &format!("processing.watermarks.{name}"))?;
        }
        for (name, path) in &self.subtitles {
            drawn_file(path, &format!("processing.subtitles.{name}"))?;
        }
        let max_pixels = self.max_pixels.unwrap_or(8192 * 4320);
        if max_pixels < 256 {
            return Err(invalid("processing.max_pixels", "must be at least 256"));
        }
        Ok(Processing {
            templates,
            watermarks: self.watermarks.clone(),
            subtitles: self.subtitles.clone(),
            job_timeout: parse_duration(
                self.job_timeout.as_deref().unwrap_or("2h"),
                "processing.job_timeout",
            )?,
            max_pixels,
        })
    }
}

/// A file drawn onto the video (watermark, subtitles): it must exist, and its path is written
/// into a filter graph, so it is kept to characters that need no escaping there.
fn drawn_file(path: &Path, key: &str) -> Result<(), ConfigError> {
    let plain = path.to_str().is_some_and(|p| {
        p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    });
    if !plain {
        return Err(invalid(
            key,
            format!(
                "{}: use a path of letters, digits, '/', '.', '_' and '-' only",
                path.display()
            ),
        ));
    }
    existing_file(path, key)
}

/// A file a key names must exist before the process starts using it.
fn existing_file(path: &Path, key: &str) -> Result<(), ConfigError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{} is not a readable file", path.display()),
        ))
    }
}

impl RawNotify {
    /// Checks every key; `dev` picks the default of `allow_private_addresses`.
    ///
    /// # Errors
    /// The first unusable key.
    pub fn validate(&self, dev: bool) -> Result<NotifySettings, ConfigError> {
        let get = |v: &Option<String>, default: &str, key: &str| {
            parse_duration(v.as_deref().unwrap_or(default), key)
        };
        let first_retry = get(&self.first_retry, "5s", "notify.first_retry")?;
        if first_retry.is_zero() || first_retry > Duration::from_secs(10) {
            return Err(invalid(
                "notify.first_retry",
                "must be more than 0 and at most 10s",
            ));
        }
        Ok(NotifySettings {
            first_retry,
            max_retry: get(&self.max_retry, "1h", "notify.max_retry")?.max(first_retry),
            retry_window: get(&self.retry_window, "24h", "notify.retry_window")?,
            timeout: get(&self.timeout, "10s", "notify.timeout")?,
            allow_private_addresses: self.allow_private_addresses.unwrap_or(dev),
            senders: nonzero(self.senders.unwrap_or(4), "notify.senders")?,
        })
    }
}

/// Validated processing settings.
#[derive(Debug, Clone)]
pub struct Processing {
    /// Templates by name; always has `default`.
    pub templates: std::collections::BTreeMap<String, crate::transcode::Template>,
    /// Watermark images by name.
    pub watermarks: std::collections::BTreeMap<String, PathBuf>,
    /// Subtitle files by name.
    pub subtitles: std::collections::BTreeMap<String, PathBuf>,
    /// The longest one job may run.
    pub job_timeout: Duration,
    /// The largest frame accepted, in pixels.
    pub max_pixels: u64,
}

/// Validated notification settings.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// The wait before the first retry.
    pub first_retry: Duration,
    /// The longest wait between retries.
    pub max_retry: Duration,
    /// How long a notification is retried.
    pub retry_window: Duration,
    /// Time limit of one request.
    pub timeout: Duration,
    /// Whether private addresses may be notified.
    pub allow_private_addresses: bool,
    /// Notifications sent at once.
    pub senders: usize,
}

/// The origin's `[fleet]`: the edges and how one is chosen.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    /// The MaxMind DB that locates addresses: the shipped country database or a city one.
    pub geoip_database: PathBuf,
    /// The edge (by name) for clients that cannot be located.
    pub fallback: String,
    /// An edge whose last heartbeat is older is not chosen, e.g. `"30s"`.
    #[serde(default = "default_heartbeat_timeout")]
    pub heartbeat_timeout: String,
    /// An edge with less free spool space is not chosen, e.g. `"1GiB"`.
    #[serde(default = "default_min_spool_free")]
    pub min_spool_free: String,
    /// Proxies (CIDR) whose `Forwarded` / `X-Forwarded-For` is believed: the edges' and load
    /// balancers' addresses.
    #[serde(default = "default_trusted_proxies")]
    pub trusted_proxies: Vec<String>,
    /// The edges.
    pub edges: Vec<RawFleetEdge>,
}

/// One `[[fleet.edges]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleetEdge {
    /// Unique name: the edge's own `name`.
    pub name: String,
    /// Region: the edge's own `region`; its upload URLs work in this region only.
    pub region: String,
    /// Where it is, in degrees.
    pub latitude: f64,
    /// Where it is, in degrees.
    pub longitude: f64,
    /// Public base URL (HTTP/1.1 and HTTP/2).
    pub url: String,
    /// Public base URL over HTTP/3, if it has one.
    pub h3_url: Option<String>,
    /// Uploads it takes at once.
    pub capacity: u64,
}

/// The edge's config file (`config/edge.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEdge {
    /// Public HTTP address, e.g. `"0.0.0.0:8080"`.
    pub listen: String,
    /// Base URL of the origin's API, e.g. `"http://10.0.0.5:8081"`.
    pub origin_url: String,
    /// Shared secret presented on the origin's internal API.
    pub internal_secret: SecretRef,
    /// Object storage the edge writes uploads to: `file:///path`.
    pub storage: String,
    /// Largest single upload accepted, e.g. `"50GiB"`.
    #[serde(default = "default_max_upload")]
    pub max_upload_size: String,
    /// Largest file the HTML form upload (`POST /files/upload`) accepts, e.g. `"2GiB"`.
    #[serde(default = "default_form_max")]
    pub form_max_size: String,
    /// Worker threads of the HTTP server.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// How long an API key's account lookup is cached, e.g. `"60s"`.
    #[serde(default = "default_auth_cache_ttl")]
    pub auth_cache_ttl: String,
    /// Keys that verify upload tokens: the origin's `token_keys`, by reference.
    pub token_keys: SecretRef,
    /// Directory for chunks that have arrived but are not yet assembled (keep it on the same
    /// durable disk across restarts: acknowledged chunks live here).
    pub spool_dir: PathBuf,
    /// How long past its expiry a token is still accepted (clock skew), e.g. `"30s"`.
    #[serde(default = "default_token_skew")]
    pub token_skew: String,
    /// How often spooled uploads that are no longer receiving are removed, e.g. `"5m"`.
    #[serde(default = "default_sweep_interval")]
    pub sweep_interval: String,
    /// This edge's name in the origin's `[fleet]`; heartbeats are sent only when it is set.
    pub name: Option<String>,
    /// This edge's region in the origin's `[fleet]`; upload URLs of other regions are refused.
    pub region: Option<String>,
    /// How often a heartbeat is sent, e.g. `"10s"`.
    #[serde(default = "default_heartbeat_interval")]
    pub heartbeat_interval: String,
    /// HTTPS and HTTP/3: a TLS listener (HTTP/1.1 and HTTP/2 by ALPN) and a QUIC listener on
    /// the same address over UDP.
    pub tls: Option<RawTls>,
}

/// The edge's `[tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Address of the TLS (TCP) and QUIC (UDP) listeners, e.g. `"0.0.0.0:443"`.
    pub listen: String,
    /// Certificate chain, PEM (re-read when the file changes, no restart needed).
    pub certificate: PathBuf,
    /// Its private key, PEM.
    pub private_key: PathBuf,
}

/// Validated TLS listener settings.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Address of the TCP and UDP listeners.
    pub listen: SocketAddr,
    /// Certificate chain (PEM).
    pub certificate: PathBuf,
    /// Private key (PEM).
    pub private_key: PathBuf,
}

impl RawTls {
    fn validate(&self) -> Result<TlsSettings, ConfigError> {
        existing_file(&self.certificate, "tls.certificate")?;
        existing_file(&self.private_key, "tls.private_key")?;
        Ok(TlsSettings {
            listen: parse_addr(&self.listen, "tls.listen")?,
            certificate: self.certificate.clone(),
            private_key: self.private_key.clone(),
        })
    }
}

/// The embedded default's config file (`config/dev.toml`); every key may also come from the
/// command line.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDev {
    /// Public HTTP address. Default `"127.0.0.1:8080"`.
    pub listen: Option<String>,
    /// Directory for the SQLite database, objects and scratch files. Default `"data"`.
    pub data_dir: Option<PathBuf>,
    /// Object storage. Default `file://DATA_DIR/objects`.
    pub storage: Option<String>,
    /// State database. Default `sqlite://DATA_DIR/uplink.db`.
    pub database: Option<String>,
    /// Transcode workers. Default 1; 0 stores uploads without processing them (benchmarks).
    pub workers: Option<usize>,
    /// Largest single upload accepted. Default `"50GiB"`.
    pub max_upload_size: Option<String>,
    /// Largest HTML-form upload accepted. Default `"2GiB"`.
    pub form_max_size: Option<String>,
    /// The longest an upload may stay unfinished. Default `"7d"`.
    pub abandon_after: Option<String>,
    /// How often the sweepers run. Default `"5m"`.
    pub sweep_interval: Option<String>,
    /// How long a worker holds a job before another may take it over. Default `"10m"`.
    pub job_lease: Option<String>,
    /// Also listen for HTTPS and HTTP/3 here (TCP and UDP), e.g. `"127.0.0.1:8443"`.
    pub tls_listen: Option<String>,
    /// Certificate chain (PEM) for `tls_listen`; default: a self-signed one generated into
    /// `DATA_DIR/tls/`.
    pub tls_certificate: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_private_key: Option<PathBuf>,
    /// Transcode templates, watermarks and job limits.
    #[serde(default)]
    pub processing: RawProcessing,
    /// How notifications are retried and guarded (private addresses allowed by default).
    #[serde(default)]
    pub notify: RawNotify,
}

fn default_heartbeat_timeout() -> String {
    "30s".into()
}
fn default_heartbeat_interval() -> String {
    "10s".into()
}
fn default_min_spool_free() -> String {
    "1GiB".into()
}
fn default_trusted_proxies() -> Vec<String> {
    vec!["127.0.0.1/32".into(), "::1/128".into()]
}
fn default_abandon_after() -> String {
    "7d".into()
}
fn default_sweep_interval() -> String {
    "5m".into()
}
fn default_workers() -> usize {
    1
}
fn default_job_lease() -> String {
    "10m".into()
}
fn default_job_attempts() -> u32 {
    3
}
fn default_max_upload() -> String {
    "50GiB".into()
}
fn default_form_max() -> String {
    "2GiB".into()
}
fn default_threads() -> usize {
    2
}
fn default_auth_cache_ttl() -> String {
    "60s".into()
}
fn default_token_ttl() -> String {
    "4h".into()
}
fn default_token_skew() -> String {
    "30s".into()
}

/// Validated origin settings.
#[derive(Debug, Clone)]
pub struct OriginSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// State database.
    pub database: DatabaseUrl,
    /// Object storage.
    pub storage: StorageUrl,
    /// Internal API secret.
    pub internal_secret: Secret,
    /// Scratch directory for workers.
    pub scratch_dir: PathBuf,
    /// Number of workers.
    pub workers: usize,
    /// Job lease.
    pub job_lease: Duration,
    /// Attempts per job.
    pub job_attempts: u32,
    /// Token keys.
    pub keyring: Keyring,
    /// Default token validity.
    pub token_ttl: Duration,
    /// Which edge upload URLs name.
    pub routing: Routing,
    /// Largest upload in bytes.
    pub max_upload_size: u64,
    /// The longest an upload may stay unfinished.
    pub abandon_after: Duration,
    /// How often the sweeper runs.
    pub sweep_interval: Duration,
    /// Templates and job limits.
    pub processing: Processing,
    /// Notification delivery.
    pub notify: NotifySettings,
}

/// Validated edge settings.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Origin base URL, without a trailing slash.
    pub origin_url: String,
    /// The origin's socket address, for the proxy.
    pub origin_addr: String,
    /// Internal API secret.
    pub internal_secret: Secret,
    /// Object storage.
    pub storage: StorageUrl,
    /// Largest upload in bytes.
    pub max_upload_size: u64,
    /// Largest HTML-form upload in bytes.
    pub form_max_size: u64,
    /// Server threads.
    pub threads: usize,
    /// Account cache lifetime.
    pub auth_cache_ttl: Duration,
    /// Token keys.
    pub keyring: Keyring,
    /// Allowed clock skew, in seconds.
    pub token_skew: u64,
    /// Spool directory.
    pub spool_dir: PathBuf,
    /// How often the spool sweeper runs.
    pub sweep_interval: Duration,
    /// HTTPS and HTTP/3 listeners, if any.
    pub tls: Option<TlsSettings>,
    /// Name in the origin's fleet (heartbeats are sent when set).
    pub name: Option<String>,
    /// Region: tokens scoped to another region are refused.
    pub region: Option<String>,
    /// How often heartbeats are sent.
    pub heartbeat_interval: Duration,
}

/// Which edge the origin's upload URLs name.
#[derive(Debug, Clone)]
pub enum Routing {
    /// Always this one (base URL without a trailing slash).
    Single(String),
    /// The nearest healthy edge of a fleet.
    Fleet(FleetSettings),
}

/// A validated `[fleet]`.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// The edges and the rules for choosing.
    pub fleet: crate::geo::Fleet,
    /// The MaxMind DB file.
    pub geoip_database: PathBuf,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl RawFleet {
    /// Checks the fleet's keys (it has no secrets).
    ///
    /// # Errors
    /// The first key with an unusable value.
    pub fn validate(&self) -> Result<FleetSettings, ConfigError> {
        let mut edges = Vec::with_capacity(self.edges.len());
        for (i, e) in self.edges.iter().enumerate() {
            let key = |k: &str| format!("fleet.edges[{i}].{k}");
            let at = crate::geo::Coordinates::new(e.latitude, e.longitude)
                .map_err(|m| invalid(&key("latitude"), m))?;
            if e.capacity == 0 {
                return Err(invalid(&key("capacity"), "must be at least 1"));
            }
            edges.push(crate::geo::Edge {
                name: e.name.clone(),
                region: e.region.clone(),
                at,
                url: parse_base_url(&e.url, &key("url"))?,
                h3_url: e
                    .h3_url
                    .as_deref()
                    .map(|u| parse_base_url(u, &key("h3_url")))
                    .transpose()?,
                capacity: e.capacity,
            });
        }
        let timeout = parse_duration(&self.heartbeat_timeout, "fleet.heartbeat_timeout")?;
        let fleet = crate::geo::Fleet::new(
            edges,
            &self.fallback,
            i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX),
            parse_size(&self.min_spool_free, "fleet.min_spool_free")?,
        )
        .map_err(|m| invalid("fleet", m))?;
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|n| {
                n.parse::<ipnet::IpNet>()
                    .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        invalid(
                            "fleet.trusted_proxies",
                            format!("{n:?} is not an address or a network like 10.0.0.0/8"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(FleetSettings {
            fleet,
            geoip_database: self.geoip_database.clone(),
            trusted_proxies,
        })
    }
}

impl RawOrigin {
    /// Checks every key and resolves the secret.
    ///
    /// # Errors
    /// The first key with an unusable value.
    pub fn validate(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<OriginSettings, ConfigError> {
        if self.job_attempts == 0 {
            return Err(invalid("job_attempts", "must be at least 1"));
        }
        Ok(OriginSettings {
            listen: parse_addr(&self.listen, "listen")?,
            database: DatabaseUrl::parse(&self.database, "database")?,
            storage: StorageUrl::parse(&self.storage, "storage")?,
            internal_secret: self.internal_secret.resolve("internal_secret", env)?,
            scratch_dir: self.scratch_dir.clone(),
            workers: self.workers,
            job_lease: parse_duration(&self.job_lease, "job_lease")?,
            job_attempts: self.job_attempts,
            keyring: self.token_keys.keyring("token_keys", env)?,
            token_ttl: parse_duration(&self.token_ttl, "token_ttl")?,
            routing: match (&self.edge_url, &self.fleet) {
                (Some(url), None) => Routing::Single(parse_base_url(url, "edge_url")?),
                (None, Some(fleet)) => Routing::Fleet(fleet.validate()?),
                _ => {
                    return Err(invalid(
                        "edge_url",
                        "give either edge_url (one edge) or a [fleet] of edges, not both",
                    ))
                }
            },
            max_upload_size: parse_size(&self.max_upload_size, "max_upload_size")?,
            abandon_after: parse_duration(&self.abandon_after, "abandon_after")?,
            sweep_interval: parse_duration(&self.sweep_interval, "sweep_interval")?,
            processing: self.processing.validate()?,
            notify: self.notify.validate(false)?,
        })
    }
}

impl RawEdge {
    /// Checks every key and resolves the secret.
    ///
    /// # Errors
    /// The first key with an unusable value.
    pub fn validate(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<EdgeSettings, ConfigError> {
        let origin_url = self.origin_url.trim_end_matches('/').to_owned();
        let origin_addr = origin_url
            .strip_prefix("http://")
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .ok_or_else(|| {
                invalid(
                    "origin_url",
                    "must be http://HOST:PORT (the internal network)",
                )
            })?
            .to_owned();
        if !origin_addr.contains(':') {
            return Err(invalid(
                "origin_url",
                "must name the port, e.g. http://10.0.0.5:8081",
            ));
        }
        Ok(EdgeSettings {
            listen: parse_addr(&self.listen, "listen")?,
            origin_url,
            origin_addr,
            internal_secret: self.internal_secret.resolve("internal_secret", env)?,
            storage: StorageUrl::parse(&self.storage, "storage")?,
            max_upload_size: parse_size(&self.max_upload_size, "max_upload_size")?,
            form_max_size: parse_size(&self.form_max_size, "form_max_size")?,
            threads: nonzero(self.threads, "threads")?,
            auth_cache_ttl: parse_duration(&self.auth_cache_ttl, "auth_cache_ttl")?,
            keyring: self.token_keys.keyring("token_keys", env)?,
            token_skew: parse_duration(&self.token_skew, "token_skew")?.as_secs(),
            spool_dir: self.spool_dir.clone(),
            sweep_interval: parse_duration(&self.sweep_interval, "sweep_interval")?,
            name: optional_id(self.name.as_ref(), "name")?,
            region: optional_id(self.region.as_ref(), "region")?,
            heartbeat_interval: parse_duration(&self.heartbeat_interval, "heartbeat_interval")?,
            tls: self.tls.as_ref().map(RawTls::validate).transpose()?,
        })
    }
}

/// Validated settings of the embedded default: the two roles' settings plus the data dir.
#[derive(Debug, Clone)]
pub struct DevSettings {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The origin part (listens on an ephemeral loopback port).
    pub origin: OriginSettings,
    /// The edge part (the one public port).
    pub edge: EdgeSettings,
    /// Whether the TLS certificate is one the node generates for itself (none was given).
    pub self_signed: bool,
}

impl RawDev {
    /// The data directory in effect (default `data`).
    #[must_use]
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("data"))
    }

    /// Checks every key; `secret` is the internal secret generated for this process.
    ///
    /// # Errors
    /// The first key with an unusable value.
    pub fn validate(&self, secret: Secret, keyring: Keyring) -> Result<DevSettings, ConfigError> {
        let data_dir = self.data_dir();
        let storage = match &self.storage {
            Some(raw) => StorageUrl::parse(raw, "storage")?,
            None => StorageUrl::File(data_dir.join("objects")),
        };
        let database = match &self.database {
            Some(raw) => DatabaseUrl::parse(raw, "database")?,
            None => DatabaseUrl::in_data_dir(&data_dir),
        };
        let listen = parse_addr(self.listen.as_deref().unwrap_or("127.0.0.1:8080"), "listen")?;
        let self_signed = self.tls_certificate.is_none();
        let tls = match (&self.tls_listen, &self.tls_certificate, &self.tls_private_key) {
            (None, _, _) => None,
            (Some(addr), Some(certificate), Some(private_key)) => Some(
                RawTls {
                    listen: addr.clone(),
                    certificate: certificate.clone(),
                    private_key: private_key.clone(),
                }
                .validate()?,
            ),
            (Some(addr), None, None) => Some(TlsSettings {
                listen: parse_addr(addr, "tls_listen")?,
                certificate: data_dir.join("tls/certificate.pem"),
                private_key: data_dir.join("tls/private-key.pem"),
            }),
            _ => {
                return Err(invalid(
                    "tls_certificate",
                    "give both tls_certificate and tls_private_key, or neither (a self-signed certificate is made)",
                ))
            }
        };
        let max_upload_size = parse_size(
            &self
                .max_upload_size
                .clone()
                .unwrap_or_else(default_max_upload),
            "max_upload_size",
        )?;
        let form_max_size = parse_size(
            &self.form_max_size.clone().unwrap_or_else(default_form_max),
            "form_max_size",
        )?;
        let abandon_after = parse_duration(
            &self
                .abandon_after
                .clone()
                .unwrap_or_else(default_abandon_after),
            "abandon_after",
        )?;
        let sweep_interval = parse_duration(
            &self
                .sweep_interval
                .clone()
                .unwrap_or_else(default_sweep_interval),
            "sweep_interval",
        )?;
        Ok(DevSettings {
            origin: OriginSettings {
                // The origin is internal to the process: an ephemeral loopback port.
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                database,
                storage: storage.clone(),
                internal_secret: secret.clone(),
                scratch_dir: data_dir.join("scratch"),
                workers: self.workers.unwrap_or(1),
                job_lease: parse_duration(
                    &self.job_lease.clone().unwrap_or_else(default_job_lease),
                    "job_lease",
                )?,
                job_attempts: default_job_attempts(),
                keyring: keyring.clone(),
                token_ttl: Duration::from_secs(4 * 3600),
                routing: Routing::Single(format!("http://{listen}")),
                max_upload_size,
                abandon_after,
                sweep_interval,
                processing: self.processing.validate()?,
                notify: self.notify.validate(true)?,
            },
            edge: EdgeSettings {
                listen,
                // Filled in once the origin is bound.
                origin_url: String::new(),
                origin_addr: String::new(),
                internal_secret: secret,
                storage,
                max_upload_size,
                form_max_size,
                threads: default_threads(),
                auth_cache_ttl: Duration::from_secs(60),
                keyring,
                token_skew: 30,
                spool_dir: data_dir.join("spool"),
                sweep_interval,
                name: None,
                region: None,
                heartbeat_interval: Duration::from_secs(10),
                tls,
            },
            self_signed,
            data_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(s.origin_addr, "127.0.0.1:2");
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
            e.origin_url = "https://origin".into();
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
