//! The edge's limits on slow, greedy and malformed clients (`[limits]` in `edge.toml`):
//! - [`Pace`] (pure, time passed in): a request body must not stall longer than `body_gap`, and
//!   must average `min_body_rate` over every `min_rate_window` of time the edge spent waiting
//!   for it. Time the edge is not reading (its own back-pressure: disk, storage) never counts.
//! - [`Paced`]: an [`Exchange`] whose body reads follow a [`Pace`], on every HTTP version; a
//!   request cut for slowness is answered 408 and its connection closed, keeping what arrived.
//! - [`HeaderClock`] (pure) and [`Guarded`]: an HTTP/1.1 connection whose request head is not
//!   complete `header_timeout` after its first byte is answered 408 and closed (slowloris); a
//!   head over [`MAX_HEAD`] 431; a head with both `Content-Length` and `Transfer-Encoding` 400
//!   (request smuggling). A malformed chunked body is answered 400 by [`Paced`].
//! - [`PerClient`]: connections per client address, one cap for TCP and QUIC.
//!
//! Must not depend on the protocols, the ingest core or the origin.

use super::exchange::{Exchange, RequestHead};
pub use crate::config::Limits;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType, ALPN,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Why a body was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Slow {
    /// Nothing arrived for the gap.
    #[error("the request body sent nothing for {0:?}")]
    Stalled(Duration),
    /// Too little arrived over a window.
    #[error("the request body arrived at fewer than {rate} bytes per second over {window:?}")]
    TooSlow {
        /// The least rate.
        rate: u64,
        /// The window.
        window: Duration,
    },
}

/// The pace of one request body, judged on the time the edge spent waiting for it.
#[derive(Debug, Clone)]
pub struct Pace {
    limits: Limits,
    /// Waiting time in the current window, and the bytes that arrived in it.
    waited: Duration,
    bytes: u64,
    /// Waiting time since the last byte.
    since_byte: Duration,
}

impl Pace {
    /// A body that has sent nothing yet.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            waited: Duration::ZERO,
            bytes: 0,
            since_byte: Duration::ZERO,
        }
    }

    /// How long the next wait may last before the pace must be judged again.
    #[must_use]
    pub fn next_wait(&self) -> Duration {
        let gap = self.limits.body_gap.saturating_sub(self.since_byte);
        let window = self.limits.min_rate_window.saturating_sub(self.waited);
        gap.min(window).max(Duration::from_millis(1))
    }

    /// The edge waited `waited` and `bytes` arrived (none when the wait ran out).
    ///
    /// # Errors
    /// The body is too slow: it stalled for the gap, or fell under the rate over a window.
    pub fn waited(&mut self, waited: Duration, bytes: u64) -> Result<(), Slow> {
        self.waited += waited;
        self.bytes += bytes;
        if bytes > 0 {
            self.since_byte = Duration::ZERO;
        } else {
            self.since_byte += waited;
            if self.since_byte >= self.limits.body_gap {
                return Err(Slow::Stalled(self.limits.body_gap));
            }
        }
        if self.waited >= self.limits.min_rate_window {
            let needed =
                self.limits.min_rate_window.as_secs_f64() * self.limits.min_body_rate as f64;
            if (self.bytes as f64) < needed {
                return Err(Slow::TooSlow {
                    rate: self.limits.min_body_rate,
                    window: self.limits.min_rate_window,
                });
            }
            self.waited = Duration::ZERO;
            self.bytes = 0;
        }
        Ok(())
    }
}

/// An exchange whose body must keep a [`Pace`].
pub(super) struct Paced<'a> {
    inner: &'a mut dyn Exchange,
    pace: Pace,
    /// A 408 went out: the handler's own answer is dropped.
    cut: bool,
}

impl<'a> Paced<'a> {
    pub(super) fn new(inner: &'a mut dyn Exchange, limits: Limits) -> Self {
        Self {
            inner,
            pace: Pace::new(limits),
            cut: false,
        }
    }

    async fn cut(&mut self, slow: Slow) -> Box<pingora::Error> {
        tracing::info!(reason = %slow, "Cut a request whose body was too slow.");
        crate::metrics::limit_hit(match slow {
            Slow::Stalled(_) => "body_gap",
            Slow::TooSlow { .. } => "min_body_rate",
        });
        let message =
            format!("{slow}; what arrived before is kept: resume from the upload's offset");
        self.refuse(408, "request_timeout", &message).await;
        pingora::Error::explain(pingora::ErrorType::ReadTimedout, slow.to_string())
    }

    /// Answers `status` at once and closes the connection after it; the handler's own answer
    /// is dropped.
    async fn refuse(&mut self, status: u16, code: &str, message: &str) {
        self.cut = true;
        self.inner.close_after();
        let reply = crate::protocol::Reply::json(
            status,
            &serde_json::json!({ "error": code, "message": message }),
        );
        let Ok((head, body)) = super::exchange::rendered(reply, &[]) else {
            return;
        };
        if self.inner.respond(head, false).await.is_ok() {
            let _ = self.inner.send(body, true).await;
        }
    }
}

#[async_trait]
impl Exchange for Paced<'_> {
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
        if self.cut {
            return Err(pingora::Error::explain(
                pingora::ErrorType::ReadTimedout,
                "the request was cut",
            ));
        }
        loop {
            let started = Instant::now();
            let wait = self.pace.next_wait();
            let read = tokio::time::timeout(wait, self.inner.read()).await;
            let (bytes, outcome) = match read {
                Ok(Ok(Some(piece))) => (piece.len() as u64, Some(Ok(Some(piece)))),
                Ok(Err(e)) if e.etype().as_str() == "InvalidChunk" => {
                    tracing::info!(error = %e, "Refused a request whose body framing is malformed.");
                    self.refuse(
                        400,
                        "malformed_body",
                        "the request body's chunked framing is malformed",
                    )
                    .await;
                    return Err(e);
                }
                Ok(other) => return other,
                Err(_) => (0, None),
            };
            if let Err(slow) = self.pace.waited(started.elapsed(), bytes) {
                return Err(self.cut(slow).await);
            }
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
    }

    fn body_done(&mut self) -> bool {
        self.cut || self.inner.body_done()
    }

    async fn respond(&mut self, head: ResponseHeader, end: bool) -> pingora::Result<()> {
        if self.cut {
            return Ok(());
        }
        self.inner.respond(head, end).await
    }

    async fn send(&mut self, data: Bytes, end: bool) -> pingora::Result<()> {
        if self.cut {
            return Ok(());
        }
        self.inner.send(data, end).await
    }

    fn close_after(&mut self) {
        self.inner.close_after();
    }
}

/// When an HTTP/1.1 request head has to be complete, and whether its framing is ambiguous: a
/// request starts with the first byte the client sends after the edge's previous final answer,
/// and its head ends at the first empty line after its request line. Pure: it is told what was read and written, and
/// keeps a few bytes of state, not the head.
#[derive(Debug, Clone, Default)]
pub struct HeaderClock {
    /// When the head being read started, if one is being read.
    started: Option<Instant>,
    /// The head is complete (the body, if any, follows).
    complete: bool,
    /// Bytes of the current line so far, carriage returns aside.
    line: usize,
    /// Lines of the head so far (request line and headers; empty lines before it aside).
    lines: usize,
    /// Bytes of the head read so far.
    read: usize,
    /// The start of the current header line's name (lower case, at most 32 bytes); `None` once
    /// its colon or end has passed.
    name: Option<Vec<u8>>,
    /// `Content-Length` and `Transfer-Encoding` were seen.
    length: bool,
    coding: bool,
    /// The edge's last final answer closes the connection: what the client still sends (the
    /// rest of a refused request's body) is no request head.
    closing: bool,
}

/// The largest request head (request line and headers) accepted; more is answered 431
/// (nginx's default `large_client_header_buffers` is 32 KiB).
pub const MAX_HEAD: usize = 64 * 1024;

impl HeaderClock {
    /// Bytes `read` arrived at `now`.
    pub fn read(&mut self, read: &[u8], now: Instant) {
        if read.is_empty() || self.complete || self.closing {
            return;
        }
        self.started.get_or_insert(now);
        for &b in read {
            self.read += 1;
            if b == b'\n' {
                // Lines end in LF, with or without CR (as httparse, Pingora's parser, reads
                // them); the first empty line after the request line ends the head.
                if self.line == 0 && self.lines > 0 {
                    self.complete = true;
                    return;
                }
                self.lines += usize::from(self.line > 0);
                self.line = 0;
                self.name = Some(Vec::new());
                continue;
            }
            self.line += usize::from(b != b'\r');
            match (&mut self.name, b) {
                (Some(name), b':') => {
                    self.length |= name == b"content-length";
                    self.coding |= name == b"transfer-encoding";
                    self.name = None;
                }
                (Some(name), _) if name.len() < 32 => name.push(b.to_ascii_lowercase()),
                _ => {}
            }
        }
    }

    /// Whether a request is under way: its first byte arrived, its final answer has not gone.
    #[must_use]
    pub fn in_request(&self) -> bool {
        self.started.is_some()
    }

    /// Whether the complete head has both `Content-Length` and `Transfer-Encoding` (RFC 9112
    /// §6.1: a request smuggling vector, refused rather than read by either).
    #[must_use]
    pub fn ambiguous(&self) -> bool {
        self.complete && self.length && self.coding
    }

    /// The edge wrote `written`: a final answer (not `HTTP/1.1 1xx`) ends the request; one with
    /// `Connection: close` ends the connection's requests.
    pub fn wrote(&mut self, written: &[u8]) {
        let final_answer = written.starts_with(b"HTTP/1.") && written.get(9) != Some(&b'1');
        if final_answer {
            let head = written[..written.len().min(8192)].to_ascii_lowercase();
            *self = Self {
                closing: memchr::memmem::find(&head, b"\r\nconnection: close").is_some(),
                ..Self::default()
            };
        }
    }

    /// Whether the head being read is longer than [`MAX_HEAD`] (its end may be in the last read:
    /// Pingora's own limit then applies).
    #[must_use]
    pub fn too_long(&self) -> bool {
        !self.complete && self.read > MAX_HEAD
    }

    /// When the head being read must be complete, if one is being read.
    #[must_use]
    pub fn deadline(&self, timeout: Duration) -> Option<Instant> {
        match (self.started, self.complete) {
            (Some(started), false) => Some(started + timeout),
            _ => None,
        }
    }
}

/// An HTTP/1.1 connection whose request heads must arrive within the header timeout.
pub(super) struct Guarded {
    inner: Stream,
    timeout: Duration,
    clock: HeaderClock,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The answer being written before the connection is given up, and how much of it is.
    farewell: Option<(Vec<u8>, usize)>,
    /// For the drain: set while a request is under way.
    draining: Arc<super::drain::Draining>,
    busy: Option<super::drain::Busy>,
}

/// A whole HTTP/1.1 answer with a JSON error body, for a connection about to be closed.
pub(super) fn raw_answer(status: &str, code: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl Guarded {
    pub(super) fn new(
        inner: Stream,
        timeout: Duration,
        draining: Arc<super::drain::Draining>,
    ) -> Self {
        Self {
            inner,
            timeout,
            clock: HeaderClock::default(),
            timer: None,
            farewell: None,
            draining,
            busy: None,
        }
    }

    /// Keeps the drain's count of connections under way in step with the clock.
    fn mark_busy(&mut self) {
        match (self.clock.in_request(), self.busy.is_some()) {
            (true, false) => self.busy = Some(self.draining.busy()),
            (false, true) => self.busy = None,
            _ => {}
        }
    }

    /// Answers `status` with a JSON error and gives the connection up, for `limit`.
    fn give_up(
        &mut self,
        cx: &mut Context<'_>,
        limit: &'static str,
        status: &str,
        code: &str,
        message: &str,
    ) -> Poll<std::io::Result<()>> {
        tracing::info!(limit, message, "Gave up a connection over a limit.");
        crate::metrics::limit_hit(limit);
        self.farewell = Some((raw_answer(status, code, message), 0));
        self.poll_given_up(cx)
    }

    /// Writes what is left of the answer (as far as the client takes it); then the connection
    /// fails its read.
    fn poll_given_up(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some((answer, written)) = &mut self.farewell {
            while *written < answer.len() {
                match Pin::new(&mut self.inner).poll_write(cx, &answer[*written..]) {
                    Poll::Ready(Ok(n)) if n > 0 => *written += n,
                    Poll::Ready(_) => break,
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
        let _ = Pin::new(&mut self.inner).poll_flush(cx);
        Poll::Ready(Err(std::io::ErrorKind::ConnectionAborted.into()))
    }
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("inner", &self.inner)
            .finish()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.farewell.is_some() {
            return this.poll_given_up(cx);
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &read {
            this.clock.read(&buf.filled()[before..], Instant::now());
            this.mark_busy();
            if this.clock.ambiguous() {
                return this.give_up(
                    cx,
                    "ambiguous_framing",
                    "400 Bad Request",
                    "malformed_request",
                    "the request has both Content-Length and Transfer-Encoding",
                );
            }
            if this.clock.too_long() {
                return this.give_up(
                    cx,
                    "header_size",
                    "431 Request Header Fields Too Large",
                    "headers_too_large",
                    "the request head is over 64 KiB",
                );
            }
        }
        match this.clock.deadline(this.timeout) {
            None => this.timer = None,
            Some(deadline) => {
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if read.is_pending() && std::future::Future::poll(timer.as_mut(), cx).is_ready() {
                    return this.give_up(
                        cx,
                        "header_timeout",
                        "408 Request Timeout",
                        "request_timeout",
                        "the request headers did not arrive in time",
                    );
                }
            }
        }
        read
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &written {
            this.clock.wrote(&data[..*n]);
            this.mark_busy();
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for Guarded {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Guarded {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Guarded {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }
}

impl GetProxyDigest for Guarded {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for Guarded {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait]
impl Peek for Guarded {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

/// Connections open per client address, capped.
#[derive(Debug, Default)]
pub struct PerClient {
    open: Mutex<HashMap<IpAddr, usize>>,
    cap: usize,
}

/// One client connection, counted while it lives.
#[derive(Debug)]
pub struct Held(Arc<PerClient>, IpAddr);

impl PerClient {
    /// At most `cap` connections per address.
    #[must_use]
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::default(),
            cap,
        })
    }

    /// Counts a connection from `client`, or `None` when it already holds the cap.
    #[must_use]
    pub fn take(self: &Arc<Self>, client: IpAddr) -> Option<Held> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(client).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Held(self.clone(), client))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut open = self
            .0
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        header_timeout: Duration::from_secs(30),
        body_gap: Duration::from_secs(60),
        min_body_rate: 1024,
        min_rate_window: Duration::from_secs(30),
        max_connections_per_client: 2,
    };
    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_trickle_is_cut_after_one_window_of_waiting() {
        let mut pace = Pace::new(LIMITS);
        for _ in 0..29 {
            assert_eq!(pace.waited(S, 1), Ok(()));
        }
        assert!(matches!(pace.waited(S, 1), Err(Slow::TooSlow { .. })));
    }

    #[test]
    fn a_steady_body_is_never_cut_and_time_not_waiting_does_not_count() {
        let mut pace = Pace::new(LIMITS);
        // 2 KiB per second of waiting, for ten minutes of waiting; the edge's own pauses
        // (writing to disk) are not waiting and are never reported.
        for _ in 0..600 {
            assert_eq!(pace.waited(S, 2048), Ok(()));
        }
    }

    #[test]
    fn a_stall_is_cut_at_the_gap_even_after_a_fast_start() {
        let limits = Limits {
            min_rate_window: Duration::from_secs(600),
            ..LIMITS
        };
        let mut pace = Pace::new(limits);
        assert_eq!(pace.waited(S, 10 << 20), Ok(()));
        assert_eq!(pace.next_wait(), Duration::from_secs(60));
        assert_eq!(pace.waited(Duration::from_secs(59), 0), Ok(()));
        assert_eq!(pace.next_wait(), S);
        assert_eq!(
            pace.waited(S, 0),
            Err(Slow::Stalled(Duration::from_secs(60)))
        );
    }

    #[test]
    fn a_head_has_a_deadline_from_its_first_byte_until_its_empty_line() {
        let t0 = Instant::now();
        let mut clock = HeaderClock::default();
        assert_eq!(
            clock.deadline(S),
            None,
            "an idle connection is the keep-alive's"
        );
        clock.read(b"PATCH /files/x HTTP/1.1\r\nHost: a\r", t0);
        assert_eq!(clock.deadline(S), Some(t0 + S));
        clock.read(b"\n\r", t0 + S / 2);
        assert_eq!(clock.deadline(S), Some(t0 + S), "from the first byte");
        clock.read(b"\nbody bytes", t0 + S / 2);
        assert_eq!(clock.deadline(S), None, "the empty line split across reads");
        clock.read(b"more body, no deadline", t0 + S * 5);
        assert_eq!(clock.deadline(S), None);
        clock.wrote(b"HTTP/1.1 100 Continue\r\n\r\n");
        clock.read(b"still the body", t0 + S * 6);
        assert_eq!(
            clock.deadline(S),
            None,
            "an interim answer does not end the request"
        );
        clock.wrote(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(clock.deadline(S), None);
        clock.read(b"H", t0 + S * 7);
        assert_eq!(clock.deadline(S), Some(t0 + S * 8), "the next request");
        // A refusal that closes the connection: the rest of the body is no head.
        clock.wrote(b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n\r\n");
        clock.read(&[b'x'; MAX_HEAD + 1], t0 + S * 9);
        assert_eq!(clock.deadline(S), None);
        assert!(!clock.too_long() && !clock.in_request());
    }

    #[test]
    fn both_framing_headers_in_one_head_are_ambiguous_whatever_their_case() {
        let t0 = Instant::now();
        let mut clock = HeaderClock::default();
        clock.read(
            b"POST / HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: 5\r\nX-Transfer-Encoding: x\r\n",
            t0,
        );
        clock.read(b"\r\n", t0);
        assert!(!clock.ambiguous(), "a header that only ends in the name");
        clock.wrote(b"HTTP/1.1 201 Created\r\n");
        clock.read(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-", t0);
        clock.read(b"Encoding: chunked\r\n\r\n0\r\n\r\n", t0);
        assert!(clock.ambiguous());
    }

    /// Found by the fuzz target `http1_head`: Pingora's parser (httparse) also ends lines in a
    /// bare LF and skips empty lines before the request line; a clock waiting for CRLF CRLF let
    /// such a request's framing through unchecked and cut its body at the header timeout.
    #[test]
    fn heads_end_as_httparse_ends_them() {
        let t0 = Instant::now();
        let mut clock = HeaderClock::default();
        clock.read(
            b"POST / HTTP/1.1\nContent-Length: 4\nTransfer-Encoding: chunked\n",
            t0,
        );
        assert!(clock.deadline(S).is_some());
        clock.read(b"\n5\nhello", t0);
        assert!(clock.deadline(S).is_none() && clock.ambiguous());
        let mut clock = HeaderClock::default();
        clock.read(b"\r\n\nGET / HTTP/1.1\r\nHost: a\r\n", t0);
        assert!(
            clock.deadline(S).is_some(),
            "empty lines before the request line"
        );
        clock.read(b"\n", t0);
        assert!(clock.deadline(S).is_none());
    }

    #[test]
    fn connections_per_client_are_capped_and_given_back() {
        let clients = PerClient::new(LIMITS.max_connections_per_client);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let first = clients.take(a).unwrap();
        let _second = clients.take(a).unwrap();
        assert!(clients.take(a).is_none());
        assert!(clients.take("192.0.2.2".parse().unwrap()).is_some());
        drop(first);
        assert!(clients.take(a).is_some());
    }
}
