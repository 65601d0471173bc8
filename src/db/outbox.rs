//! The notification outbox. A status change that the account is to hear about writes its
//! notification here in the change's own transaction, so a crash can neither lose it nor send
//! one for a change that did not happen. Senders claim due rows (on PostgreSQL skipping rows
//! other origins hold) by moving their `next_at` past the request's time limit, so a sender
//! that dies releases its claim by itself; each row keeps its id, the `webhook-id`, for life.

use super::{Backend, Db, DbError, Op};
use crate::notify::{self, Facts, Format};
use crate::upload::{Failure, Status};
use sqlx::{Any, Row, Transaction};

/// A notification claimed for sending.
#[derive(Clone)]
pub struct Due {
    /// Its id (`webhook-id`), the same on every attempt.
    pub id: String,
    /// Its upload.
    pub upload_id: String,
    /// Where it goes.
    pub url: String,
    /// Its body format.
    pub format: Format,
    /// The message, JSON text.
    pub message: String,
    /// The account secret that signs it.
    pub secret: String,
    /// Attempts before this one.
    pub attempts: i64,
    /// When it was written (ms).
    pub created_at: i64,
}

impl std::fmt::Debug for Due {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Due")
            .field("id", &self.id)
            .field("upload_id", &self.upload_id)
            .field("url", &self.url)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Writes the notifications that moving upload `id` to `status` causes, if its account has a
/// notification URL: the seed's `NewVideo` when it completed or failed, and a `StatusChanged`
/// when the account asked for status changes. Returns how many were written.
pub(super) async fn enqueue(
    tx: &mut Transaction<'_, Any>,
    id: &str,
    status: Status,
    now: i64,
) -> Result<usize, DbError> {
    let row = sqlx::query(
        "SELECT u.account_id, u.filename, u.error_code, u.size, u.duration_ms, u.metadata, u.outputs, \
                a.notify_url, a.notify_format, a.notify_status_changes \
         FROM uploads u JOIN accounts a ON a.id = u.account_id WHERE u.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .op("read an upload for its notification")?;
    let Some(row) = row else { return Ok(0) };
    let op = "read an upload for its notification";
    let Some(url) = row.try_get::<Option<String>, _>("notify_url").op(op)? else {
        return Ok(0);
    };
    let format = format_of(&row, op)?;
    let metadata: Option<String> = row.try_get("metadata").op(op)?;
    let outputs: Option<String> = row.try_get("outputs").op(op)?;
    let filename: String = row.try_get("filename").op(op)?;
    let error_code: Option<String> = row.try_get("error_code").op(op)?;
    let facts = Facts {
        video_id: id,
        status,
        failure: error_code.as_deref().and_then(Failure::from_code),
        custom_fields: metadata
            .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
            .and_then(|m| m.get("custom_fields").cloned())
            .unwrap_or_else(|| serde_json::json!({})),
        duration_ms: row.try_get("duration_ms").op(op)?,
        size: row.try_get("size").op(op)?,
        filename: &filename,
        outputs: outputs
            .and_then(|o| serde_json::from_str(&o).ok())
            .unwrap_or_else(|| serde_json::json!([])),
        at_ms: now,
    };
    let wants_changes = row
        .try_get::<Option<i64>, _>("notify_status_changes")
        .op(op)?
        .unwrap_or(0)
        != 0;
    let messages = [
        notify::new_video(&facts),
        notify::status_changed(&facts).filter(|_| wants_changes),
    ];
    let account_id: String = row.try_get("account_id").op(op)?;
    let mut written = 0;
    for message in messages.into_iter().flatten() {
        let to = Recipient {
            account_id: &account_id,
            url: &url,
            format,
        };
        insert(tx, &to, id, &message, now).await?;
        written += 1;
    }
    Ok(written)
}

/// An account's notification format, from a row with its `notify_format`.
pub(super) fn format_of(row: &sqlx::any::AnyRow, op: &'static str) -> Result<Format, DbError> {
    match row.try_get::<Option<String>, _>("notify_format").op(op)? {
        Some(name) => Format::parse(&name).map_err(DbError::Corrupt),
        None => Ok(Format::default()),
    }
}

/// Where an account's notifications go.
struct Recipient<'a> {
    account_id: &'a str,
    url: &'a str,
    format: Format,
}

async fn insert(
    tx: &mut Transaction<'_, Any>,
    to: &Recipient<'_>,
    upload_id: &str,
    message: &serde_json::Value,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO notifications (id, account_id, upload_id, url, format, message, attempts, next_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7)",
    )
    .bind(format!("msg_{}", uuid::Uuid::new_v4().simple()))
    .bind(to.account_id)
    .bind(upload_id)
    .bind(to.url)
    .bind(to.format.name())
    .bind(message.to_string())
    .bind(now)
    .execute(&mut **tx)
    .await
    .op("write a notification")?;
    Ok(())
}

/// Records that `received` bytes of upload `id` have arrived (while it is receiving; the count never
/// goes back), and writes an `UploadProgress` notification when its account asks for them and
/// the last one for this upload is at least the account's interval old. Returns whether one
/// was written.
///
/// # Errors
/// A statement fails or a row is corrupt.
pub async fn record_progress(db: &Db, id: &str, received: u64, now: i64) -> Result<bool, DbError> {
    let bytes = i64::try_from(received).map_err(|_| DbError::Corrupt("size beyond 2^63".into()))?;
    let mut tx = db.pool().begin().await.op("begin recording progress")?;
    let moved = sqlx::query(
        "UPDATE uploads SET bytes_received = $1 \
         WHERE id = $2 AND status = $3 AND (bytes_received IS NULL OR bytes_received < $1)",
    )
    .bind(bytes)
    .bind(id)
    .bind(Status::Receiving.code())
    .execute(&mut *tx)
    .await
    .op("record progress")?
    .rows_affected();
    let due = if moved == 1 {
        sqlx::query(
            "SELECT u.account_id, u.declared_size, a.notify_url, a.notify_format FROM uploads u \
             JOIN accounts a ON a.id = u.account_id \
             WHERE u.id = $1 AND a.notify_url IS NOT NULL AND a.notify_progress_ms IS NOT NULL \
               AND (u.progress_notified_at IS NULL OR u.progress_notified_at + a.notify_progress_ms <= $2)",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .op("read an account's progress settings")?
    } else {
        None
    };
    let Some(row) = due else {
        tx.commit().await.op("commit progress")?;
        return Ok(false);
    };
    let op = "read an account's progress settings";
    let account_id: String = row.try_get("account_id").op(op)?;
    let url: String = row.try_get("notify_url").op(op)?;
    let format = format_of(&row, op)?;
    let total = row
        .try_get::<Option<i64>, _>("declared_size")
        .op(op)?
        .and_then(|n| u64::try_from(n).ok());
    let message = notify::upload_progress(id, received, total, now);
    let to = Recipient {
        account_id: &account_id,
        url: &url,
        format,
    };
    insert(&mut tx, &to, id, &message, now).await?;
    sqlx::query("UPDATE uploads SET progress_notified_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .op("record a progress notification")?;
    tx.commit().await.op("commit progress")?;
    Ok(true)
}

/// Claims the oldest due notification until `now + hold_ms` (longer than one request may take).
///
/// # Errors
/// A statement fails or a row is corrupt.
pub async fn claim(db: &Db, now: i64, hold_ms: i64) -> Result<Option<Due>, DbError> {
    let lock = match db.backend() {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let row = sqlx::query(&format!(
        "UPDATE notifications SET next_at = $1 \
         WHERE id = (SELECT id FROM notifications \
                     WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_at <= $2 \
                     ORDER BY next_at LIMIT 1{lock}) \
         RETURNING id, account_id, upload_id, url, format, message, attempts, created_at"
    ))
    .bind(now + hold_ms)
    .bind(now)
    .fetch_optional(db.pool())
    .await
    .op("claim a notification")?;
    let Some(row) = row else { return Ok(None) };
    let op = "read a notification";
    let account_id: String = row.try_get("account_id").op(op)?;
    let secret = super::account::secret_of(db, &account_id).await?.secret;
    let format: String = row.try_get("format").op(op)?;
    Ok(Some(Due {
        id: row.try_get("id").op(op)?,
        upload_id: row.try_get("upload_id").op(op)?,
        url: row.try_get("url").op(op)?,
        format: Format::parse(&format).map_err(DbError::Corrupt)?,
        message: row.try_get("message").op(op)?,
        secret,
        attempts: row.try_get("attempts").op(op)?,
        created_at: row.try_get("created_at").op(op)?,
    }))
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// It failed; try again at this time (ms).
    RetryAt(i64, String),
    /// It failed and the retry window is over.
    GiveUp(String),
}

/// Records an attempt's outcome.
///
/// # Errors
/// The update fails.
pub async fn record(db: &Db, id: &str, outcome: &Outcome, now: i64) -> Result<(), DbError> {
    let query = match outcome {
        Outcome::Delivered => sqlx::query(
            "UPDATE notifications SET attempts = attempts + 1, delivered_at = $1, last_error = NULL WHERE id = $2",
        )
        .bind(now)
        .bind(id),
        Outcome::RetryAt(at, error) => sqlx::query(
            "UPDATE notifications SET attempts = attempts + 1, next_at = $1, last_error = $2 WHERE id = $3",
        )
        .bind(*at)
        .bind(error.clone())
        .bind(id),
        Outcome::GiveUp(error) => sqlx::query(
            "UPDATE notifications SET attempts = attempts + 1, gave_up_at = $1, last_error = $2 WHERE id = $3",
        )
        .bind(now)
        .bind(error.clone())
        .bind(id),
    };
    query
        .execute(db.pool())
        .await
        .op("record a notification attempt")?;
    Ok(())
}

/// Deletes notifications delivered or given up before `before`; returns how many.
///
/// # Errors
/// The delete fails.
pub async fn prune(db: &Db, before: i64) -> Result<u64, DbError> {
    Ok(sqlx::query(
        "DELETE FROM notifications WHERE (delivered_at IS NOT NULL AND delivered_at < $1) \
                                      OR (gave_up_at IS NOT NULL AND gave_up_at < $1)",
    )
    .bind(before)
    .execute(db.pool())
    .await
    .op("prune old notifications")?
    .rows_affected())
}

/// Notifications neither delivered nor given up, and when the oldest was written (ms), if any.
///
/// # Errors
/// The query fails.
pub async fn waiting(db: &Db) -> Result<(u64, Option<i64>), DbError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM notifications \
         WHERE delivered_at IS NULL AND gave_up_at IS NULL",
    )
    .fetch_one(db.pool())
    .await
    .op("count waiting notifications")?;
    let n: i64 = row.try_get("n").op("read the outbox depth")?;
    let oldest: Option<i64> = row.try_get("oldest").op("read the oldest notification")?;
    Ok((u64::try_from(n).unwrap_or(0), oldest))
}
