//! A processing worker: claims a job, moves its upload through `processing` → `uploading` →
//! `completed` (or `failed`), and finishes the job. It transcodes by the upload's template,
//! stores each output beside the source under `outputs/`, and lists them (with signed edge
//! links) on the status record. While it works it renews the job's lease and records progress;
//! a worker that dies leaves the lease to expire and another takes the job.
//!
//! A file that is not a usable video, or a template, watermark or subtitle that does not exist, fails
//! the upload at once; storage or database trouble leaves the job leased and it is retried
//! when the lease runs out, up to the configured number of attempts.

use super::media::transcode::{self as render, Kind, Limits, Transcoded};
use super::media::MediaError;
use super::State;
use crate::db::job::{self, Job};
use crate::db::{self, now_ms, upload};
use crate::store::{ObjectKey, StoreError};
use crate::template::{self, Template};
use crate::upload::{Failure, Status};
use serde_json::json;
use std::sync::atomic::AtomicU8;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an idle worker waits before looking for jobs again without being woken (jobs may
/// be queued by another origin sharing the database).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Where outputs are stored, beside the source: `…/outputs/720p.mp4`.
const OUTPUT_DIR: &str = "outputs";

/// Delay before a job that hit a passing failure is tried again.
const RETRY_DELAY_MS: i64 = 5_000;

/// What went wrong with one attempt.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Media(#[from] MediaError),
    /// The upload names a template, watermark or subtitle this origin does not have.
    #[error("{1}")]
    Setup(Failure, String),
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
        tracing::warn!(upload_id = %id, attempts, "Processing failed every time; giving up.");
        finish(state, job, Status::Failed, Some(Failure::GaveUp)).await;
        return;
    }
    match attempt(state, job).await {
        Ok(()) => finish(state, job, Status::Completed, None).await,
        Err(e @ (AttemptError::Media(_) | AttemptError::Setup(..))) => {
            let failure = match &e {
                AttemptError::Media(media) => media.failure(),
                AttemptError::Setup(failure, _) => *failure,
                _ => Failure::ProcessingError,
            };
            // The media error's text already carries FFmpeg's words.
            tracing::info!(upload_id = %id, error = %e, error_code = failure.code(), "Processing failed for good.");
            finish(state, job, Status::Failed, Some(failure)).await;
        }
        Err(e) => {
            tracing::warn!(upload_id = %id, attempt = job.attempt, error = %crate::error::chain(&e),
                "Processing failed; will retry.");
            if let Err(e) = job::retry_at(&state.db, job, now_ms() + RETRY_DELAY_MS).await {
                tracing::error!(upload_id = %id, error = %e, "Could not schedule a retry; the lease will expire.");
            }
        }
    }
}

/// Records the final status (and why it failed) and closes the job, unless another worker took
/// the job over meanwhile (this one's lease ran out): then the outcome is that worker's to give.
async fn finish(state: &State, job: &Job, status: Status, failure: Option<Failure>) {
    let now = now_ms();
    match job::holds(&state.db, job).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(upload_id = %job.upload_id, attempt = job.attempt,
                "This worker's lease on the job ran out and another took it over; its outcome is dropped.");
            return;
        }
        Err(e) => {
            tracing::error!(upload_id = %job.upload_id, error = %e, "Could not check the job's lease; the lease will expire.");
            return;
        }
    }
    if let Err(e) = upload::transition(&state.db, &job.upload_id, status, failure, now).await {
        tracing::error!(upload_id = %job.upload_id, error = %e, "Could not record the final status.");
        return;
    }
    state.notify_wake.notify_waiters();
    crate::metrics::upload_processed(failure.map(Failure::code));
    match job::finish(&state.db, job, now).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(upload_id = %job.upload_id, "The job was taken over as it finished.")
        }
        Err(e) => {
            tracing::error!(upload_id = %job.upload_id, error = %e, "Could not close the job.")
        }
    }
    tracing::info!(upload_id = %job.upload_id, status = status.text(), "Processing finished.");
}

/// The template an upload is processed with: the one its flavour settings name (Cloud VoD
/// `workflowId`, `transCodeCombineName`), else its pipeline's, with the watermark and subtitles
/// its settings name (`waterMarkName`, `subtitleId`) drawn on.
async fn template_of(
    state: &State,
    record: &upload::UploadRecord,
) -> Result<Template, AttemptError> {
    let settings: serde_json::Value = record
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or_default();
    let named = |key: &str| settings.get(key).and_then(|v| v.as_str());
    let requested = named("workflowId").or_else(|| named("transCodeCombineName"));
    let pipeline = db::account::pipeline_template(&state.db, &record.pipeline_id).await?;
    let processing = &state.settings.processing;
    let (_, template) = template::choose(&processing.templates, requested, &pipeline)
        .map_err(|why| AttemptError::Setup(Failure::UnknownTemplate, why))?;
    let mut template = template.clone();
    let drawn =
        |key: &str, files: &std::collections::BTreeMap<String, std::path::PathBuf>, failure| {
            named(key)
                .map(|name| {
                    files.get(name).cloned().ok_or_else(|| {
                        AttemptError::Setup(failure, format!("{key} {name:?} does not exist"))
                    })
                })
                .transpose()
        };
    if let Some(path) = drawn(
        "waterMarkName",
        &processing.watermarks,
        Failure::UnknownWatermark,
    )? {
        template.watermark = Some(path);
    }
    if let Some(path) = drawn(
        "subtitleId",
        &processing.subtitles,
        Failure::UnknownSubtitle,
    )? {
        template.subtitles = Some(path);
    }
    Ok(template)
}

/// The link to output `name` on the edge: `EDGE/v1/outputs/SIGNATURE/DIR/NAME`, the signature
/// covering the upload's whole outputs directory, so the relative links inside an HLS playlist
/// work as they are.
fn output_url(state: &State, dir: &ObjectKey, name: &str) -> String {
    let Ok(mut url) = url::Url::parse(state.edges.home()) else {
        return String::new();
    };
    let signature = state.settings.keyring.sign_output(dir.as_str());
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty()
            .extend(["v1", "outputs", signature.as_str()])
            .extend(dir.as_str().split('/'))
            .extend(name.split('/'));
    }
    url.into()
}

/// Renews a job's lease while the worker is on it; stops when dropped.
struct Lease(tokio::task::JoinHandle<()>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the job's lease every third of it, with the progress so far, until the [`Lease`] is
/// dropped.
fn keep_leased(state: &State, job: &Job, progress: Arc<AtomicU8>) -> Lease {
    let (db, job) = (state.db.clone(), job.clone());
    let lease = state.settings.job_lease;
    Lease(tokio::spawn(async move {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        loop {
            tokio::time::sleep(lease / 3).await;
            let done = progress.load(std::sync::atomic::Ordering::Relaxed);
            let now = now_ms();
            match job::renew(&db, &job, now + lease_ms, done, now).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(upload_id = %job.upload_id, attempt = job.attempt,
                        "Lost the job's lease to another worker; stopped renewing it.");
                    return;
                }
                Err(e) => {
                    tracing::warn!(upload_id = %job.upload_id, error = %e, "Could not renew a job's lease.");
                }
            }
        }
    }))
}

async fn attempt(state: &State, job: &Job) -> Result<(), AttemptError> {
    let id = job.upload_id.as_str();
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
    state.notify_wake.notify_waiters();
    let progress = Arc::new(AtomicU8::new(0));
    let _lease = keep_leased(state, job, progress.clone());
    let template = template_of(state, &record).await?;
    let corrupt = |e: &str| db::DbError::Corrupt(format!("object key of {id}: {e}"));
    let source_key = ObjectKey::new(record.object_key.clone()).map_err(corrupt)?;
    let outputs_dir = source_key.sibling(OUTPUT_DIR).map_err(corrupt)?;
    let scratch = &state.settings.scratch_dir;
    let source = state.store.fetch_to_local(&source_key, scratch).await?;
    if record.sha256.is_none() {
        // The edge does not hash (it would halve its ingest rate): the first reader does.
        let path = source.path().to_owned();
        let digest = tokio::task::spawn_blocking(move || crate::store::sha256_of_file(&path))
            .await?
            .map_err(|source| StoreError::Read {
                key: source_key.to_string(),
                source,
            })?;
        upload::set_sha256(&state.db, id, &digest).await?;
    }
    let work = tempfile::Builder::new()
        .prefix("job-")
        .tempdir_in(scratch)
        .map_err(AttemptError::Scratch)?;

    let limits = Limits {
        deadline: Instant::now() + state.settings.processing.job_timeout,
        max_pixels: state.settings.processing.max_pixels,
    };
    let (src, dir) = (source.path().to_owned(), work.path().to_owned());
    let started = Instant::now();
    let done = tokio::task::spawn_blocking(move || {
        render::transcode(&src, &dir, &template, limits, &progress)
    })
    .await;
    let transcoded = done??;
    // The renditions are rendered together, in one pass over the source.
    let took = started.elapsed();
    for out in transcoded.outputs.iter().filter(|o| o.kind == Kind::Video) {
        crate::metrics::transcoded(&out.name, out.frames, took);
    }

    upload::transition(&state.db, id, Status::Uploading, None, now_ms()).await?;
    store_outputs(state, id, &outputs_dir, &transcoded).await?;
    Ok(())
}

/// Stores what processing made beside the source and lists it on the status record.
async fn store_outputs(
    state: &State,
    id: &str,
    outputs_dir: &ObjectKey,
    transcoded: &Transcoded,
) -> Result<(), AttemptError> {
    let corrupt = |e: &str| db::DbError::Corrupt(format!("object key of {id}: {e}"));
    for (name, path) in &transcoded.files {
        let key = ObjectKey::new(format!("{}/{name}", outputs_dir.as_str())).map_err(corrupt)?;
        state.store.put_file(&key, path).await?;
    }
    let mut listed = Vec::new();
    for out in &transcoded.outputs {
        let key =
            ObjectKey::new(format!("{}/{}", outputs_dir.as_str(), out.name)).map_err(corrupt)?;
        state.store.put_file(&key, &out.path).await?;
        listed.push(json!({
            "name": out.name,
            "type": match out.kind {
                Kind::Video => "video/mp4",
                Kind::Thumbnail => "image/jpeg",
                Kind::Hls => "application/vnd.apple.mpegurl",
            },
            "url": output_url(state, outputs_dir, &out.name),
            "width": out.width,
            "height": out.height,
            "bitrate": out.bitrate,
            "size": out.size,
            "duration": out.duration_ms,
        }));
    }
    let main = transcoded
        .outputs
        .iter()
        .find(|o| o.kind == Kind::Video)
        .map(|o| format!("{}/{}", outputs_dir.as_str(), o.name))
        .unwrap_or_default();
    let duration = transcoded.probe.duration_ms;
    upload::set_media(&state.db, id, duration, &main, &json!(listed), now_ms()).await?;
    Ok(())
}
