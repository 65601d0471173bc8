//! Shutdown and graceful upgrade. Pingora stops accepting TCP connections on SIGTERM (and on
//! SIGQUIT, once it has handed its listening sockets to the process started with `uplink edge
//! --upgrade`); this service then marks the edge draining (the HTTP/3 listener refuses new
//! QUIC connections, so clients move to TCP and the new process; the heartbeat says
//! "draining"), waits until no upload request and no QUIC connection is left, at most
//! `drain_timeout`, and ends the process. Whatever is still in flight then is ended keeping
//! what arrived, as a lost connection would be.
//!
//! Must not depend on the protocols or the origin.

use super::heartbeat::ActiveUploads;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Whether the edge is draining, and what it is still serving: QUIC connections, and TCP
/// connections in the middle of a request (an HTTP/1.1 one between its first byte and its final
/// answer; an HTTP/2 one while it is open).
#[derive(Debug, Default)]
pub struct Draining {
    draining: AtomicBool,
    quic: AtomicUsize,
    busy: AtomicUsize,
}

impl Draining {
    /// Whether new connections should be refused.
    #[must_use]
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// One QUIC connection, counted while the guard lives.
    #[must_use]
    pub fn quic_connection(self: &Arc<Self>) -> QuicConnection {
        self.quic.fetch_add(1, Ordering::Relaxed);
        QuicConnection(self.clone())
    }
}

/// A TCP connection in the middle of a request, counted while the guard lives.
#[derive(Debug)]
pub struct Busy(Arc<Draining>);

impl Draining {
    /// A TCP connection is in the middle of a request until the guard is dropped.
    #[must_use]
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A QUIC connection being served.
pub struct QuicConnection(Arc<Draining>);

impl Drop for QuicConnection {
    fn drop(&mut self) {
        self.0.quic.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Ends the process once a shutdown has drained.
pub struct Drain {
    pub(super) state: Arc<Draining>,
    pub(super) active: ActiveUploads,
    pub(super) timeout: Duration,
}

/// How often the drain looks at what is left.
const POLL: Duration = Duration::from_millis(100);
/// How long nothing must be in flight before the process ends: a connection accepted just
/// before the listeners closed has its request under way by then.
const QUIET: Duration = Duration::from_secs(1);

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        self.state.draining.store(true, Ordering::Relaxed);
        let left = || {
            self.active.count()
                + self.state.quic.load(Ordering::Relaxed) as u64
                + self.state.busy.load(Ordering::Relaxed) as u64
        };
        tracing::info!(in_flight = left(), timeout = ?self.timeout, "Draining.");
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut quiet_since = None;
        while tokio::time::Instant::now() < deadline {
            let now = tokio::time::Instant::now();
            if left() > 0 {
                quiet_since = None;
            } else if now - *quiet_since.get_or_insert(now) >= QUIET {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let left = left();
        if left > 0 {
            tracing::warn!(
                in_flight = left,
                "Drain timeout: ending what is still in flight."
            );
        } else {
            tracing::info!("Drained: nothing in flight.");
        }
        // Pingora would otherwise wait out its whole grace period.
        std::process::exit(0);
    }
}
