//! The origin's sweeper: on every `sweep_interval` it releases uploads that will never finish,
//! those still receiving past their expiry (a token's, a session's `expires_at`) or older than
//! `abandon_after`: their partial object and their record go. Then the store discards writes
//! begun before `abandon_after` and never finished (crashed writers' partial files, S3
//! multipart uploads left open). The edges' sweepers drop the spooled bytes of uploads whose
//! record is gone.

use super::State;
use crate::db::{self, now_ms};
use crate::store::ObjectKey;
use std::time::SystemTime;

/// Uploads released per database round trip.
const BATCH: i64 = 500;

/// Runs forever, one sweep per interval.
pub async fn run(state: State) {
    let mut every = tokio::time::interval(state.settings.sweep_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        sweep(&state).await;
    }
}

/// One sweep; failures are logged and retried on the next.
pub async fn sweep(state: &State) {
    let abandon_after = state.settings.abandon_after;
    let now = now_ms();
    let cutoff = now - i64::try_from(abandon_after.as_millis()).unwrap_or(i64::MAX);
    let mut released = 0;
    loop {
        let stale = match db::upload::stale_receiving(&state.db, now, cutoff, BATCH).await {
            Ok(stale) => stale,
            Err(e) => {
                tracing::warn!(error = %e, "Sweeper could not list stale uploads.");
                return;
            }
        };
        let batch = stale.len();
        for (id, key) in stale {
            if let Ok(key) = ObjectKey::new(key) {
                if let Err(e) = state.store.delete(&key).await {
                    tracing::warn!(upload_id = %id, error = %e, "Sweeper could not delete a partial object.");
                    continue;
                }
            }
            match db::upload::delete_receiving(&state.db, &id).await {
                Ok(_) => released += 1,
                Err(e) => {
                    tracing::warn!(upload_id = %id, error = %e, "Sweeper could not drop an upload.")
                }
            }
        }
        if i64::try_from(batch).unwrap_or(i64::MAX) < BATCH {
            break;
        }
    }
    let before = SystemTime::now()
        .checked_sub(abandon_after)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let discarded = match state.store.discard_unfinished(before).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "Sweeper could not discard unfinished writes.");
            0
        }
    };
    if released + discarded > 0 {
        tracing::info!(
            released,
            discarded,
            "Swept uploads that will never finish, and unfinished writes."
        );
    }
}
