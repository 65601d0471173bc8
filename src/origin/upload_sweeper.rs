//! The origin's sweeper: on every `sweep_interval` it releases uploads that will never finish,
//! those still receiving past their expiry (a token's, a session's `expires_at`) or older than
//! `abandon_after`: their partial object and their record go. Then the store discards writes
//! begun before `abandon_after` and never finished (crashed writers' partial files, S3
//! multipart uploads left open) that belong to no upload still receiving. The edges' sweepers drop the spooled bytes of uploads whose
//! record is gone. It also removes scratch files a killed worker left (older than a job may
//! run plus its lease) and notifications delivered or given up more than 30 days ago.
//!
//! A second, quicker loop fails the uploads whose unstored chunks a lost edge held
//! (`edge_lost`): their clients' status polls must say so rather than "receiving".

use super::State;
use crate::db::{self, now_ms};
use crate::store::ObjectKey;
use std::time::{Duration, SystemTime};

/// Uploads released per database round trip.
const BATCH: i64 = 500;

/// How long delivered and given-up notifications are kept, for the operator to look into.
const KEEP_NOTIFICATIONS: Duration = Duration::from_secs(30 * 24 * 3600);

/// Runs forever, one sweep per interval.
pub async fn run(state: State) {
    let mut every = tokio::time::interval(state.settings.sweep_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        sweep(&state).await;
    }
}

/// Runs forever: every quarter of `edge_lost_after`, fails the uploads whose unstored chunks
/// an edge held that has since been lost.
pub async fn run_lost_edges(state: State) {
    let lost_after = state.settings.routing.edge_lost_after();
    let mut every = tokio::time::interval((lost_after / 4).max(Duration::from_secs(1)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        fail_lost(&state).await;
    }
}

/// Fails, with `edge_lost`, the uploads whose unstored chunks a lost edge held.
pub async fn fail_lost(state: &State) {
    let now = now_ms();
    let lost_before = super::internal::lost_before(state, now);
    let lost = match db::upload::held_by_lost_edges(&state.db, lost_before, BATCH).await {
        Ok(lost) => lost,
        Err(e) => {
            tracing::warn!(error = %e, "Could not list the uploads held by lost edges.");
            return;
        }
    };
    for (id, edge) in lost {
        if let Err(e) = fail_held_by_lost(state, &id, &edge, now).await {
            tracing::warn!(upload_id = %id, error = %e, "Could not fail an upload held by a lost edge.");
        }
    }
}

/// Fails upload `id`, whose unstored chunks lost `edge` held, with `edge_lost` (if it is still
/// receiving), and wakes the notifier.
///
/// # Errors
/// The status change fails.
pub(super) async fn fail_held_by_lost(
    state: &State,
    id: &str,
    edge: &str,
    now: i64,
) -> Result<(), db::DbError> {
    let failure = crate::upload::Failure::EdgeLost;
    if super::internal::fail_upload(state, id, failure, now).await? {
        tracing::warn!(upload_id = %id, edge = %edge, "The edge that held this upload's unstored chunks was lost; the upload failed.");
    }
    Ok(())
}

/// One sweep; failures are logged and retried on the next.
pub async fn sweep(state: &State) {
    let abandon_after = state.settings.abandon_after;
    let now = now_ms();
    let cutoff = now - millis(abandon_after);
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
                Ok(dropped) => {
                    released += 1;
                    crate::metrics::uploads_terminated("sweeper", u64::from(dropped));
                }
                Err(e) => {
                    tracing::warn!(upload_id = %id, error = %e, "Sweeper could not drop an upload.")
                }
            }
        }
        if i64::try_from(batch).unwrap_or(i64::MAX) < BATCH {
            break;
        }
    }
    let before = crate::clock::now_system()
        .checked_sub(abandon_after)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let discarded = match db::upload::receiving_keys(&state.db).await {
        Ok(receiving) => match state.store.discard_unfinished(before, &receiving).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %crate::error::chain(&e), "Sweeper could not discard unfinished writes.");
                0
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "Sweeper could not list the uploads still receiving.");
            0
        }
    };
    let scratch = sweep_scratch(state).await;
    let pruned = match db::outbox::prune(&state.db, now - millis(KEEP_NOTIFICATIONS)).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "Sweeper could not prune old notifications.");
            0
        }
    };
    if scratch + pruned > 0 {
        tracing::info!(
            scratch,
            pruned,
            "Swept scratch files and old notifications."
        );
    }
    if released + discarded > 0 {
        tracing::info!(
            released,
            discarded,
            "Swept uploads that will never finish, and unfinished writes."
        );
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

/// Removes what is in the scratch directory for longer than any job can hold it (a killed
/// worker's source copies and outputs); returns how many entries went.
async fn sweep_scratch(state: &State) -> u64 {
    let settings = &state.settings;
    let older = settings.processing.job_timeout + settings.job_lease * 2;
    let Some(before) = crate::clock::now_system().checked_sub(older) else {
        return 0;
    };
    let Ok(mut entries) = tokio::fs::read_dir(&settings.scratch_dir).await else {
        return 0;
    };
    let mut removed = 0;
    while let Ok(Some(entry)) = entries.next_entry().await {
        let Ok(meta) = entry.metadata().await else {
            continue;
        };
        if meta.modified().is_ok_and(|m| m < before) {
            let path = entry.path();
            let gone = if meta.is_dir() {
                tokio::fs::remove_dir_all(&path).await
            } else {
                tokio::fs::remove_file(&path).await
            };
            match gone {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "Sweeper could not remove a scratch file.")
                }
            }
        }
    }
    removed
}
