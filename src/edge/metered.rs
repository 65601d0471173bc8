//! What the edge's metrics see of its traffic ([`crate::metrics`]): [`Metered`] wraps one
//! request's [`Exchange`] and records it once answered (flavour, method, HTTP version, status,
//! body bytes, and the time from the last body byte to the answer); [`Connections`] wraps
//! Pingora's HTTP application: it counts TCP connections by HTTP version, and is where the
//! per-client cap, the HTTP/1.1 head timer ([`super::limits`]) and the drain's view of busy
//! connections ([`super::drain`]) attach to each connection.
//!
//! Must not depend on the protocols or the origin.

use super::exchange::{Exchange, RequestHead};
use super::limits::{Guarded, PerClient};
use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::ServerApp;
use pingora::http::ResponseHeader;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use std::sync::Arc;
use std::time::Instant;

/// A request being answered, watched.
pub(super) struct Metered<'a> {
    inner: &'a mut dyn Exchange,
    status: u16,
    received: u64,
    last_byte: Option<Instant>,
    answered: Option<Instant>,
}

impl<'a> Metered<'a> {
    pub(super) fn new(inner: &'a mut dyn Exchange) -> Self {
        Self {
            inner,
            status: 0,
            received: 0,
            last_byte: None,
            answered: None,
        }
    }

    /// Records the request as `flavour`. A request that was never answered (the client went
    /// away) counts with status 0.
    pub(super) fn record(&self, flavour: &'static str, method: &http::Method) {
        let ack = match (self.last_byte, self.answered) {
            (Some(last), Some(answered)) if answered >= last => Some(answered - last),
            _ => None,
        };
        crate::metrics::edge_request(
            flavour,
            method,
            self.inner.version(),
            self.status,
            self.received,
            ack,
        );
    }
}

#[async_trait]
impl Exchange for Metered<'_> {
    fn head(&self) -> RequestHead {
        self.inner.head()
    }

    fn version(&self) -> &'static str {
        self.inner.version()
    }

    async fn informational(
        &mut self,
        status: u16,
        headers: &[(&'static str, String)],
    ) -> pingora::Result<()> {
        self.inner.informational(status, headers).await
    }

    async fn read(&mut self) -> pingora::Result<Option<Bytes>> {
        let piece = self.inner.read().await?;
        if let Some(piece) = &piece {
            self.received += piece.len() as u64;
            self.last_byte = Some(Instant::now());
        }
        Ok(piece)
    }

    fn body_done(&mut self) -> bool {
        self.inner.body_done()
    }

    async fn respond(&mut self, head: ResponseHeader, end: bool) -> pingora::Result<()> {
        self.status = head.status.as_u16();
        self.answered = Some(Instant::now());
        self.inner.respond(head, end).await
    }

    async fn send(&mut self, data: Bytes, end: bool) -> pingora::Result<()> {
        self.inner.send(data, end).await
    }

    fn close_after(&mut self) {
        self.inner.close_after();
    }
}

/// How long connections accepted before the listeners stopped have to send their request.
const LAST_REQUESTS: std::time::Duration = std::time::Duration::from_secs(2);

/// Pingora's HTTP application with its connections counted, capped per client address and,
/// on HTTP/1.1, their request heads timed ([`super::limits::Guarded`]). One
/// [`ServerApp::process_new`] call here serves a connection's every request (the inner
/// application hands a kept-alive HTTP/1.1 connection back after each one).
pub(super) struct Connections<A> {
    pub(super) app: Arc<A>,
    pub(super) per_client: Arc<PerClient>,
    pub(super) header_timeout: std::time::Duration,
    pub(super) draining: Arc<super::drain::Draining>,
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Connections<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // h2c (HTTP/2 without TLS) is not enabled: HTTP/2 is chosen by ALPN only.
        let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        let version = if h2 { "2" } else { "1.1" };
        let client = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let _held = match client.map(|ip| self.per_client.take(ip)) {
            Some(None) => {
                crate::metrics::limit_hit("connections_per_client");
                if !h2 {
                    let answer = super::limits::raw_answer(
                        "429 Too Many Requests\r\nRetry-After: 10",
                        "too_many_connections",
                        "this address has too many connections open",
                    );
                    let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, &answer).await;
                    let _ = tokio::io::AsyncWriteExt::flush(&mut stream).await;
                }
                pingora::protocols::Shutdown::shutdown(&mut *stream).await;
                return None;
            }
            Some(held) => held,
            None => None,
        };
        let _open = crate::metrics::edge_connection(version);
        // HTTP/2 multiplexes: the drain waits for the whole connection.
        let _busy = h2.then(|| self.draining.busy());
        if !h2 {
            stream = Box::new(Guarded::new(
                stream,
                self.header_timeout,
                self.draining.clone(),
            ));
        }
        let mut next = self.app.process_new(stream, shutdown).await;
        while let Some(stream) = next {
            next = self.app.process_new(stream, shutdown).await;
        }
        None
    }

    /// Called once the listeners have stopped: Pingora's cleanup then drops every connection
    /// still waiting for a request, meant for idle keep-alive ones. A connection accepted just
    /// before the listeners stopped has its request under way; it is given a moment to arrive.
    async fn cleanup(&self) {
        tokio::time::sleep(LAST_REQUESTS).await;
        self.app.cleanup().await;
    }
}

/// The spool's gauges, read at each metrics scrape: its bytes and its disk's free space.
pub(super) struct Spool(pub(super) std::path::PathBuf);

#[async_trait]
impl crate::metrics::Scrape for Spool {
    async fn scrape(&self) {
        let dir = self.0.clone();
        let read = tokio::task::spawn_blocking(move || {
            let free = super::heartbeat::free_space(&dir)?;
            Ok::<_, std::io::Error>((bytes_under(&dir), free))
        })
        .await;
        match read {
            Ok(Ok((bytes, free))) => crate::metrics::spool(bytes, free),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Metrics: cannot read the spool's free space.")
            }
            Err(e) => tracing::warn!(error = %e, "Metrics: the spool reading failed."),
        }
    }
}

/// Bytes in the files under `dir` (what cannot be read counts as nothing: files come and go).
fn bytes_under(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&entry.path()),
            Ok(t) if t.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}
