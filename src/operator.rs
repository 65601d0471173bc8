//! Operator commands that work on the state database directly, so they run beside a live
//! server (SQLite in WAL mode, or PostgreSQL): `uplink account create`, `uplink fleet`,
//! `uplink geoip lookup`, and `uplink uploads …` (in `uploads`).
//!
//! Must not depend on the edge or on HTTP.

pub mod uploads;

use crate::account::{new_pipeline_id, validate_name, Credentials};
use crate::config::DatabaseUrl;
use crate::db::account::{create, AccountSettings, NewAccount};
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

/// An account's settings as an operator writes them on the command line (`uplink account create`
/// and `update`): each one given replaces the account's, each one named in `clear` is removed.
#[derive(Debug, Clone, Default)]
pub struct SettingsArgs {
    /// Notification URL (absolute http or https).
    pub notify_url: Option<String>,
    /// Notification body format: `form` or `json`.
    pub notify_format: Option<String>,
    /// Whether every status change is notified too.
    pub notify_status_changes: Option<bool>,
    /// `UploadProgress` notifications while an upload is receiving, at most once per this
    /// duration (like `"10s"`).
    pub notify_progress: Option<String>,
    /// Storage quota, a byte count or a size like `"10GiB"`.
    pub quota: Option<String>,
    /// Largest single upload, a byte count or a size like `"5GiB"`.
    pub max_upload_size: Option<String>,
    /// Web origins whose pages may upload from a browser (`https://app.example.com`, or `*`);
    /// when any are given they replace the account's list.
    pub cors_origins: Vec<String>,
    /// Validity of upload tokens and URLs, like `"2h"` (the node's default when absent).
    pub token_ttl: Option<String>,
    /// Where the blocking hooks go (absolute http or https).
    pub hook_url: Option<String>,
    /// Which hooks are sent: `pre-create`, `pre-finish` (both when a hook URL is first set).
    pub hooks: Option<Vec<String>>,
    /// Each hook's time limit: `pre-create=2s`.
    pub hook_timeouts: Vec<String>,
    /// Each hook's failure policy: `pre-create=refuse`, `pre-finish=continue`.
    pub hook_on_failure: Vec<String>,
    /// Settings to remove: `notify-url`, `notify-progress`, `quota`, `max-upload-size`,
    /// `cors-origins`, `token-ttl`, `hooks`.
    pub clear: Vec<String>,
}

/// The arguments of `uplink account create`.
#[derive(Debug, Clone)]
pub struct AccountRequest {
    /// Display name.
    pub name: String,
    /// Its settings.
    pub settings: SettingsArgs,
}

fn invalid(flag: &str, why: impl std::fmt::Display) -> OperatorError {
    OperatorError::Invalid(format!("{flag}: {why}"))
}

/// An absolute http(s) URL argument.
fn url_arg(url: &str, flag: &str) -> Result<String, OperatorError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| invalid(flag, format!("{url:?} is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid(flag, "must be an absolute http(s) URL"));
    }
    Ok(url.to_owned())
}

/// A duration argument within `range`.
fn duration_arg(
    value: &str,
    flag: &str,
    range: std::ops::RangeInclusive<std::time::Duration>,
    example: &str,
) -> Result<std::time::Duration, OperatorError> {
    match humantime::parse_duration(value) {
        Ok(d) if range.contains(&d) => Ok(d),
        _ => Err(invalid(
            flag,
            format!(
                "{value:?} is not a duration from {} to {}, like {example}",
                humantime::format_duration(*range.start()),
                humantime::format_duration(*range.end())
            ),
        )),
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `KIND=VALUE` arguments (`pre-create=2s`) as hook kinds and values.
fn per_hook<'a>(
    args: &'a [String],
    flag: &str,
) -> Result<Vec<(crate::hook::Kind, &'a str)>, OperatorError> {
    args.iter()
        .map(|a| {
            let (kind, value) = a.split_once('=').ok_or_else(|| {
                invalid(flag, format!("{a:?} is not HOOK=VALUE, like pre-create=2s"))
            })?;
            Ok((hook_kind(kind, flag)?, value))
        })
        .collect()
}

fn hook_kind(name: &str, flag: &str) -> Result<crate::hook::Kind, OperatorError> {
    crate::hook::Kind::parse(name).map_err(|e| invalid(flag, e))
}

/// The policy of hook `kind`, to change; refused when that hook is not sent.
fn sent<'a>(
    hooks: &'a mut crate::hook::Hooks,
    kind: crate::hook::Kind,
    flag: &str,
) -> Result<&'a mut crate::hook::Policy, OperatorError> {
    hooks
        .policy_mut(kind)
        .as_mut()
        .ok_or_else(|| invalid(flag, format!("{} is not sent (see --hooks)", kind.name())))
}

/// The hook settings `args` give on top of `current`.
fn apply_hooks(
    args: &SettingsArgs,
    current: Option<crate::hook::Hooks>,
) -> Result<Option<crate::hook::Hooks>, OperatorError> {
    use crate::hook::{Hooks, Kind, OnFailure, Policy};
    let mut hooks = match (current, &args.hook_url) {
        (current, Some(url)) => {
            let url = url_arg(url, "--hook-url")?;
            match current {
                Some(h) => Hooks { url, ..h },
                None => Hooks {
                    url,
                    pre_create: Some(Policy::default_for(Kind::PreCreate)),
                    pre_finish: Some(Policy::default_for(Kind::PreFinish)),
                },
            }
        }
        (Some(h), None) => h,
        (None, None) => {
            if args.hooks.is_some()
                || !args.hook_timeouts.is_empty()
                || !args.hook_on_failure.is_empty()
            {
                return Err(invalid("--hooks", "needs --hook-url: hooks are sent there"));
            }
            return Ok(None);
        }
    };
    if let Some(names) = &args.hooks {
        let wanted = names
            .iter()
            .filter(|n| !n.is_empty())
            .map(|n| hook_kind(n, "--hooks"))
            .collect::<Result<Vec<_>, _>>()?;
        for kind in Kind::ALL {
            let policy = hooks.policy_mut(kind);
            *policy = wanted
                .contains(&kind)
                .then(|| policy.unwrap_or(Policy::default_for(kind)));
        }
    }
    for (kind, value) in per_hook(&args.hook_timeouts, "--hook-timeout")? {
        let d = duration_arg(
            value,
            "--hook-timeout",
            crate::hook::TIMEOUTS,
            "pre-create=2s",
        )?;
        sent(&mut hooks, kind, "--hook-timeout")?.timeout_ms = millis(d);
    }
    for (kind, value) in per_hook(&args.hook_on_failure, "--hook-on-failure")? {
        let on_failure = OnFailure::parse(value).map_err(|e| invalid("--hook-on-failure", e))?;
        sent(&mut hooks, kind, "--hook-on-failure")?.on_failure = on_failure;
    }
    Ok(Some(hooks))
}

/// The settings `args` give on top of `current`, validated as a whole.
///
/// # Errors
/// A bad argument.
pub fn apply_settings(
    args: &SettingsArgs,
    current: AccountSettings,
) -> Result<AccountSettings, OperatorError> {
    let mut s = current;
    for name in &args.clear {
        match name.as_str() {
            "notify-url" => s.notify_url = None,
            "notify-progress" => s.notify_progress_ms = None,
            "quota" => s.quota_bytes = None,
            "max-upload-size" => s.max_upload_bytes = None,
            "cors-origins" => s.cors_origins.clear(),
            "token-ttl" => s.token_ttl_secs = None,
            "hooks" => s.hooks = None,
            other => {
                return Err(invalid(
                    "--clear",
                    format!("{other:?} is not a setting that can be removed: use notify-url, notify-progress, quota, max-upload-size, cors-origins, token-ttl or hooks"),
                ))
            }
        }
    }
    if let Some(url) = &args.notify_url {
        s.notify_url = Some(url_arg(url, "--notify-url")?);
    }
    if let Some(format) = &args.notify_format {
        s.notify_format =
            crate::notify::Format::parse(format).map_err(|e| invalid("--notify-format", e))?;
    }
    if let Some(on) = args.notify_status_changes {
        s.notify_status_changes = on;
    }
    if let Some(quota) = args.quota.as_deref() {
        s.quota_bytes = size_arg(Some(quota), "--quota")?;
    }
    if let Some(max) = args.max_upload_size.as_deref() {
        s.max_upload_bytes = size_arg(Some(max), "--max-upload-size")?;
    }
    if !args.cors_origins.is_empty() {
        s.cors_origins = args
            .cors_origins
            .iter()
            .map(|o| {
                crate::cors::validate_origin(o)
                    .map_err(|e| invalid("--cors-origin", format!("{o:?} {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
    }
    if let Some(t) = &args.notify_progress {
        let d = duration_arg(
            t,
            "--notify-progress",
            std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(3600),
            "10s",
        )?;
        s.notify_progress_ms = Some(millis(d));
    }
    if s.notify_progress_ms.is_some() && s.notify_url.is_none() {
        return Err(OperatorError::Invalid(
            "--notify-progress needs --notify-url: progress events are notifications".into(),
        ));
    }
    if let Some(t) = &args.token_ttl {
        let d = duration_arg(
            t,
            "--token-ttl",
            std::time::Duration::from_secs(60)..=std::time::Duration::from_secs(7 * 24 * 3600),
            "2h",
        )?;
        s.token_ttl_secs = Some(d.as_secs());
    }
    s.hooks = apply_hooks(args, s.hooks.take())?;
    Ok(s)
}

/// What an operator sees of an account's settings (no secret).
fn settings_view(s: &AccountSettings) -> Value {
    json!({
        "notify_url": s.notify_url,
        "notify_format": s.notify_format.name(),
        "notify_status_changes": s.notify_status_changes,
        "notify_progress_ms": s.notify_progress_ms,
        "quota": s.quota_bytes,
        "max_upload_size": s.max_upload_bytes,
        "cors_origins": s.cors_origins,
        "token_ttl_secs": s.token_ttl_secs,
        "hooks": s.hooks,
    })
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
    let settings = apply_settings(&req.settings, AccountSettings::default())?;
    let db = Db::open(database).await?;
    let creds = Credentials::generate(&mut rand::rng());
    let new = NewAccount {
        name: name.to_owned(),
        settings,
    };
    let pipeline_id = new_pipeline_id(&mut rand::rng());
    let created = create(&db, &new, &creds, &pipeline_id, now_ms()).await?;
    let mut view = json!({
        "id": created.id.0,
        "name": new.name,
        "api_key": creds.api_key,
        "access_key": creds.access_key,
        "secret": creds.secret,
        "pipeline_id": created.pipeline_id.0,
    });
    merge(&mut view, settings_view(&new.settings));
    Ok(view)
}

/// `uplink account update`: changes the settings `args` name of account `id`; returns the
/// account's settings as they now are (no secret).
///
/// # Errors
/// No such account, a bad argument or a database failure.
pub async fn update_account(
    database: &DatabaseUrl,
    id: &str,
    args: &SettingsArgs,
) -> Result<Value, OperatorError> {
    let db = Db::open(database).await?;
    let (name, current) = crate::db::account::settings(&db, id)
        .await?
        .ok_or_else(|| OperatorError::Invalid(format!("no account {id:?}")))?;
    let settings = apply_settings(args, current)?;
    if !crate::db::account::update(&db, id, &settings).await? {
        return Err(OperatorError::Invalid(format!("no account {id:?}")));
    }
    let mut view = json!({ "id": id, "name": name });
    merge(&mut view, settings_view(&settings));
    Ok(view)
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
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
