//! The edge's spool sweeper: on every `sweep_interval` it removes the spooled bytes of uploads
//! that are no longer receiving: stored (after a grace period, in which a client that lost the
//! final answer can still ask for the offset), cancelled, or swept by the origin. Uploads still
//! receiving keep everything: their bytes are acknowledged to the client.

use super::proxy::Spools;
use crate::ingest::Ingest;
use crate::upload::{Status, UploadId};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Sweeps the spools under `root` (`chunks/` and `resumable/`).
pub struct SpoolSweeper {
    pub(super) ingest: Ingest,
    pub(super) spools: Arc<Spools>,
    pub(super) root: PathBuf,
    pub(super) interval: Duration,
}

#[async_trait]
impl BackgroundService for SpoolSweeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut every = tokio::time::interval(self.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = every.tick() => self.sweep().await,
            }
        }
    }
}

impl SpoolSweeper {
    /// How long a stored upload's spool entry outlives it.
    fn grace(&self) -> Duration {
        self.interval * 10
    }

    async fn sweep(&self) {
        let mut removed = self.ingest.sweep_direct().await;
        for kind in ["chunks", "resumable"] {
            let Ok(mut entries) = tokio::fs::read_dir(self.root.join(kind)).await else {
                continue;
            };
            while let Ok(Some(entry)) = entries.next_entry().await {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(id) = name.parse::<UploadId>() else {
                    continue;
                };
                let age = entry
                    .metadata()
                    .await
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| crate::clock::now_system().duration_since(m).ok())
                    .unwrap_or_default();
                let gone = match self.ingest.upload_info(id).await {
                    Ok(None) => true,
                    Ok(Some(info)) => info.status != Status::Receiving.code() && age > self.grace(),
                    Err(e) => {
                        tracing::warn!(error = %e, "Spool sweeper could not ask the origin; next time.");
                        return;
                    }
                };
                if !gone {
                    continue;
                }
                self.ingest.discard_spooled(id).await;
                let result = match kind {
                    "chunks" => self.spools.chunks.remove(id).await,
                    _ => self.spools.resumable.remove(id).await,
                };
                match result {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        tracing::warn!(upload_id = %name, error = %e, "Could not remove a spooled upload.")
                    }
                }
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                "Swept spooled uploads that are no longer receiving."
            );
        }
    }
}
