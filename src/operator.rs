//! Operator commands that work on the state database directly, so they run beside a live
//! server (SQLite in WAL mode, or PostgreSQL): `uplink account create`.
//!
//! Must not depend on the edge or on HTTP.

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
        "quota": new.quota_bytes,
        "max_upload_size": new.max_upload_bytes,
        "cors_origins": new.cors_origins,
        "token_ttl_secs": new.token_ttl_secs,
    }))
}
