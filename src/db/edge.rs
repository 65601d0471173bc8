//! The edges' heartbeats: what each edge of the fleet last said about itself (upserted on
//! every heartbeat, read when an upload URL is handed out and by `uplink fleet`).

use super::{Db, DbError, Op};
use crate::geo::Health;
use sqlx::Row;
use std::collections::HashMap;

/// Records a heartbeat from edge `name` at `now` (ms).
///
/// # Errors
/// The statement fails.
pub async fn beat(
    db: &Db,
    name: &str,
    region: Option<&str>,
    health: &Health,
) -> Result<(), DbError> {
    let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO edge_heartbeats \
         (name, region, seen_at, active_uploads, spool_free_bytes, draining) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (name) DO UPDATE SET region = excluded.region, seen_at = excluded.seen_at, \
         active_uploads = excluded.active_uploads, spool_free_bytes = excluded.spool_free_bytes, \
         draining = excluded.draining",
    )
    .bind(name)
    .bind(region)
    .bind(health.seen_ms)
    .bind(big(health.active_uploads))
    .bind(big(health.spool_free_bytes))
    .bind(i64::from(health.draining))
    .execute(db.pool())
    .await
    .op("record an edge heartbeat")?;
    Ok(())
}

/// Every edge's last heartbeat, by name.
///
/// # Errors
/// The query fails.
pub async fn health(db: &Db) -> Result<HashMap<String, Health>, DbError> {
    let rows = sqlx::query(
        "SELECT name, seen_at, active_uploads, spool_free_bytes, draining FROM edge_heartbeats",
    )
    .fetch_all(db.pool())
    .await
    .op("read the edges' heartbeats")?;
    let small = |n: i64| u64::try_from(n).unwrap_or(0);
    rows.iter()
        .map(|row| {
            let health = Health {
                seen_ms: row.try_get("seen_at")?,
                active_uploads: small(row.try_get("active_uploads")?),
                spool_free_bytes: small(row.try_get("spool_free_bytes")?),
                draining: row.try_get::<i64, _>("draining")? != 0,
            };
            Ok((row.try_get("name")?, health))
        })
        .collect::<Result<_, sqlx::Error>>()
        .op("read the edges' heartbeats")
}

/// Every edge's name, region and last heartbeat (ms).
///
/// # Errors
/// The query fails.
pub async fn seen(db: &Db) -> Result<Vec<(String, Option<String>, i64)>, DbError> {
    let rows = sqlx::query("SELECT name, region, seen_at FROM edge_heartbeats ORDER BY name")
        .fetch_all(db.pool())
        .await
        .op("read the edges' heartbeats")?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("name")?,
                row.try_get("region")?,
                row.try_get("seen_at")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .op("read an edge's heartbeat")
}
