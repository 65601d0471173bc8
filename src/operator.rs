//! Operator commands that work on the state database directly, so they run beside a live
//! server (SQLite in WAL mode, or PostgreSQL): `uplink account create`, `uplink fleet`,
//! `uplink geoip lookup`, and `uplink uploads …` (in `uploads`).
//!
//! Must not depend on the edge or on HTTP.

pub mod uploads;

use crate::account::{new_pipeline_id, validate_name, Credentials};
use crate::config::DatabaseUrl;
use crate::db::account::{create, NewAccount};
use crate::db::{now_ms, Db, DbError};
use serde_json::{json, Value};

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
    /// The database.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The arguments of `uplink account create`.
#[derive(Debug, Clone)]
pub struct AccountRequest {
    /// Display name.
    pub name: String,
    /// Notification URL (absolute http or https).
    pub notify_url: Option<String>,
    /// Notification body format: `form` or `json`.
    pub notify_format: String,
    /// Whether every status change is notified too.
    pub notify_status_changes: bool,
    /// `UploadProgress` notifications while an upload is receiving, at most once per this
    /// duration (like `"10s"`).
    pub notify_progress: Option<String>,
    /// Storage quota, a byte count or a size like `"10GiB"`.
    pub quota: Option<String>,
    /// Largest single upload, a byte count or a size like `"5GiB"`.
    pub max_upload_size: Option<String>,
    /// Web origins whose pages may upload from a browser (`https://app.example.com`, or `*`).
    pub cors_origins: Vec<String>,
    /// Validity of upload tokens and URLs, like `"2h"` (the node's default when absent).
    pub token_ttl: Option<String>,
}

/// A size argument: a byte count or a size like `10GiB`.
fn size_arg(value: Option<&str>, flag: &str) -> Result<Option<u64>, OperatorError> {
    value
        .map(|v| {
            v.parse::<bytesize::ByteSize>()
                .map(|b| b.as_u64())
                .map_err(|_| {
                    OperatorError::Invalid(format!(
                        "{flag}: {v:?} is not a byte count or a size like 10GiB"
                    ))
                })
        })
        .transpose()
}

/// The human-readable form of [`create_account`]'s result.
#[must_use]
pub fn render_account(account: &Value) -> String {
    let mut out = String::new();
    for key in [
        "id",
        "name",
        "api_key",
        "access_key",
        "secret",
        "pipeline_id",
    ] {
        out += &format!("{key:12} {}\n", account[key].as_str().unwrap_or_default());
    }
    out + "\nThe api_key and secret are shown only now; store them safely.\n"
}

/// Creates an account and its default pipeline; returns what to show the operator, once,
/// including the secrets.
///
/// # Errors
/// A bad argument or a database failure.
pub async fn create_account(
    database: &DatabaseUrl,
    req: &AccountRequest,
) -> Result<Value, OperatorError> {
    let name =
        validate_name(&req.name).map_err(|e| OperatorError::Invalid(format!("--name: {e}")))?;
    if let Some(url) = &req.notify_url {
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            OperatorError::Invalid(format!("--notify-url: {url:?} is not a URL ({e})"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(OperatorError::Invalid(
                "--notify-url: must be an absolute http(s) URL".into(),
            ));
        }
    }
    let notify_format = crate::notify::Format::parse(&req.notify_format)
        .map_err(|e| OperatorError::Invalid(format!("--notify-format: {e}")))?;
    let quota = size_arg(req.quota.as_deref(), "--quota")?;
    let max_upload = size_arg(req.max_upload_size.as_deref(), "--max-upload-size")?;
    let cors_origins = req
        .cors_origins
        .iter()
        .map(|o| {
            crate::cors::validate_origin(o)
                .map_err(|e| OperatorError::Invalid(format!("--cors-origin: {o:?} {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let notify_progress = req
        .notify_progress
        .as_deref()
        .map(|t| match humantime::parse_duration(t) {
            Ok(d) if (1..=3600).contains(&d.as_secs()) => Ok(d.as_millis() as u64),
            _ => Err(OperatorError::Invalid(format!(
                "--notify-progress: {t:?} is not a duration from 1s to 1h, like 10s"
            ))),
        })
        .transpose()?;
    if notify_progress.is_some() && req.notify_url.is_none() {
        return Err(OperatorError::Invalid(
            "--notify-progress needs --notify-url: progress events are notifications".into(),
        ));
    }
    let token_ttl = req
        .token_ttl
        .as_deref()
        .map(|t| match humantime::parse_duration(t) {
            Ok(d) if (60..=7 * 24 * 3600).contains(&d.as_secs()) => Ok(d.as_secs()),
            _ => Err(OperatorError::Invalid(format!(
                "--token-ttl: {t:?} is not a duration from 1m to 7d, like 2h"
            ))),
        })
        .transpose()?;
    let db = Db::open(database).await?;
    let creds = Credentials::generate(&mut rand::rng());
    let new = NewAccount {
        name: name.to_owned(),
        notify_url: req.notify_url.clone(),
        notify_format,
        notify_status_changes: req.notify_status_changes,
        notify_progress_ms: notify_progress,
        quota_bytes: quota,
        max_upload_bytes: max_upload,
        cors_origins,
        token_ttl_secs: token_ttl,
    };
    let pipeline_id = new_pipeline_id(&mut rand::rng());
    let created = create(&db, &new, &creds, &pipeline_id, now_ms()).await?;
    Ok(json!({
        "id": created.id.0,
        "name": new.name,
        "api_key": creds.api_key,
        "access_key": creds.access_key,
        "secret": creds.secret,
        "pipeline_id": created.pipeline_id.0,
        "notify_url": new.notify_url,
        "notify_format": notify_format.name(),
        "notify_status_changes": new.notify_status_changes,
        "notify_progress_ms": new.notify_progress_ms,
        "quota": new.quota_bytes,
        "max_upload_size": new.max_upload_bytes,
        "cors_origins": new.cors_origins,
        "token_ttl_secs": new.token_ttl_secs,
    }))
}

/// `uplink fleet`: every configured edge with its last heartbeat and whether it can be chosen.
///
/// # Errors
/// A database failure.
pub async fn fleet_report(
    database: &DatabaseUrl,
    fleet: &crate::config::FleetSettings,
) -> Result<String, OperatorError> {
    let db = Db::open(database).await?;
    let health = crate::db::edge::health(&db).await?;
    let now = now_ms();
    let mut out = format!(
        "{:16} {:10} {:40} {:>8} {:>6} {:>11} {:>9}  STATE\n",
        "NAME", "REGION", "URL", "CAPACITY", "ACTIVE", "SPOOL FREE", "SEEN"
    );
    for edge in fleet.fleet.edges() {
        let beat = health.get(&edge.name);
        let state = match fleet.fleet.availability(edge, beat, now) {
            Ok(()) => "available".to_owned(),
            Err(why) => why.to_string(),
        };
        let fallback = if edge.name == fleet.fleet.fallback().name {
            " (fallback)"
        } else {
            ""
        };
        out += &format!(
            "{:16} {:10} {:40} {:>8} {:>6} {:>11} {:>9}  {state}{fallback}\n",
            edge.name,
            edge.region,
            edge.url,
            edge.capacity,
            beat.map_or("-".into(), |b| b.active_uploads.to_string()),
            beat.map_or("-".into(), |b| bytesize::ByteSize(b.spool_free_bytes)
                .display()
                .iec()
                .to_string()),
            beat.map_or("never".into(), |b| format!(
                "{}s ago",
                (now - b.seen_ms).max(0) / 1000
            )),
        );
    }
    Ok(out)
}

/// `uplink geoip lookup`: where `address` is and, with a fleet, the edge an upload from it
/// would be sent to now (the same decision the control APIs make).
///
/// # Errors
/// An address that cannot be read, or a database failure.
pub async fn geoip_lookup(
    address: &str,
    locator: &crate::geo::Locator,
    fleet: Option<(&crate::config::FleetSettings, &DatabaseUrl)>,
) -> Result<String, OperatorError> {
    let ip = crate::geo::client::parse_address(address).ok_or_else(|| {
        OperatorError::Invalid(format!(
            "{address:?} is not an IPv4 or IPv6 address or an ip2long number"
        ))
    })?;
    let at = locator.locate(ip);
    let mut out = format!("address      {ip}\n");
    out += &format!(
        "country      {}\n",
        at.country.as_deref().unwrap_or("unknown")
    );
    out += &match (at.coordinates, at.precise) {
        (Some(c), true) => format!("coordinates  {c} (the address's own)\n"),
        (Some(c), false) => format!("coordinates  {c} (the country's reference point)\n"),
        (None, _) => "coordinates  unknown\n".to_owned(),
    };
    if let Some((settings, database)) = fleet {
        let db = Db::open(database).await?;
        let health = crate::db::edge::health(&db).await?;
        let (_, choice) =
            crate::origin::routing::choose(settings, locator, &health, Some(ip), now_ms());
        let why = match choice.reason {
            crate::geo::Reason::Nearest { km } => format!("nearest available, {km:.0} km"),
            crate::geo::Reason::Unlocated => {
                "not located: the fallback or the edge nearest it".into()
            }
            crate::geo::Reason::NoneAvailable => "no edge is available: the fallback".into(),
        };
        out += &format!(
            "edge         {} (region {}, {}): {why}\n",
            choice.edge.name, choice.edge.region, choice.edge.url
        );
    }
    Ok(out)
}
