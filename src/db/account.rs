//! Accounts and their pipelines.

use super::{Db, DbError, Op};
use crate::account::{api_key_fingerprint, AccountId, Credentials, PipelineId};
pub use crate::control::KeyOwner;
use sqlx::Row;

/// An account's settings, as an operator sets them at creation and changes them later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountSettings {
    /// Where notifications go.
    pub notify_url: Option<String>,
    /// Their body format.
    pub notify_format: crate::notify::Format,
    /// Whether every status change is notified too.
    pub notify_status_changes: bool,
    /// Send `UploadProgress` while an upload is receiving, at most once per this many ms.
    pub notify_progress_ms: Option<u64>,
    /// Bytes the account may store, if limited.
    pub quota_bytes: Option<u64>,
    /// The largest single upload, if limited.
    pub max_upload_bytes: Option<u64>,
    /// Web origins allowed to upload from a browser (validated).
    pub cors_origins: Vec<String>,
    /// Validity of the account's upload tokens and URLs, if not the node's default.
    pub token_ttl_secs: Option<u64>,
    /// Its blocking hooks, if any.
    pub hooks: Option<crate::hook::Hooks>,
}

/// What an operator asked for when creating an account.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Display name.
    pub name: String,
    /// Its settings.
    pub settings: AccountSettings,
}

/// A size in bytes (or a count) as the database keeps it.
fn signed(v: Option<u64>) -> Result<Option<i64>, DbError> {
    v.map(i64::try_from)
        .transpose()
        .map_err(|_| DbError::Corrupt("a size larger than 2^63 bytes".into()))
}

/// The settings' columns, as text JSON where they are lists or objects.
fn settings_columns(s: &AccountSettings) -> Result<[Option<String>; 2], DbError> {
    let cors = (!s.cors_origins.is_empty()).then(|| serde_json::json!(s.cors_origins).to_string());
    let hooks = s
        .hooks
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| DbError::Corrupt(format!("hook settings: {e}")))?;
    Ok([cors, hooks])
}

/// A created account, with the ids the operator needs.
#[derive(Debug, Clone)]
pub struct CreatedAccount {
    /// The account.
    pub id: AccountId,
    /// Its default pipeline.
    pub pipeline_id: PipelineId,
}

/// Inserts an account and its default pipeline in one transaction.
///
/// # Errors
/// The insert fails.
pub async fn create(
    db: &Db,
    new: &NewAccount,
    creds: &Credentials,
    pipeline_id: &PipelineId,
    now: i64,
) -> Result<CreatedAccount, DbError> {
    let id = AccountId(uuid::Uuid::new_v4().to_string());
    let s = &new.settings;
    let [cors, hooks] = settings_columns(s)?;
    let mut tx = db.pool().begin().await.op("begin account creation")?;
    sqlx::query(
        "INSERT INTO accounts (id, name, api_key_sha256, access_key, secret, notify_url, quota_bytes, created_at, token_ttl_secs, max_upload_bytes, cors_origins, \
                               notify_format, notify_status_changes, notify_progress_ms, hooks) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&id.0)
    .bind(&new.name)
    .bind(api_key_fingerprint(&creds.api_key))
    .bind(&creds.access_key)
    .bind(&creds.secret)
    .bind(s.notify_url.as_deref())
    .bind(signed(s.quota_bytes)?)
    .bind(now)
    .bind(signed(s.token_ttl_secs)?)
    .bind(signed(s.max_upload_bytes)?)
    .bind(cors)
    .bind(s.notify_format.name())
    .bind(i64::from(s.notify_status_changes))
    .bind(signed(s.notify_progress_ms)?)
    .bind(hooks)
    .execute(&mut *tx)
    .await
    .op("insert an account")?;
    sqlx::query(
        "INSERT INTO pipelines (id, account_id, name, storage_root, template, created_at) \
         VALUES ($1, $2, 'default', $3, 'default', $4)",
    )
    .bind(&pipeline_id.0)
    .bind(&id.0)
    .bind(format!("accounts/{}/", id.0))
    .bind(now)
    .execute(&mut *tx)
    .await
    .op("insert the default pipeline")?;
    tx.commit().await.op("commit account creation")?;
    Ok(CreatedAccount {
        id,
        pipeline_id: pipeline_id.clone(),
    })
}

/// An account's name and settings, `None` if there is no such account.
///
/// # Errors
/// The query fails or a stored setting is unreadable.
pub async fn settings(db: &Db, id: &str) -> Result<Option<(String, AccountSettings)>, DbError> {
    let row = sqlx::query(
        "SELECT name, notify_url, notify_format, notify_status_changes, notify_progress_ms, quota_bytes, \
                max_upload_bytes, cors_origins, token_ttl_secs, hooks FROM accounts WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await
    .op("read an account's settings")?;
    let Some(row) = row else { return Ok(None) };
    let op = "read an account's settings";
    let unsigned = |column: &str| -> Result<Option<u64>, DbError> {
        let v: Option<i64> = row.try_get(column).op(op)?;
        Ok(v.and_then(|v| u64::try_from(v).ok()))
    };
    let cors: Option<String> = row.try_get("cors_origins").op(op)?;
    let hooks: Option<String> = row.try_get("hooks").op(op)?;
    let settings = AccountSettings {
        notify_url: row.try_get("notify_url").op(op)?,
        notify_format: super::outbox::format_of(&row, op)?,
        notify_status_changes: row
            .try_get::<Option<i64>, _>("notify_status_changes")
            .op(op)?
            .is_some_and(|v| v != 0),
        notify_progress_ms: unsigned("notify_progress_ms")?,
        quota_bytes: unsigned("quota_bytes")?,
        max_upload_bytes: unsigned("max_upload_bytes")?,
        cors_origins: cors
            .map(|c| serde_json::from_str(&c))
            .transpose()
            .map_err(|e| DbError::Corrupt(format!("allowed origins: {e}")))?
            .unwrap_or_default(),
        token_ttl_secs: unsigned("token_ttl_secs")?,
        hooks: hooks.map(|h| hooks_of(&h, id)).transpose()?,
    };
    Ok(Some((row.try_get("name").op(op)?, settings)))
}

/// Replaces an account's settings; `false` if there is no such account.
///
/// # Errors
/// The update fails.
pub async fn update(db: &Db, id: &str, s: &AccountSettings) -> Result<bool, DbError> {
    let [cors, hooks] = settings_columns(s)?;
    let changed = sqlx::query(
        "UPDATE accounts SET notify_url = $2, notify_format = $3, notify_status_changes = $4, \
                notify_progress_ms = $5, quota_bytes = $6, max_upload_bytes = $7, cors_origins = $8, \
                token_ttl_secs = $9, hooks = $10 WHERE id = $1",
    )
    .bind(id)
    .bind(s.notify_url.as_deref())
    .bind(s.notify_format.name())
    .bind(i64::from(s.notify_status_changes))
    .bind(signed(s.notify_progress_ms)?)
    .bind(signed(s.quota_bytes)?)
    .bind(signed(s.max_upload_bytes)?)
    .bind(cors)
    .bind(signed(s.token_ttl_secs)?)
    .bind(hooks)
    .execute(db.pool())
    .await
    .op("update an account's settings")?
    .rows_affected();
    Ok(changed == 1)
}

/// An account's hooks and the secret that signs them, `None` when it has no hooks.
///
/// # Errors
/// The query fails or the stored settings are unreadable.
pub async fn hooks(
    db: &Db,
    account_id: &str,
) -> Result<Option<(crate::hook::Hooks, String)>, DbError> {
    let row: Option<(Option<String>, String)> =
        sqlx::query_as("SELECT hooks, secret FROM accounts WHERE id = $1")
            .bind(account_id)
            .fetch_optional(db.pool())
            .await
            .op("read an account's hooks")?;
    let Some((Some(hooks), secret)) = row else {
        return Ok(None);
    };
    Ok(Some((hooks_of(&hooks, account_id)?, secret)))
}

/// An account's hook settings from their column.
fn hooks_of(text: &str, account_id: &str) -> Result<crate::hook::Hooks, DbError> {
    serde_json::from_str(text)
        .map_err(|e| DbError::Corrupt(format!("hook settings of account {account_id}: {e}")))
}

/// The account owning an API key, or `None` for an unknown key. Its quota counts every byte
/// it has stored, whatever the upload's status (a failed upload's source is still stored).
///
/// # Errors
/// The query fails.
pub async fn find_by_api_key(db: &Db, api_key: &str) -> Result<Option<KeyOwner>, DbError> {
    owner_by(db, "api_key_sha256", &api_key_fingerprint(api_key)).await
}

/// The account with this access key and its signing secret (form flavours, Cloud VoD).
///
/// # Errors
/// The query fails.
pub async fn find_by_access_key(
    db: &Db,
    access_key: &str,
) -> Result<Option<(KeyOwner, SigningSecret)>, DbError> {
    let Some(owner) = owner_by(db, "access_key", access_key).await? else {
        return Ok(None);
    };
    let secret = secret_of(db, &owner.account_id).await?;
    Ok(Some((owner, secret)))
}

/// The account whose `column` (a unique credential column) equals `value`.
async fn owner_by(db: &Db, column: &'static str, value: &str) -> Result<Option<KeyOwner>, DbError> {
    let row = sqlx::query(&format!(
        "SELECT a.id, p.id AS pipeline_id, a.quota_bytes, a.max_upload_bytes, a.token_ttl_secs, \
                a.used_bytes AS used \
         FROM accounts a JOIN pipelines p ON p.account_id = a.id AND p.name = 'default' \
         WHERE a.{column} = $1"
    ))
    .bind(value)
    .fetch_optional(db.pool())
    .await
    .op("look up an account credential")?;
    let Some(row) = row else { return Ok(None) };
    let quota: Option<i64> = row.try_get("quota_bytes").op("read quota")?;
    let used: i64 = row.try_get("used").op("read usage")?;
    let ttl: Option<i64> = row.try_get("token_ttl_secs").op("read token validity")?;
    let max_upload: Option<i64> = row.try_get("max_upload_bytes").op("read upload limit")?;
    Ok(Some(KeyOwner {
        account_id: row.try_get("id").op("read account id")?,
        pipeline_id: row.try_get("pipeline_id").op("read pipeline id")?,
        quota_remaining: quota.map(|q| u64::try_from(q.saturating_sub(used)).unwrap_or(0)),
        max_upload_size: max_upload.and_then(|m| u64::try_from(m).ok()),
        token_ttl_secs: ttl.and_then(|t| u64::try_from(t).ok()),
    }))
}

/// Whether a page from `origin` may upload for `account` (its own list), or, with no account
/// (a preflight), for any account.
///
/// # Errors
/// The query fails.
pub async fn cors_allows(db: &Db, origin: &str, account: Option<&str>) -> Result<bool, DbError> {
    let lists: Vec<String> = match account {
        Some(id) => {
            sqlx::query_scalar(
                "SELECT cors_origins FROM accounts WHERE id = $1 AND cors_origins IS NOT NULL",
            )
            .bind(id)
            .fetch_all(db.pool())
            .await
        }
        None => {
            sqlx::query_scalar("SELECT cors_origins FROM accounts WHERE cors_origins IS NOT NULL")
                .fetch_all(db.pool())
                .await
        }
    }
    .op("read allowed origins")?;
    Ok(lists.iter().any(|list| {
        serde_json::from_str::<Vec<String>>(list).is_ok_and(|l| crate::cors::allows(&l, origin))
    }))
}

/// A pipeline's storage root (`accounts/ID/`), if it belongs to the account.
///
/// # Errors
/// The query fails.
pub async fn pipeline_root(
    db: &Db,
    account_id: &str,
    pipeline_id: &str,
) -> Result<Option<String>, DbError> {
    sqlx::query_scalar("SELECT storage_root FROM pipelines WHERE id = $1 AND account_id = $2")
        .bind(pipeline_id)
        .bind(account_id)
        .fetch_optional(db.pool())
        .await
        .op("look up a pipeline")
}

/// The transcode template a pipeline names.
///
/// # Errors
/// The query fails or the pipeline does not exist.
pub async fn pipeline_template(db: &Db, pipeline_id: &str) -> Result<String, DbError> {
    sqlx::query_scalar("SELECT template FROM pipelines WHERE id = $1")
        .bind(pipeline_id)
        .fetch_optional(db.pool())
        .await
        .op("read a pipeline's template")?
        .ok_or_else(|| DbError::Corrupt(format!("pipeline {pipeline_id} vanished")))
}

/// The form-upload credentials of an account (for signing policies and notifications).
/// `Debug` never shows the secret.
#[derive(Clone)]
pub struct SigningSecret {
    /// The public key id.
    pub access_key: String,
    /// The HMAC secret.
    pub secret: String,
}

/// The account's access key and secret.
///
/// # Errors
/// The query fails or the account does not exist.
pub async fn secret_of(db: &Db, account_id: &str) -> Result<SigningSecret, DbError> {
    let row = sqlx::query("SELECT access_key, secret FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_optional(db.pool())
        .await
        .op("read an account's secret")?
        .ok_or_else(|| DbError::Corrupt(format!("account {account_id} vanished")))?;
    Ok(SigningSecret {
        access_key: row.try_get("access_key").op("read access key")?,
        secret: row.try_get("secret").op("read secret")?,
    })
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningSecret")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}
