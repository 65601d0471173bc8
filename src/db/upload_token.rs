//! Upload tokens handed to tus / IETF clients: the defaults they carry (a file name) and the
//! limit on how many uploads one may create. The token itself is verified at the edge without
//! this table; the origin reads it when an upload is created with the token.

use super::{Db, DbError, Op};

/// A token as issued.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The token's `tid`.
    pub id: String,
    /// The owning account.
    pub account_id: String,
    /// File name for uploads that do not name one.
    pub filename: Option<String>,
    /// How many uploads it may create.
    pub max_uploads: Option<u32>,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
}

/// Records an issued token.
///
/// # Errors
/// The insert fails.
pub async fn insert(db: &Db, t: &IssuedToken, now: i64) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO upload_tokens (id, account_id, filename, max_uploads, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&t.id)
    .bind(&t.account_id)
    .bind(t.filename.as_deref())
    .bind(t.max_uploads.map(i64::from))
    .bind(i64::try_from(t.expires_at).unwrap_or(i64::MAX))
    .bind(now)
    .execute(db.pool())
    .await
    .op("record an upload token")?;
    Ok(())
}
