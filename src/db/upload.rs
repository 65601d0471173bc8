//! Upload records and their status events. Every status change goes through [`transition`]
//! (or [`mark_stored`]), which enforces the lifecycle of [`Status::can_move_to`] in SQL and
//! records an event in the same transaction.

use super::{Db, DbError, Op};
use crate::control::StoredParts;
use crate::store::SentPart;
use crate::upload::{Failure, Status, UploadId};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

/// A new upload, before its bytes arrive.
#[derive(Debug, Clone)]
pub struct NewUpload {
    /// Its id.
    pub id: UploadId,
    /// The owning account.
    pub account_id: String,
    /// The pipeline it goes through.
    pub pipeline_id: String,
    /// Which API created it (`uploads_api`, `tus`, …).
    pub flavour: String,
    /// The client's file name.
    pub filename: String,
    /// Where the source bytes are stored.
    pub object_key: String,
    /// The upload token (grant) that created it, if any: only that grant's tokens reach it.
    pub token_id: Option<String>,
    /// When an unused upload may be deleted (ms), if ever.
    pub expires_at: Option<i64>,
    /// Flavour-specific settings kept for later stages (JSON text).
    pub metadata: Option<String>,
    /// The client's own key for the upload (Cloud VoD `fileId`).
    pub client_ref: Option<String>,
    /// Its length, when declared before its bytes (tus `Upload-Length` at creation, Cloud VoD
    /// `fileSize`).
    pub declared_size: Option<u64>,
    /// The edge writing it (a resumable upload created by a named edge).
    pub writer: Option<String>,
    /// A resumable upload's protocol state (JSON text, [`crate::control::ResumableState`]).
    pub resumable_state: Option<String>,
    /// Its folder, when the application's `pre-create` hook set one.
    pub folder: Option<String>,
    /// The application's metadata its `pre-create` hook set (a JSON object, as text).
    pub app_metadata: Option<String>,
}

/// An upload's stored record.
#[derive(Debug, Clone)]
pub struct UploadRecord {
    /// Its id.
    pub id: String,
    /// The owning account.
    pub account_id: String,
    /// The pipeline.
    pub pipeline_id: String,
    /// The creating API.
    pub flavour: String,
    /// The client's file name.
    pub filename: String,
    /// The collection path (Uploads API `folder`).
    pub folder: Option<String>,
    /// Where the source bytes are.
    pub object_key: String,
    /// Where it stands.
    pub status: Status,
    /// Why it failed.
    pub error: Option<String>,
    /// Stored bytes.
    pub size: Option<i64>,
    /// Hex SHA-256 of the stored bytes.
    pub sha256: Option<String>,
    /// Media duration.
    pub duration_ms: Option<i64>,
    /// The processed MP4 (the largest rendition).
    pub output_key: Option<String>,
    /// What processing produced, as the status record shows it (a JSON array).
    pub outputs: serde_json::Value,
    /// How far processing has got (0–100), while a worker is on it.
    pub progress: Option<i64>,
    /// Creation time (ms).
    pub created_at: i64,
    /// Last change (ms).
    pub updated_at: i64,
    /// Flavour settings kept for later stages (JSON text).
    pub metadata: Option<String>,
    /// The upload token (grant) that created it, if one did.
    pub token_id: Option<String>,
    /// Its length, when declared before its bytes (tus `Upload-Length` at creation, Cloud VoD
    /// `fileSize`): whichever edge holds the last byte completes the upload.
    pub declared_size: Option<u64>,
    /// Why it failed, as a stable code ([`crate::upload::Failure`]).
    pub error_code: Option<String>,
    /// The edge holding its numbered chunks not yet in storage, if one does.
    pub holder: Option<String>,
    /// The edge writing it (resumable uploads of a fleet), if one does.
    pub writer: Option<String>,
    /// A resumable upload's protocol state (JSON text, [`crate::control::ResumableState`]).
    pub resumable_state: Option<String>,
    /// Bytes arrived so far while it is receiving, as its edge last reported.
    pub bytes_received: Option<i64>,
    /// The application's metadata its `pre-create` hook set (a JSON object, as text).
    pub app_metadata: Option<String>,
    /// The application's answer to its `pre-finish` hook (JSON text), if it gave one.
    pub hook_response: Option<String>,
}

const COLUMNS: &str =
    "id, account_id, pipeline_id, flavour, filename, folder, object_key, status, error, \
                       size, sha256, duration_ms, output_key, created_at, updated_at, metadata, outputs, \
                       token_id, declared_size, error_code, holder, writer, resumable_state, bytes_received, \
                       app_metadata, hook_response, (SELECT j.progress FROM jobs j WHERE j.upload_id = uploads.id) AS progress";

fn from_row(row: &AnyRow) -> Result<UploadRecord, DbError> {
    let code: i64 = row.try_get("status").op("read status")?;
    let status =
        Status::from_code(code).ok_or_else(|| DbError::Corrupt(format!("status code {code}")))?;
    let op = "read an upload row";
    Ok(UploadRecord {
        id: row.try_get("id").op(op)?,
        account_id: row.try_get("account_id").op(op)?,
        pipeline_id: row.try_get("pipeline_id").op(op)?,
        flavour: row.try_get("flavour").op(op)?,
        filename: row.try_get("filename").op(op)?,
        folder: row.try_get("folder").op(op)?,
        object_key: row.try_get("object_key").op(op)?,
        status,
        error: row.try_get("error").op(op)?,
        size: row.try_get("size").op(op)?,
        sha256: row.try_get("sha256").op(op)?,
        duration_ms: row.try_get("duration_ms").op(op)?,
        output_key: row.try_get("output_key").op(op)?,
        created_at: row.try_get("created_at").op(op)?,
        updated_at: row.try_get("updated_at").op(op)?,
        metadata: row.try_get("metadata").op(op)?,
        token_id: row.try_get("token_id").op(op)?,
        declared_size: row
            .try_get::<Option<i64>, _>("declared_size")
            .op(op)?
            .and_then(|n| u64::try_from(n).ok()),
        error_code: row.try_get("error_code").op(op)?,
        holder: row.try_get("holder").op(op)?,
        writer: row.try_get("writer").op(op)?,
        resumable_state: row.try_get("resumable_state").op(op)?,
        bytes_received: row
            .try_get::<Option<i64>, _>("bytes_received")
            .op(op)?
            .filter(|_| status == Status::Receiving),
        app_metadata: row.try_get("app_metadata").op(op)?,
        hook_response: row.try_get("hook_response").op(op)?,
        outputs: row
            .try_get::<Option<String>, _>("outputs")
            .op(op)?
            .map(|o| serde_json::from_str(&o))
            .transpose()
            .map_err(|e| DbError::Corrupt(format!("outputs of an upload: {e}")))?
            .unwrap_or_else(|| serde_json::json!([])),
        progress: row
            .try_get::<Option<i64>, _>("progress")
            .op(op)?
            .filter(|_| matches!(status, Status::Processing | Status::Uploading)),
    })
}

async fn record_event(
    tx: &mut Transaction<'_, Any>,
    id: &str,
    status: Status,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query("INSERT INTO upload_events (upload_id, status, at) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(status.code())
        .bind(now)
        .execute(&mut **tx)
        .await
        .op("record a status event")?;
    Ok(())
}

/// The SQL list of codes from which `next` may be reached.
fn predecessors(next: Status) -> String {
    Status::ALL
        .iter()
        .filter(|s| s.can_move_to(next))
        .map(|s| s.code().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Inserts a new upload in status `receiving`.
///
/// # Errors
/// The insert fails.
pub async fn insert(db: &Db, new: &NewUpload, now: i64) -> Result<(), DbError> {
    let id = new.id.to_string();
    let mut tx = db.pool().begin().await.op("begin upload creation")?;
    sqlx::query(
        "INSERT INTO uploads (id, account_id, pipeline_id, flavour, filename, object_key, status, created_at, updated_at, \
                              token_id, expires_at, metadata, client_ref, declared_size, writer, resumable_state, \
                              folder, app_metadata) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(&id)
    .bind(&new.account_id)
    .bind(&new.pipeline_id)
    .bind(&new.flavour)
    .bind(&new.filename)
    .bind(&new.object_key)
    .bind(Status::Receiving.code())
    .bind(now)
    .bind(new.token_id.as_deref())
    .bind(new.expires_at)
    .bind(new.metadata.as_deref())
    .bind(new.client_ref.as_deref())
    .bind(new.declared_size.and_then(|n| i64::try_from(n).ok()))
    .bind(new.writer.as_deref())
    .bind(new.resumable_state.as_deref())
    .bind(new.folder.as_deref())
    .bind(new.app_metadata.as_deref())
    .execute(&mut *tx)
    .await
    .op("insert an upload")?;
    record_event(&mut tx, &id, Status::Receiving, now).await?;
    tx.commit().await.op("commit upload creation")
}

/// One upload, by id.
///
/// # Errors
/// The query fails or the row is corrupt.
pub async fn get(db: &Db, id: &str) -> Result<Option<UploadRecord>, DbError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM uploads WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .op("read an upload")?;
    row.as_ref().map(from_row).transpose()
}

/// The account's most recent uploads, newest first.
///
/// # Errors
/// The query fails or a row is corrupt.
pub async fn list_recent(
    db: &Db,
    account_id: &str,
    limit: i64,
) -> Result<Vec<UploadRecord>, DbError> {
    list(db, Some(account_id), None, limit).await
}

/// The most recent uploads, newest first, of one account and in one status when given.
///
/// # Errors
/// The query fails or a row is corrupt.
pub async fn list(
    db: &Db,
    account_id: Option<&str>,
    status: Option<Status>,
    limit: i64,
) -> Result<Vec<UploadRecord>, DbError> {
    let mut clauses = Vec::new();
    if account_id.is_some() {
        clauses.push(format!("account_id = ${}", clauses.len() + 1));
    }
    if status.is_some() {
        clauses.push(format!("status = ${}", clauses.len() + 1));
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM uploads {filter} ORDER BY created_at DESC, id DESC LIMIT ${}",
        clauses.len() + 1
    );
    let mut query = sqlx::query(&sql);
    if let Some(account_id) = account_id {
        query = query.bind(account_id);
    }
    if let Some(status) = status {
        query = query.bind(status.code());
    }
    let rows = query
        .bind(limit)
        .fetch_all(db.pool())
        .await
        .op("list uploads")?;
    rows.iter().map(from_row).collect()
}

/// Facts about the stored source, known once every byte has arrived.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Bytes stored.
    pub size: u64,
    /// Their hex SHA-256, if known yet (the worker computes it otherwise).
    pub sha256: Option<String>,
    /// The Uploads API `folder`, if the flavour has one.
    pub folder: Option<String>,
    /// Flavour settings learnt with the bytes (JSON text); keeps the record's when `None`.
    pub metadata: Option<String>,
    /// The edge completing it: refused when another edge writes the upload.
    pub edge: Option<String>,
    /// The application's answer to its `pre-finish` hook (JSON text), if it gave one.
    pub hook_response: Option<String>,
}

/// What [`mark_stored`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marked {
    /// Now pending, its job queued.
    Stored,
    /// It was not receiving (already stored, failed or unknown); nothing changed.
    NotReceiving,
    /// It would take the account over its quota; nothing changed.
    OverQuota,
    /// Another edge (named) than the one completing it writes the upload; nothing changed.
    Superseded(String),
}

/// Records that every byte is stored: `receiving` → `pending`, and queues the processing job,
/// unless the upload would take its account over its storage quota. This is where the quota
/// is decided: uploads of one account are serialised here, so concurrent uploads cannot
/// overrun it together.
///
/// # Errors
/// A statement fails.
pub async fn mark_stored(db: &Db, id: &str, stored: &Stored, now: i64) -> Result<Marked, DbError> {
    let size =
        i64::try_from(stored.size).map_err(|_| DbError::Corrupt("size beyond 2^63".into()))?;
    let mut tx = db.pool().begin().await.op("begin marking stored")?;
    let changed = sqlx::query(&format!(
        "UPDATE uploads SET status = $1, size = $2, sha256 = COALESCE($3, sha256), folder = COALESCE(folder, $4), \
                updated_at = $5, metadata = COALESCE($8, metadata), hook_response = $10 \
         WHERE id = $6 AND status = $7 AND {}",
        may_write("$9")
    ))
    .bind(Status::Pending.code())
    .bind(size)
    .bind(stored.sha256.as_deref())
    .bind(stored.folder.as_deref())
    .bind(now)
    .bind(id)
    .bind(Status::Receiving.code())
    .bind(stored.metadata.as_deref())
    .bind(stored.edge.as_deref().unwrap_or_default())
    .bind(stored.hook_response.as_deref())
    .execute(&mut *tx)
    .await
    .op("mark an upload stored")?
    .rows_affected();
    if changed == 0 {
        tx.rollback().await.op("roll back marking stored")?;
        if let Some(edge) = stored.edge.as_deref() {
            if let Writer::Other(other) = writer(db, id, edge, false).await? {
                return Ok(Marked::Superseded(other));
            }
        }
        return Ok(Marked::NotReceiving);
    }
    // The account's usage grows by the upload's size (undone with the rest if it goes over).
    // The increment locks the account's row until the transaction ends (PostgreSQL; SQLite has
    // one writer), so its uploads are counted one after another.
    let over: i64 = sqlx::query_scalar(
        "UPDATE accounts SET used_bytes = used_bytes + $1 \
         WHERE id = (SELECT account_id FROM uploads WHERE id = $2) \
         RETURNING CAST(CASE WHEN quota_bytes IS NOT NULL AND used_bytes > quota_bytes \
                        THEN 1 ELSE 0 END AS BIGINT)",
    )
    .bind(size)
    .bind(id)
    .fetch_one(&mut *tx)
    .await
    .op("count an upload against its account's quota")?;
    if over == 1 {
        tx.rollback().await.op("roll back an upload over quota")?;
        return Ok(Marked::OverQuota);
    }
    record_event(&mut tx, id, Status::Pending, now).await?;
    super::job::enqueue(&mut tx, id, now).await?;
    sqlx::query("DELETE FROM upload_parts WHERE upload_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .op("drop a stored upload's part records")?;
    tx.commit().await.op("commit marking stored")?;
    Ok(Marked::Stored)
}

/// Moves an upload to `next` if the lifecycle allows it from where it is; `failure` (its code
/// and message) is kept for `Failed`. The notifications the change causes are written in the same transaction. Returns
/// whether it moved.
///
/// # Errors
/// A statement fails.
pub async fn transition(
    db: &Db,
    id: &str,
    next: Status,
    failure: Option<Failure>,
    now: i64,
) -> Result<bool, DbError> {
    let mut tx = db.pool().begin().await.op("begin a status change")?;
    let changed = sqlx::query(&format!(
        "UPDATE uploads SET status = $1, error = $2, error_code = $5, updated_at = $3 \
         WHERE id = $4 AND status IN ({})",
        predecessors(next)
    ))
    .bind(next.code())
    .bind(failure.map(Failure::message))
    .bind(now)
    .bind(id)
    .bind(failure.map(Failure::code))
    .execute(&mut *tx)
    .await
    .op("change an upload's status")?
    .rows_affected();
    if changed == 0 {
        return Ok(false);
    }
    record_event(&mut tx, id, next, now).await?;
    super::outbox::enqueue(&mut tx, id, next, now).await?;
    tx.commit().await.op("commit a status change")?;
    Ok(true)
}

/// Records the hex SHA-256 of an upload's stored bytes.
///
/// # Errors
/// The update fails.
pub async fn set_sha256(db: &Db, id: &str, sha256: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE uploads SET sha256 = $1 WHERE id = $2")
        .bind(sha256)
        .bind(id)
        .execute(db.pool())
        .await
        .op("store a digest")?;
    Ok(())
}

/// Stores what processing found out and produced: the duration, the main rendition's key and
/// every output as the status record shows it.
///
/// # Errors
/// The update fails.
pub async fn set_media(
    db: &Db,
    id: &str,
    duration_ms: Option<i64>,
    output_key: &str,
    outputs: &serde_json::Value,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE uploads SET duration_ms = $1, output_key = $2, outputs = $3, updated_at = $4 WHERE id = $5",
    )
    .bind(duration_ms)
    .bind(output_key)
    .bind(outputs.to_string())
    .bind(now)
    .bind(id)
    .execute(db.pool())
    .await
    .op("store media facts")?;
    Ok(())
}

/// Deletes an upload that never finished receiving (its client went away). Returns whether a
/// row was deleted.
///
/// # Errors
/// The delete fails.
pub async fn delete_receiving(db: &Db, id: &str) -> Result<bool, DbError> {
    let mut tx = db.pool().begin().await.op("begin deleting an upload")?;
    sqlx::query("DELETE FROM upload_events WHERE upload_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .op("delete an upload's events")?;
    let n = sqlx::query("DELETE FROM uploads WHERE id = $1 AND status = $2")
        .bind(id)
        .bind(Status::Receiving.code())
        .execute(&mut *tx)
        .await
        .op("delete an unfinished upload")?
        .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    tx.commit().await.op("commit deleting an upload")?;
    Ok(true)
}

/// Uploads still receiving that expired (`expires_at` passed) or were created before
/// `created_before`: their ids and object keys, at most `limit`.
///
/// # Errors
/// The query fails.
pub async fn stale_receiving(
    db: &Db,
    now: i64,
    created_before: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, DbError> {
    let rows = sqlx::query(
        "SELECT id, object_key FROM uploads WHERE status = $1 \
         AND ((expires_at IS NOT NULL AND expires_at < $2) OR created_at < $3) \
         ORDER BY created_at LIMIT $4",
    )
    .bind(Status::Receiving.code())
    .bind(now)
    .bind(created_before)
    .bind(limit)
    .fetch_all(db.pool())
    .await
    .op("find stale uploads")?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("id").op("read upload id")?,
                r.try_get("object_key").op("read object key")?,
            ))
        })
        .collect()
}

/// The object keys of every upload still receiving: their unfinished writes are live.
///
/// # Errors
/// The query fails.
pub async fn receiving_keys(db: &Db) -> Result<std::collections::HashSet<String>, DbError> {
    let rows = sqlx::query("SELECT object_key FROM uploads WHERE status = $1")
        .bind(Status::Receiving.code())
        .fetch_all(db.pool())
        .await
        .op("list the keys of receiving uploads")?;
    rows.iter()
        .map(|r| r.try_get("object_key").op("read object key"))
        .collect()
}

/// Records a part of a receiving upload that reached storage, in multipart upload
/// `parts.multipart_id`; rows of another multipart upload of it are replaced. Returns `false`
/// when the upload is not receiving or another edge than `edge` writes it (nothing changes).
///
/// # Errors
/// A statement fails.
pub async fn record_part(
    db: &Db,
    id: &str,
    edge: Option<&str>,
    multipart_id: &str,
    declared: Option<u64>,
    part: &SentPart,
) -> Result<bool, DbError> {
    let big = |n: u64| i64::try_from(n).map_err(|_| DbError::Corrupt("size beyond 2^63".into()));
    let mut tx = db.pool().begin().await.op("begin recording a part")?;
    sqlx::query(&format!(
        "DELETE FROM upload_parts WHERE upload_id = $1 AND multipart_id <> $2 \
         AND EXISTS (SELECT 1 FROM uploads WHERE id = $1 AND {})",
        may_write("$3")
    ))
    .bind(id)
    .bind(multipart_id)
    .bind(edge.unwrap_or_default())
    .execute(&mut *tx)
    .await
    .op("drop another multipart upload's parts")?;
    let recorded = sqlx::query(&format!(
        "INSERT INTO upload_parts (upload_id, multipart_id, declared, number, start_byte, len, etag, crc32c) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM uploads WHERE id = $1 AND status = $9 \
           AND {}) \
         ON CONFLICT (upload_id, number) DO UPDATE SET multipart_id = excluded.multipart_id, \
           declared = excluded.declared, start_byte = excluded.start_byte, len = excluded.len, \
           etag = excluded.etag, crc32c = excluded.crc32c",
        may_write("$10")
    ))
    .bind(id)
    .bind(multipart_id)
    .bind(declared.map(big).transpose()?)
    .bind(i64::from(part.number))
    .bind(big(part.start)?)
    .bind(big(part.len)?)
    .bind(&part.etag)
    .bind(i64::from(part.crc32c))
    .bind(Status::Receiving.code())
    .bind(edge.unwrap_or_default())
    .execute(&mut *tx)
    .await
    .op("record a part")?
    .rows_affected();
    tx.commit().await.op("commit a part record")?;
    Ok(recorded == 1)
}

/// The parts of an upload that reached storage, in number order, with their multipart upload
/// and its declared size; `None` when none did.
///
/// # Errors
/// The query fails or a row is unreadable.
pub async fn parts(db: &Db, id: &str) -> Result<Option<StoredParts>, DbError> {
    let rows = sqlx::query(
        "SELECT multipart_id, declared, number, start_byte, len, etag, crc32c FROM upload_parts \
         WHERE upload_id = $1 ORDER BY number",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await
    .op("read an upload's parts")?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let unsigned = |n: i64| u64::try_from(n).map_err(|_| DbError::Corrupt(format!("negative {n}")));
    let declared: Option<i64> = first.try_get("declared").op("read declared")?;
    let mut out = StoredParts {
        multipart_id: first.try_get("multipart_id").op("read multipart id")?,
        declared: declared.map(unsigned).transpose()?,
        parts: Vec::with_capacity(rows.len()),
    };
    for r in &rows {
        let number: i64 = r.try_get("number").op("read part number")?;
        let crc: i64 = r.try_get("crc32c").op("read part crc")?;
        out.parts.push(SentPart {
            number: u32::try_from(number)
                .map_err(|_| DbError::Corrupt(format!("part {number}")))?,
            start: unsigned(r.try_get("start_byte").op("read part start")?)?,
            len: unsigned(r.try_get("len").op("read part length")?)?,
            etag: r.try_get("etag").op("read part etag")?,
            crc32c: u32::try_from(crc).map_err(|_| DbError::Corrupt(format!("crc {crc}")))?,
        });
    }
    Ok(Some(out))
}

/// The SQL condition on an `uploads` row under which the edge named by parameter `edge` (`''`
/// for none) may write the upload: no edge is its writer, none is named, or it is the writer.
fn may_write(edge: &str) -> String {
    format!("(writer IS NULL OR {edge} = '' OR writer = {edge})")
}

/// Who writes a resumable upload, as [`writer`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// The edge asking writes it (or no edge is named: any may).
    Asking,
    /// Another edge took it over.
    Other(String),
    /// The upload is not receiving: its status, or `None` when it does not exist.
    NotReceiving(Option<Status>),
}

/// Whether `edge` writes upload `id`; with `take`, it takes the upload over first (adoption:
/// the client continues it on this edge, whatever edge wrote it before).
///
/// # Errors
/// A statement fails.
pub async fn writer(db: &Db, id: &str, edge: &str, take: bool) -> Result<Writer, DbError> {
    if take {
        sqlx::query("UPDATE uploads SET writer = $1 WHERE id = $2 AND status = $3")
            .bind(edge)
            .bind(id)
            .bind(Status::Receiving.code())
            .execute(db.pool())
            .await
            .op("take an upload over")?;
    }
    let row = sqlx::query("SELECT status, writer FROM uploads WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .op("read an upload's writer")?;
    let Some(row) = row else {
        return Ok(Writer::NotReceiving(None));
    };
    let code: i64 = row.try_get("status").op("read status")?;
    let status =
        Status::from_code(code).ok_or_else(|| DbError::Corrupt(format!("status code {code}")))?;
    if status != Status::Receiving {
        return Ok(Writer::NotReceiving(Some(status)));
    }
    Ok(
        match row
            .try_get::<Option<String>, _>("writer")
            .op("read writer")?
        {
            Some(w) if w != edge => Writer::Other(w),
            _ => Writer::Asking,
        },
    )
}

/// What [`hold`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// The edge holds the upload's chunks (it did already, or no edge did).
    Held,
    /// Another edge holds them and has not been lost.
    HeldBy(String),
    /// This edge, which held them, was lost: the upload must fail (`edge_lost`).
    Lost(String),
    /// The upload is not receiving: its status, or `None` when it does not exist.
    NotReceiving(Option<Status>),
}

/// Records that `edge` holds chunks of upload `id` that are not yet in storage (the numbered
/// chunk protocols, whose clients never resend a chunk they were answered for). Another
/// holder whose last heartbeat is before `lost_before` (ms) is lost (an edge that never sent
/// one is never judged lost); failing the upload is the caller's.
///
/// # Errors
/// A statement fails.
pub async fn hold(db: &Db, id: &str, edge: &str, lost_before: i64) -> Result<Hold, DbError> {
    let took = sqlx::query(
        "UPDATE uploads SET holder = $1 WHERE id = $2 AND status = $3 AND (holder IS NULL OR holder = $1)",
    )
    .bind(edge)
    .bind(id)
    .bind(Status::Receiving.code())
    .execute(db.pool())
    .await
    .op("hold an upload")?
    .rows_affected();
    if took == 1 {
        return Ok(Hold::Held);
    }
    let row = sqlx::query(
        "SELECT u.status, u.holder, e.seen_at FROM uploads u \
         LEFT JOIN edge_heartbeats e ON e.name = u.holder WHERE u.id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await
    .op("read an upload's holder")?;
    let Some(row) = row else {
        return Ok(Hold::NotReceiving(None));
    };
    let code: i64 = row.try_get("status").op("read status")?;
    let status =
        Status::from_code(code).ok_or_else(|| DbError::Corrupt(format!("status code {code}")))?;
    if status != Status::Receiving {
        return Ok(Hold::NotReceiving(Some(status)));
    }
    let holder: Option<String> = row.try_get("holder").op("read holder")?;
    let seen_at: Option<i64> = row.try_get("seen_at").op("read heartbeat")?;
    let holder = holder.unwrap_or_default();
    Ok(match seen_at {
        Some(seen) if seen < lost_before => Hold::Lost(holder),
        _ => Hold::HeldBy(holder),
    })
}

/// Uploads still receiving whose chunks are held by an edge whose last heartbeat is before
/// `lost_before` (ms), at most `limit`.
///
/// # Errors
/// The query fails.
pub async fn held_by_lost_edges(
    db: &Db,
    lost_before: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, DbError> {
    let rows = sqlx::query(
        "SELECT u.id, u.holder FROM uploads u JOIN edge_heartbeats e ON e.name = u.holder \
         WHERE u.status = $1 AND u.holder IS NOT NULL AND e.seen_at < $2 LIMIT $3",
    )
    .bind(Status::Receiving.code())
    .bind(lost_before)
    .bind(limit)
    .fetch_all(db.pool())
    .await
    .op("list uploads held by lost edges")?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("id").op("read upload id")?,
                r.try_get("holder").op("read holder")?,
            ))
        })
        .collect()
}

/// The statuses an upload went through, oldest first.
///
/// # Errors
/// The query fails or a code is unknown.
pub async fn history(db: &Db, id: &str) -> Result<Vec<Status>, DbError> {
    let codes: Vec<i64> = sqlx::query_scalar(
        "SELECT status FROM upload_events WHERE upload_id = $1 ORDER BY at, status",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await
    .op("read status events")?;
    codes
        .into_iter()
        .map(|c| Status::from_code(c).ok_or_else(|| DbError::Corrupt(format!("status code {c}"))))
        .collect()
}

/// The newest upload of an account with this client key (Cloud VoD `fileId`), if any.
///
/// # Errors
/// The query fails or the row is corrupt.
pub async fn by_client_ref(
    db: &Db,
    account_id: &str,
    client_ref: &str,
) -> Result<Option<UploadRecord>, DbError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM uploads WHERE account_id = $1 AND client_ref = $2 ORDER BY created_at DESC LIMIT 1"
    ))
    .bind(account_id)
    .bind(client_ref)
    .fetch_optional(db.pool())
    .await
    .op("find an upload by client key")?;
    row.as_ref().map(from_row).transpose()
}

/// The newest upload of an account still receiving under `object_key`; with `id`, that upload
/// only.
///
/// # Errors
/// The query fails or the row is corrupt.
pub async fn receiving_by_key(
    db: &Db,
    account_id: &str,
    object_key: &str,
    id: Option<&str>,
) -> Result<Option<UploadRecord>, DbError> {
    let only = if id.is_some() { "AND id = $4" } else { "" };
    let query = format!(
        "SELECT {COLUMNS} FROM uploads WHERE account_id = $1 AND object_key = $2 AND status = $3 \
         {only} ORDER BY created_at DESC LIMIT 1"
    );
    let mut query = sqlx::query(&query)
        .bind(account_id)
        .bind(object_key)
        .bind(Status::Receiving.code());
    if let Some(id) = id {
        query = query.bind(id);
    }
    let row = query
        .fetch_optional(db.pool())
        .await
        .op("find an upload by object key")?;
    row.as_ref().map(from_row).transpose()
}

/// How many uploads are in each status that is not final (receiving … uploading).
///
/// # Errors
/// The query fails.
pub async fn in_progress(db: &Db) -> Result<Vec<(Status, u64)>, DbError> {
    let rows = sqlx::query(
        "SELECT status, COUNT(*) AS n FROM uploads WHERE status IN ($1, $2, $3, $4) GROUP BY status",
    )
    .bind(Status::Receiving.code())
    .bind(Status::Pending.code())
    .bind(Status::Processing.code())
    .bind(Status::Uploading.code())
    .fetch_all(db.pool())
    .await
    .op("count uploads by status")?;
    let mut counts: Vec<(Status, u64)> = Status::ALL
        .into_iter()
        .filter(|s| !s.is_final())
        .map(|s| (s, 0))
        .collect();
    for row in rows {
        let code: i64 = row.try_get("status").op("read a status")?;
        let n: i64 = row.try_get("n").op("read a count")?;
        if let Some(slot) = counts.iter_mut().find(|(s, _)| s.code() == code) {
            slot.1 = u64::try_from(n).unwrap_or(0);
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseUrl;

    fn part(number: u32, start: u64, len: u64) -> SentPart {
        SentPart {
            number,
            start,
            len,
            etag: format!("e{number}"),
            crc32c: number,
        }
    }

    /// Part records on SQLite (the fleet tests run PostgreSQL): kept per multipart upload,
    /// replaced by a new one, refused once the upload is not receiving, dropped when stored;
    /// once another edge takes the upload over, the former writer's parts and completion are
    /// refused and change nothing.
    #[tokio::test]
    async fn parts_are_recorded_replaced_fenced_and_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&DatabaseUrl::in_data_dir(dir.path()))
            .await
            .unwrap();
        for sql in [
            "INSERT INTO accounts (id, name, api_key_sha256, access_key, secret, created_at) VALUES ('a', 'A', 'h', 'k', 's', 0)",
            "INSERT INTO pipelines (id, account_id, name, storage_root, template, created_at) VALUES ('p', 'a', 'P', 'r', 't', 0)",
            "INSERT INTO uploads (id, account_id, pipeline_id, flavour, filename, object_key, status, created_at, updated_at, writer) VALUES ('u1', 'a', 'p', 'resumable', 'f', 'k', 0, 0, 0, 'edge-a')",
        ] {
            sqlx::query(sql).execute(db.pool()).await.unwrap();
        }
        let record = |edge: &'static str, multipart: &'static str, p: SentPart| {
            let db = db.clone();
            async move {
                record_part(&db, "u1", Some(edge), multipart, Some(20), &p)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(parts(&db, "u1").await.unwrap(), None);
        assert!(record("edge-a", "m1", part(2, 8, 8)).await);
        assert!(record("edge-a", "m1", part(1, 0, 8)).await);
        assert!(record("edge-a", "m1", part(1, 0, 8)).await);
        let kept = parts(&db, "u1").await.unwrap().unwrap();
        assert_eq!(
            (kept.multipart_id.as_str(), kept.declared),
            ("m1", Some(20))
        );
        assert_eq!(kept.parts, vec![part(1, 0, 8), part(2, 8, 8)]);
        // The store lost m1; the edge began m2 and sends again from part 1.
        assert!(record("edge-a", "m2", part(1, 0, 8)).await);
        let kept = parts(&db, "u1").await.unwrap().unwrap();
        assert_eq!((kept.multipart_id.as_str(), kept.parts.len()), ("m2", 1));
        // edge-b takes the upload over: edge-a's records change nothing, not even with a
        // multipart upload of its own.
        assert_eq!(
            writer(&db, "u1", "edge-a", false).await.unwrap(),
            Writer::Asking
        );
        assert_eq!(
            writer(&db, "u1", "edge-b", true).await.unwrap(),
            Writer::Asking
        );
        assert_eq!(
            writer(&db, "u1", "edge-a", false).await.unwrap(),
            Writer::Other("edge-b".into())
        );
        assert!(!record("edge-a", "m3", part(2, 8, 8)).await);
        assert_eq!(parts(&db, "u1").await.unwrap().unwrap(), kept);
        assert!(record("edge-b", "m2", part(2, 8, 8)).await);
        let stored = |edge: &str| Stored {
            size: 20,
            sha256: None,
            folder: None,
            metadata: None,
            edge: Some(edge.into()),
            hook_response: None,
        };
        assert_eq!(
            mark_stored(&db, "u1", &stored("edge-a"), 1).await.unwrap(),
            Marked::Superseded("edge-b".into())
        );
        assert_eq!(
            mark_stored(&db, "u1", &stored("edge-b"), 1).await.unwrap(),
            Marked::Stored
        );
        assert_eq!(parts(&db, "u1").await.unwrap(), None);
        assert!(!record("edge-b", "m2", part(2, 8, 8)).await);
        assert!(!record_part(&db, "nope", None, "m2", None, &part(1, 0, 8))
            .await
            .unwrap());
        assert_eq!(
            writer(&db, "u1", "edge-a", true).await.unwrap(),
            Writer::NotReceiving(Some(Status::Pending))
        );
    }
}
