//! Uploads from a URL: the edge fetches the source over HTTP(S) and streams it through the
//! ingest core like any upload (a [`Receiving`]: the spool or storage, never the whole file in
//! memory, the upload's size limit and the account's quota, progress while it arrives). It
//! resumes with `Range` after a dropped connection, gives up after five attempts in a row that
//! bring nothing, and never follows a redirect or resolves a name to a private address unless
//! the operator allows it ([`crate::outbound`]). The upload then completes as any upload does,
//! or fails with a code saying why ([`Failure::SourceUnreachable`], `SourceTooLarge`,
//! `SourceNotAllowed`). Each fetch is written down in the edge's spool directory before it is
//! acknowledged, so an edge that restarts (after a crash too) fetches it again from the start.
//!
//! Must not depend on the edge's HTTP server or on the protocols.

use super::chunk_spool::{io, sync_dir, write_atomically, SpoolError};
use super::{Allowance, Ingest, IngestError, Receiving};
use crate::config::FetchSettings;
use crate::control::KeyOwner;
use crate::outbound::NotAllowed;
use crate::upload::UploadId;
use crate::upload::{Failure, Filename};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Redirects followed, each checked as the first URL is.
const REDIRECTS: usize = 5;
/// The longest wait for a connection to the source.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A source that sends nothing for this long has dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts in a row that bring no byte before the fetch is given up.
const ATTEMPTS: u32 = 5;
/// The wait after the first attempt that brought nothing, doubled after each.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest a whole fetch may take.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Fetches sources for this edge, a few at a time.
#[derive(Debug)]
pub struct Fetcher {
    client: reqwest::Client,
    allow_private: bool,
    slots: Arc<tokio::sync::Semaphore>,
    /// Where the fetches under way are written down (one JSON file each, by upload id).
    dir: PathBuf,
}

/// A fetch under way, as written down.
#[derive(Debug, Serialize, Deserialize)]
struct Job {
    url: String,
    folder: Option<String>,
    allowance: Allowance,
}

/// Why an upload from a URL was not opened.
#[derive(Debug, thiserror::Error)]
pub enum NotOpened {
    /// The URL may not be fetched.
    #[error("the URL cannot be fetched: {0}")]
    Url(#[source] NotAllowed),
    /// The upload could not be opened.
    #[error("the upload could not be opened")]
    Ingest(#[source] IngestError),
    /// The fetch could not be written down.
    #[error("the fetch could not be written down")]
    NotWritten(#[source] SpoolError),
}

/// Why a fetcher could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FetcherError {
    /// The HTTP client (its TLS roots).
    #[error("cannot build the HTTP client for upload sources")]
    Client(#[source] reqwest::Error),
    /// The directory where fetches are written down.
    #[error("cannot create the directory of fetches under way")]
    Dir(#[source] std::io::Error),
}

/// Why an attempt ended without the whole source.
enum Attempt {
    /// The connection dropped or the server failed for now: try again from the offset.
    Dropped(String),
    /// Trying again cannot help.
    Fatal(Failure, String),
}

impl Fetcher {
    /// A fetcher with `settings`' guard and concurrency, writing its fetches down in `dir`.
    ///
    /// # Errors
    /// The HTTP client cannot be built (its TLS roots), or `dir` cannot be created.
    pub fn new(settings: FetchSettings, dir: PathBuf) -> Result<Self, FetcherError> {
        let client = crate::outbound::client(settings.allow_private_addresses, REDIRECTS, "fetch")
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(IDLE_TIMEOUT)
            .build()
            .map_err(FetcherError::Client)?;
        std::fs::create_dir_all(&dir).map_err(FetcherError::Dir)?;
        Ok(Self {
            client,
            allow_private: settings.allow_private_addresses,
            slots: Arc::new(tokio::sync::Semaphore::new(settings.at_once)),
            dir,
        })
    }

    /// Opens an upload for `owner` (as `flavour`, from `client`) of the file at `url` and
    /// starts fetching it; its file name is `filename`, else the URL's last path segment.
    /// Returns the upload's id.
    ///
    /// # Errors
    /// The URL may not be fetched (checked at once: http or https; no private address written
    /// as a literal unless allowed), the upload cannot be opened (the origin, its hook), or the
    /// fetch cannot be written down.
    pub async fn open(
        self: &Arc<Self>,
        ingest: &Ingest,
        owner: &KeyOwner,
        (flavour, filename, client): (&str, Option<&str>, Option<std::net::IpAddr>),
        url: &str,
        folder: Option<String>,
    ) -> Result<UploadId, NotOpened> {
        let url =
            crate::outbound::check_url(url.trim(), self.allow_private).map_err(NotOpened::Url)?;
        let from_url = url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .map(|n| {
                percent_encoding::percent_decode_str(n)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .filter(|n| !n.is_empty());
        let filename = Filename::clean(filename.or(from_url.as_deref()));
        let upload = ingest
            .create(owner, flavour, filename.as_str(), client)
            .await
            .map_err(NotOpened::Ingest)?;
        let id = upload.id();
        tracing::info!(upload_id = %id, host = url.host_str().unwrap_or_default(), "Fetching an upload's source.");
        self.start(ingest.clone(), upload, url, folder, owner.into())
            .await
            .map_err(NotOpened::NotWritten)?;
        Ok(id)
    }

    /// Writes the fetch of `url` into `upload` down, then runs it in the background: the
    /// upload is completed (with `folder`) or failed with the reason.
    ///
    /// # Errors
    /// The fetch cannot be written down (the upload is then cancelled).
    async fn start(
        self: &Arc<Self>,
        ingest: Ingest,
        upload: Receiving,
        url: url::Url,
        folder: Option<String>,
        allowance: Allowance,
    ) -> Result<(), SpoolError> {
        let job = Job {
            url: url.to_string(),
            folder,
            allowance,
        };
        if let Err(e) = self.write_down(upload.id(), &job).await {
            ingest.cancel(upload).await;
            return Err(e);
        }
        let fetcher = self.clone();
        let upload = upload.unattended();
        tokio::spawn(async move { fetcher.run(ingest, upload, url, job.folder).await });
        Ok(())
    }

    /// Fetches again, from the start, every fetch written down that is still receiving (after
    /// a restart); returns when they have all ended.
    pub async fn recover(self: &Arc<Self>, ingest: &Ingest) {
        // The origin may start after this edge.
        while ingest.origin_ready().await.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut runs = Vec::new();
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let path = entry.path();
            let Some(id) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<UploadId>().ok())
            else {
                continue;
            };
            match self.reopen(ingest, id).await {
                Ok(Some((upload, url, folder))) => {
                    tracing::info!(upload_id = %id, "Fetching an upload's source again after a restart.");
                    runs.push(self.run(ingest.clone(), upload, url, folder));
                }
                Ok(None) => self.forget(id).await,
                Err(e) => {
                    tracing::warn!(upload_id = %id, error = %crate::error::chain(&e), "Could not resume a fetch; it is tried at the next start.");
                }
            }
        }
        futures_util::future::join_all(runs).await;
    }

    /// The upload of a fetch written down, with a fresh writer, if it is still receiving.
    async fn reopen(
        &self,
        ingest: &Ingest,
        id: UploadId,
    ) -> Result<Option<(Receiving, url::Url, Option<String>)>, IngestError> {
        let text = tokio::fs::read(self.path(id)).await.unwrap_or_default();
        let Ok(job) = serde_json::from_slice::<Job>(&text) else {
            return Ok(None);
        };
        let Ok(url) = url::Url::parse(&job.url) else {
            return Ok(None);
        };
        let Some(info) = ingest.upload_info(id).await? else {
            return Ok(None);
        };
        if info.status != crate::upload::Status::Receiving.code() {
            return Ok(None);
        }
        let upload = ingest.resume(&info, job.allowance).await?;
        Ok(Some((upload.unattended(), url, job.folder)))
    }

    fn path(&self, id: UploadId) -> PathBuf {
        self.dir.join(file_name(id))
    }

    /// Writes `job` down durably, as the spools write their files.
    async fn write_down(&self, id: UploadId, job: &Job) -> Result<(), SpoolError> {
        let json =
            serde_json::to_vec(job).map_err(|e| io("encode a fetch")(std::io::Error::other(e)))?;
        write_atomically(&self.dir, &file_name(id), &json).await?;
        sync_dir(&self.dir).await
    }

    async fn forget(&self, id: UploadId) {
        if let Err(e) = tokio::fs::remove_file(self.path(id)).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(upload_id = %id, error = %e, "Could not remove a finished fetch's note.");
            }
        }
    }

    /// Fetches, then completes or fails the upload, and forgets the fetch.
    async fn run(
        &self,
        ingest: Ingest,
        mut upload: Receiving,
        url: url::Url,
        folder: Option<String>,
    ) {
        let _slot = self.slots.acquire().await;
        let id = upload.id().to_owned();
        let fetched = tokio::time::timeout(MAX_DURATION, self.fetch(&url, &mut upload))
            .await
            .unwrap_or_else(|_| {
                let limit = humantime::format_duration(MAX_DURATION);
                Err((
                    Failure::SourceUnreachable,
                    format!("not fetched within {limit}"),
                ))
            });
        match fetched {
            Ok(()) => match ingest.complete(upload, folder, None).await {
                Ok(done) => {
                    tracing::info!(upload_id = %id, bytes = done.size, "Fetched an upload's source.");
                }
                Err(e) => {
                    tracing::warn!(upload_id = %id, error = %crate::error::chain(&e), "A fetched upload could not be completed.");
                }
            },
            Err((failure, why)) => {
                tracing::warn!(upload_id = %id, host = url.host_str().unwrap_or_default(), code = failure.code(), %why, "Could not fetch an upload's source.");
                ingest.fail(upload, failure).await;
            }
        }
        self.forget(id).await;
    }

    /// Attempts until the whole source is in `upload`, or it cannot be.
    async fn fetch(&self, url: &url::Url, upload: &mut Receiving) -> Result<(), (Failure, String)> {
        let mut total = None;
        let mut idle_attempts = 0;
        loop {
            let before = upload.size();
            let why = match self.attempt(url, upload, &mut total).await {
                Ok(()) if upload.size() == 0 => {
                    return Err((Failure::SourceUnreachable, "the source is empty".into()))
                }
                Ok(()) => return Ok(()),
                Err(Attempt::Fatal(failure, why)) => return Err((failure, why)),
                Err(Attempt::Dropped(why)) => why,
            };
            idle_attempts = if upload.size() > before {
                0
            } else {
                idle_attempts + 1
            };
            if idle_attempts >= ATTEMPTS {
                return Err((Failure::SourceUnreachable, why));
            }
            tracing::debug!(upload_id = %upload.id(), offset = upload.size(), %why, "The source dropped; resuming.");
            tokio::time::sleep(FIRST_RETRY * 2u32.pow(idle_attempts.saturating_sub(1))).await;
        }
    }

    /// One request from the upload's offset; `total` is the source's length once known.
    async fn attempt(
        &self,
        url: &url::Url,
        upload: &mut Receiving,
        total: &mut Option<u64>,
    ) -> Result<(), Attempt> {
        let offset = upload.size();
        let mut request = self.client.get(url.clone());
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        // Errors are logged without the URL: a signed link carries its credentials.
        let response = request.send().await.map_err(|e| {
            let e = e.without_url();
            if NotAllowed::within(&e) {
                Attempt::Fatal(Failure::SourceNotAllowed, crate::error::chain(&e))
            } else {
                Attempt::Dropped(crate::error::chain(&e))
            }
        })?;
        let length = source_length(&response, offset)?;
        if let Some(length) = length {
            if total.is_some_and(|t| t != length) {
                return Err(Attempt::Fatal(
                    Failure::SourceUnreachable,
                    "the source's length changed between requests".into(),
                ));
            }
            if length > upload.max_size() {
                return Err(Attempt::Fatal(
                    Failure::SourceTooLarge,
                    format!("the source is {length} bytes"),
                ));
            }
            *total = Some(length);
        }
        let mut body = response.bytes_stream();
        while let Some(piece) = body.next().await {
            let piece =
                piece.map_err(|e| Attempt::Dropped(crate::error::chain(&e.without_url())))?;
            upload.append(piece).await.map_err(|e| match e {
                IngestError::TooLarge { limit } => Attempt::Fatal(
                    Failure::SourceTooLarge,
                    format!("the source sent more than {limit} bytes"),
                ),
                IngestError::QuotaExceeded => Attempt::Fatal(
                    Failure::SourceTooLarge,
                    "the source is larger than the account's remaining quota".into(),
                ),
                e => Attempt::Fatal(Failure::ProcessingError, crate::error::chain(&e)),
            })?;
        }
        match *total {
            Some(t) if upload.size() < t => Err(Attempt::Dropped(format!(
                "the source ended at {} of {t} bytes",
                upload.size()
            ))),
            _ => Ok(()),
        }
    }
}

/// The file a fetch is written down in: its upload's id (read back by `recover`).
fn file_name(id: UploadId) -> String {
    format!("{id}.json")
}

/// The whole source's length as `response` (to a request from `offset`) gives it, if it does.
fn source_length(response: &reqwest::Response, offset: u64) -> Result<Option<u64>, Attempt> {
    let status = response.status().as_u16();
    match status {
        200 if offset == 0 => Ok(response.content_length()),
        200 => Err(Attempt::Fatal(
            Failure::SourceUnreachable,
            "the source dropped the connection and its server cannot resume (it ignores Range)"
                .into(),
        )),
        206 if offset > 0 => {
            let range = response
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(content_range);
            match range {
                Some((start, total)) if start == offset => Ok(total),
                _ => Err(Attempt::Fatal(
                    Failure::SourceUnreachable,
                    format!("the source answered another range than bytes={offset}-"),
                )),
            }
        }
        408 | 425 | 429 | 500..=599 => {
            Err(Attempt::Dropped(format!("the source answered {status}")))
        }
        _ => Err(Attempt::Fatal(
            Failure::SourceUnreachable,
            format!("the source answered {status}"),
        )),
    }
}

/// `bytes START-END/TOTAL` as its start and total (`None` for `*`).
fn content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let (range, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse::<u64>().ok().filter(|t| *t > end)?),
    };
    (start <= end).then_some((start, total))
}

impl Ingest {
    /// Ends an upload that will not complete as failed with `failure`: its bytes are dropped,
    /// its record says why.
    pub async fn fail(&self, upload: Receiving, failure: Failure) {
        upload.writer.abort().await;
        self.record_failure(upload.id, failure).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_are_read_strictly() {
        assert_eq!(content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(content_range("bytes 100-199/*"), Some((100, None)));
        for bad in [
            "bytes 100-99/200",
            "bytes 0-199/150",
            "items 0-1/2",
            "bytes 0-1",
            "bytes a-1/2",
        ] {
            assert_eq!(content_range(bad), None, "{bad}");
        }
    }
}
