//! A processing worker: claims a job, moves its upload through `processing` → `uploading` →
//! `completed` (or `failed`), and finishes the job. A file that is not a usable video fails
//! the upload at once; storage or database trouble leaves the job leased and it is retried
//! when the lease runs out, up to the configured number of attempts.

use super::media::{self, MediaError};
use super::State;
use crate::db::job::{self, Job};
use crate::db::{self, now_ms, upload};
use crate::store::{ObjectKey, StoreError};
use crate::upload::Status;
use std::time::Duration;

/// How long an idle worker waits before looking for jobs again without being woken (jobs may
/// be queued by another origin sharing the database).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The processed file's name, beside the source.
const OUTPUT_NAME: &str = "video.mp4";

/// Delay before a job that hit a passing failure is tried again.
const RETRY_DELAY_MS: i64 = 5_000;

/// What went wrong with one attempt.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("storage")]
    Store(#[from] StoreError),
    #[error("database")]
    Db(#[from] db::DbError),
    #[error("worker thread: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("scratch file")]
    Scratch(#[source] std::io::Error),
}

/// Runs one worker until the process ends.
pub async fn run(state: State, name: String) {
    let lease_ms = i64::try_from(state.settings.job_lease.as_millis()).unwrap_or(i64::MAX / 2);
    loop {
        match job::claim(&state.db, &name, lease_ms, now_ms()).await {
            Ok(Some(job)) => process(&state, &job).await,
            Ok(None) => {
                let _ = tokio::time::timeout(IDLE_POLL, state.wake.notified()).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "Could not claim a job.");
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
    }
}

async fn process(state: &State, job: &Job) {
    let id = job.upload_id.as_str();
    let attempts = i64::from(state.settings.job_attempts);
    if job.attempt > attempts {
        let reason = format!("processing failed {attempts} times; giving up");
        finish(state, job, Status::Failed, Some(&reason)).await;
        return;
    }
    match attempt(state, id).await {
        Ok(()) => finish(state, job, Status::Completed, None).await,
        Err(AttemptError::Media(e)) => {
            tracing::info!(upload_id = %id, error = %e, "Not a usable video.");
            finish(state, job, Status::Failed, Some(&e.to_string())).await;
        }
        Err(e) => {
            tracing::warn!(upload_id = %id, attempt = job.attempt, error = %e,
                source = ?std::error::Error::source(&e), "Processing failed; will retry.");
            if let Err(e) = job::retry_at(&state.db, job, now_ms() + RETRY_DELAY_MS).await {
                tracing::error!(upload_id = %id, error = %e, "Could not schedule a retry; the lease will expire.");
            }
        }
    }
}

/// Records the final status and closes the job.
async fn finish(state: &State, job: &Job, status: Status, error: Option<&str>) {
    let now = now_ms();
    if let Err(e) = upload::transition(&state.db, &job.upload_id, status, error, now).await {
        tracing::error!(upload_id = %job.upload_id, error = %e, "Could not record the final status.");
        return;
    }
    if let Err(e) = job::finish(&state.db, job, now).await {
        tracing::error!(upload_id = %job.upload_id, error = %e, "Could not close the job.");
    }
    tracing::info!(upload_id = %job.upload_id, status = status.text(), "Processing finished.");
}

async fn attempt(state: &State, id: &str) -> Result<(), AttemptError> {
    let Some(record) = upload::get(&state.db, id).await? else {
        return Err(AttemptError::Db(db::DbError::Corrupt(format!(
            "job for missing upload {id}"
        ))));
    };
    if record.status.is_final() {
        // Finished before a crash kept the job from being closed.
        return Ok(());
    }
    upload::transition(&state.db, id, Status::Processing, None, now_ms()).await?;
    let corrupt = |e: &str| db::DbError::Corrupt(format!("object key of {id}: {e}"));
    let source_key = ObjectKey::new(record.object_key.clone()).map_err(corrupt)?;
    let output = source_key.sibling(OUTPUT_NAME).map_err(corrupt)?;
    let scratch = &state.settings.scratch_dir;
    let source = state.store.fetch_to_local(&source_key, scratch).await?;
    let out = tempfile::Builder::new()
        .suffix(".mp4")
        .tempfile_in(scratch)
        .map_err(AttemptError::Scratch)?
        .into_temp_path();
    let (src, dst) = (source.path().to_owned(), out.to_path_buf());
    let probe = tokio::task::spawn_blocking(move || media::remux_to_mp4(&src, &dst)).await??;

    upload::transition(&state.db, id, Status::Uploading, None, now_ms()).await?;
    state.store.put_file(&output, &out).await?;
    upload::set_media(&state.db, id, probe.duration_ms, output.as_str(), now_ms()).await?;
    Ok(())
}
