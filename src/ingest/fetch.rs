//! Uploads from a URL: the edge fetches the source over HTTP(S) and streams it through the
//! ingest core like any upload (a [`Receiving`]: the spool or storage, never the whole file in
//! memory, the upload's size limit and the account's quota, progress while it arrives). It
//! resumes with `Range` after a dropped connection, gives up after five attempts in a row that
//! bring nothing, and never follows a redirect or resolves a name to a private address unless
//! the operator allows it ([`crate::outbound`]). The upload then completes as any upload does,
//! or fails with a code saying why ([`Failure::SourceUnreachable`], `SourceTooLarge`,
//! `SourceNotAllowed`).
//!
//! Must not depend on the edge's HTTP server or on the protocols.

use super::{Ingest, IngestError, Receiving};
use crate::config::FetchSettings;
use crate::outbound::NotAllowed;
use crate::upload::Failure;
use futures_util::StreamExt;
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
}

/// Why an attempt ended without the whole source.
enum Attempt {
    /// The connection dropped or the server failed for now: try again from the offset.
    Dropped(String),
    /// Trying again cannot help.
    Fatal(Failure, String),
}

impl Fetcher {
    /// A fetcher with `settings`' guard and concurrency.
    ///
    /// # Errors
    /// The HTTP client cannot be built (its TLS roots).
    pub fn new(settings: FetchSettings) -> reqwest::Result<Self> {
        let client = crate::outbound::client(settings.allow_private_addresses, REDIRECTS, "fetch")
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(IDLE_TIMEOUT)
            .build()?;
        Ok(Self {
            client,
            allow_private: settings.allow_private_addresses,
            slots: Arc::new(tokio::sync::Semaphore::new(settings.at_once)),
        })
    }

    /// Whether `url` may be fetched at all (http or https; no private address written as a
    /// literal unless allowed): checked before an upload is opened for it.
    ///
    /// # Errors
    /// Why not.
    pub fn check(&self, url: &str) -> Result<url::Url, NotAllowed> {
        crate::outbound::check_url(url, self.allow_private)
    }

    /// Fetches `url` into `upload` in the background, then completes it (with `folder`) or
    /// fails it with the reason.
    pub fn spawn(
        self: &Arc<Self>,
        ingest: Ingest,
        upload: Receiving,
        url: url::Url,
        folder: Option<String>,
    ) {
        let fetcher = self.clone();
        tokio::spawn(async move {
            let _slot = fetcher.slots.acquire().await;
            let mut upload = upload;
            let id = upload.id().to_owned();
            let fetched = tokio::time::timeout(MAX_DURATION, fetcher.fetch(&url, &mut upload))
                .await
                .unwrap_or_else(|_| {
                    Err((
                        Failure::SourceUnreachable,
                        format!(
                            "not fetched within {}",
                            humantime::format_duration(MAX_DURATION)
                        ),
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
        });
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
        let response = request.send().await.map_err(|e| {
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
            let piece = piece.map_err(|e| Attempt::Dropped(crate::error::chain(&e)))?;
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
        let id = upload.id.clone();
        upload.writer.abort().await;
        if let Err(e) = self.origin.fail(&id, failure).await {
            tracing::warn!(upload_id = %id, error = %crate::error::chain(&e), "Could not record a failed upload; the sweeper drops it.");
        }
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
