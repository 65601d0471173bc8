//! How many bytes of each upload in flight have arrived, for the origin's status record and
//! its `UploadProgress` notifications. A request's body is counted as it is read (one atomic
//! add per piece); every [`REPORT_EVERY`] the edge reports the uploads that grew, all in one
//! call, so the cost to the origin is bounded by time, not by requests or bytes.
//!
//! Must not depend on HTTP or on a wire protocol.

use super::Body;
use crate::upload::UploadId;
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the edge reports progress to the origin (when any upload grew).
pub const REPORT_EVERY: Duration = Duration::from_secs(2);

/// The uploads whose bytes are arriving, and what was last reported of each.
#[derive(Debug, Default)]
pub struct Progress {
    live: Mutex<HashMap<UploadId, Entry>>,
}

#[derive(Debug)]
struct Entry {
    /// Bytes the upload held when its current request began.
    base: u64,
    /// Bytes of the current request's body read so far; shared with its counting stream.
    read: Arc<AtomicU64>,
    /// What was last reported.
    reported: u64,
}

/// Counts the bytes of one request as they arrive; the upload is forgotten once the counter is
/// dropped and its last count reported.
#[derive(Debug)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// `n` more bytes arrived.
    pub fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Progress {
    /// `body`, counted as upload `id`'s bytes after the `base` it already holds.
    pub fn track<S: Body>(&self, id: UploadId, base: u64, body: S) -> impl Body {
        let counter = self.counter(id, base);
        body.map(move |piece: Result<Bytes, std::io::Error>| {
            if let Ok(bytes) = &piece {
                counter.add(bytes.len());
            }
            piece
        })
    }

    /// A counter of upload `id`'s bytes after the `base` it already holds, for a request
    /// that is read otherwise than as one body.
    pub fn counter(&self, id: UploadId, base: u64) -> Counter {
        let read = Arc::new(AtomicU64::new(0));
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let reported = live.get(&id).map_or(0, |e| e.reported);
        live.insert(
            id,
            Entry {
                base,
                read: read.clone(),
                reported,
            },
        );
        Counter(read)
    }

    /// The uploads that grew since the last call, with their bytes now. Uploads whose request
    /// ended are forgotten once reported.
    pub fn changes(&self) -> Vec<(UploadId, u64)> {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = Vec::new();
        live.retain(|id, e| {
            let now = e.base + e.read.load(Ordering::Relaxed);
            if now > e.reported {
                e.reported = now;
                out.push((*id, now));
            }
            // Still being read: the counting stream holds the other reference.
            Arc::strong_count(&e.read) > 1
        });
        out
    }
}

/// Reports to `report` what grew, every [`REPORT_EVERY`], until the task is dropped.
pub async fn report_loop<F, Fut>(progress: Arc<Progress>, report: F)
where
    F: Fn(Vec<(UploadId, u64)>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut every = tokio::time::interval(REPORT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let changes = progress.changes();
        if !changes.is_empty() {
            report(changes).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_as_read_reports_growth_once_and_forgets_ended_requests() {
        let progress = Progress::default();
        let pieces = vec![
            Ok(Bytes::from(vec![0u8; 10])),
            Ok(Bytes::from(vec![0u8; 5])),
        ];
        let u = UploadId::new();
        let mut body = Box::pin(progress.track(u, 100, futures_util::stream::iter(pieces)));
        // What the upload held when the request began counts at once.
        assert_eq!(progress.changes(), vec![(u, 100)]);
        body.next().await.unwrap().unwrap();
        assert_eq!(progress.changes(), vec![(u, 110)]);
        assert_eq!(progress.changes(), vec![], "reported once");
        body.next().await.unwrap().unwrap();
        assert!(body.next().await.is_none());
        drop(body);
        assert_eq!(progress.changes(), vec![(u, 115)]);
        assert!(
            progress.live.lock().unwrap().is_empty(),
            "ended and reported"
        );
    }
}
