//! The edge's heartbeat: every `heartbeat_interval` it tells the origin that it is alive, how
//! many uploads it is taking and how much spool space is free; when the server shuts down it
//! says it is draining, so the origin stops naming it in new upload URLs at once.

use super::origin_client::OriginClient;
use crate::control::Heartbeat;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Uploads in progress on this edge: one [`ActiveUpload`] is held per upload request.
#[derive(Debug, Clone, Default)]
pub struct ActiveUploads(Arc<AtomicU64>);

impl ActiveUploads {
    /// Counts one upload until the guard is dropped.
    #[must_use]
    pub fn enter(&self) -> ActiveUpload {
        self.0.fetch_add(1, Ordering::Relaxed);
        ActiveUpload {
            count: self.0.clone(),
            _gauge: crate::metrics::upload_request(),
        }
    }

    /// How many now.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One upload in progress; counted (here and in the metrics) while it lives.
pub struct ActiveUpload {
    count: Arc<AtomicU64>,
    _gauge: crate::metrics::Raised,
}

impl Drop for ActiveUpload {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Sends heartbeats for the edge called `name`.
pub struct Heartbeats {
    pub(super) origin: OriginClient,
    pub(super) name: String,
    pub(super) region: Option<String>,
    pub(super) spool_dir: PathBuf,
    pub(super) active: ActiveUploads,
    pub(super) interval: Duration,
}

#[async_trait]
impl BackgroundService for Heartbeats {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut every = tokio::time::interval(self.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    self.send(true).await;
                    return;
                }
                _ = every.tick() => self.send(false).await,
            }
        }
    }
}

impl Heartbeats {
    async fn send(&self, draining: bool) {
        let spool_free_bytes = free_space(&self.spool_dir).unwrap_or_else(|e| {
            tracing::warn!(error = %e, dir = %self.spool_dir.display(), "Cannot read the spool disk's free space.");
            0
        });
        let beat = Heartbeat {
            name: self.name.clone(),
            region: self.region.clone(),
            active_uploads: self.active.count(),
            spool_free_bytes,
            draining,
        };
        if let Err(e) = self.origin.heartbeat(&beat).await {
            tracing::warn!(error = %e, edge = %self.name, "The origin did not take this edge's heartbeat.");
        }
    }
}

/// Bytes free for unprivileged writers on the file system holding `dir`.
pub(super) fn free_space(dir: &std::path::Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}
