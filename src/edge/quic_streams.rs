//! HTTP/3's view of a QUIC connection (h3's `quic` traits) over quinn, for the edge's listener.
//!
//! It differs from h3-quinn in how a stream's data is read: quinn hands received data over a
//! packet at a time (about 1.2 KiB), and taking each piece locks the connection's state, which
//! the task driving the connection holds while it decrypts the next packets. Here one lock takes
//! every piece that has arrived (up to [`BATCH`], with quinn's `read_chunks`), and h3 is handed
//! them one by one from that batch without copying. Uploads are almost all received data, so
//! this is the edge's hottest path over HTTP/3.
//!
//! Must not depend on HTTP semantics, the ingest core or the origin: it only moves bytes.

use bytes::{Buf, Bytes};
use h3::quic::{self, ConnectionErrorIncoming, StreamErrorIncoming, StreamId, WriteBuf};
use quinn::VarInt;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// Pieces of a stream's data taken from quinn under one lock, at most.
const BATCH: usize = 64;

type Pending<T> = Pin<Box<dyn Future<Output = Result<T, quinn::ConnectionError>> + Send + Sync>>;

/// A QUIC connection as h3 uses it.
pub struct Connection {
    connection: quinn::Connection,
    accepting_bidi: Option<Pending<(quinn::SendStream, quinn::RecvStream)>>,
    accepting_uni: Option<Pending<quinn::RecvStream>>,
    opener: Opener,
}

impl Connection {
    #[must_use]
    pub fn new(connection: quinn::Connection) -> Self {
        Self {
            opener: Opener::new(connection.clone()),
            connection,
            accepting_bidi: None,
            accepting_uni: None,
        }
    }
}

/// Polls the future in `slot`, made by `start` when there is none, until it is ready.
fn poll_slot<T>(
    slot: &mut Option<Pending<T>>,
    cx: &mut Context<'_>,
    start: impl FnOnce() -> Pending<T>,
) -> Poll<Result<T, quinn::ConnectionError>> {
    let future = slot.get_or_insert_with(start);
    let done = ready!(future.as_mut().poll(cx));
    *slot = None;
    Poll::Ready(done)
}

impl<B: Buf> quic::Connection<B> for Connection {
    type RecvStream = RecvStream;
    type OpenStreams = Opener;

    fn poll_accept_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<RecvStream, ConnectionErrorIncoming>> {
        let connection = &self.connection;
        let recv = ready!(poll_slot(&mut self.accepting_uni, cx, || {
            let connection = connection.clone();
            Box::pin(async move { connection.accept_uni().await })
        }))
        .map_err(connection_error)?;
        Poll::Ready(Ok(RecvStream::new(recv)))
    }

    fn poll_accept_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<BidiStream<B>, ConnectionErrorIncoming>> {
        let connection = &self.connection;
        let (send, recv) = ready!(poll_slot(&mut self.accepting_bidi, cx, || {
            let connection = connection.clone();
            Box::pin(async move { connection.accept_bi().await })
        }))
        .map_err(connection_error)?;
        Poll::Ready(Ok(BidiStream::new(send, recv)))
    }

    fn opener(&self) -> Opener {
        Opener::new(self.connection.clone())
    }
}

impl<B: Buf> quic::OpenStreams<B> for Connection {
    type BidiStream = BidiStream<B>;
    type SendStream = SendStream<B>;

    fn poll_open_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<BidiStream<B>, StreamErrorIncoming>> {
        quic::OpenStreams::<B>::poll_open_bidi(&mut self.opener, cx)
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<SendStream<B>, StreamErrorIncoming>> {
        quic::OpenStreams::<B>::poll_open_send(&mut self.opener, cx)
    }

    fn close(&mut self, code: h3::error::Code, reason: &[u8]) {
        quic::OpenStreams::<B>::close(&mut self.opener, code, reason);
    }
}

/// Opens the streams h3 starts itself (its control and QPACK streams).
pub struct Opener {
    connection: quinn::Connection,
    opening_bidi: Option<Pending<(quinn::SendStream, quinn::RecvStream)>>,
    opening_uni: Option<Pending<quinn::SendStream>>,
}

impl Opener {
    fn new(connection: quinn::Connection) -> Self {
        Self {
            connection,
            opening_bidi: None,
            opening_uni: None,
        }
    }
}

impl<B: Buf> quic::OpenStreams<B> for Opener {
    type BidiStream = BidiStream<B>;
    type SendStream = SendStream<B>;

    fn poll_open_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<BidiStream<B>, StreamErrorIncoming>> {
        let connection = &self.connection;
        let (send, recv) = ready!(poll_slot(&mut self.opening_bidi, cx, || {
            let connection = connection.clone();
            Box::pin(async move { connection.open_bi().await })
        }))
        .map_err(lost)?;
        Poll::Ready(Ok(BidiStream::new(send, recv)))
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<SendStream<B>, StreamErrorIncoming>> {
        let connection = &self.connection;
        let send = ready!(poll_slot(&mut self.opening_uni, cx, || {
            let connection = connection.clone();
            Box::pin(async move { connection.open_uni().await })
        }))
        .map_err(lost)?;
        Poll::Ready(Ok(SendStream::new(send)))
    }

    fn close(&mut self, code: h3::error::Code, reason: &[u8]) {
        let code = VarInt::from_u64(code.value()).unwrap_or(VarInt::MAX);
        self.connection.close(code, reason);
    }
}

/// A request's stream: both directions.
pub struct BidiStream<B: Buf> {
    send: SendStream<B>,
    recv: RecvStream,
}

impl<B: Buf> BidiStream<B> {
    fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> Self {
        Self {
            send: SendStream::new(send),
            recv: RecvStream::new(recv),
        }
    }
}

impl<B: Buf> quic::BidiStream<B> for BidiStream<B> {
    type SendStream = SendStream<B>;
    type RecvStream = RecvStream;

    fn split(self) -> (SendStream<B>, RecvStream) {
        (self.send, self.recv)
    }
}

impl<B: Buf> quic::RecvStream for BidiStream<B> {
    type Buf = Bytes;

    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        self.recv.poll_data(cx)
    }

    fn stop_sending(&mut self, error_code: u64) {
        self.recv.stop_sending(error_code);
    }

    fn recv_id(&self) -> StreamId {
        self.recv.recv_id()
    }
}

impl<B: Buf> quic::SendStream<B> for BidiStream<B> {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.send.poll_ready(cx)
    }

    fn send_data<T: Into<WriteBuf<B>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        self.send.send_data(data)
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.send.poll_finish(cx)
    }

    fn reset(&mut self, reset_code: u64) {
        self.send.reset(reset_code);
    }

    fn send_id(&self) -> StreamId {
        self.send.send_id()
    }
}

/// The receiving half of a stream, read a batch of pieces at a time.
pub struct RecvStream {
    stream: quinn::RecvStream,
    /// Pieces taken from quinn and not yet handed to h3: `batch[next..taken]`.
    batch: Vec<Bytes>,
    next: usize,
    taken: usize,
}

impl RecvStream {
    fn new(stream: quinn::RecvStream) -> Self {
        Self {
            stream,
            batch: Vec::new(),
            next: 0,
            taken: 0,
        }
    }
}

impl quic::RecvStream for RecvStream {
    type Buf = Bytes;

    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        if self.next == self.taken {
            if self.batch.is_empty() {
                self.batch.resize(BATCH, Bytes::new());
            }
            // quinn's read is cancel-safe: a read polled once and dropped loses nothing, and
            // leaves the task woken when more data arrives.
            let read = pin!(self.stream.read_chunks(&mut self.batch)).poll(cx);
            match ready!(read).map_err(read_error)? {
                Some(taken) => {
                    self.next = 0;
                    self.taken = taken;
                }
                None => return Poll::Ready(Ok(None)),
            }
        }
        let piece = std::mem::take(&mut self.batch[self.next]);
        self.next += 1;
        Poll::Ready(Ok(Some(piece)))
    }

    fn stop_sending(&mut self, error_code: u64) {
        // A stream already finished or reset has nothing left to stop.
        let _ = self
            .stream
            .stop(VarInt::from_u64(error_code).unwrap_or(VarInt::MAX));
    }

    fn recv_id(&self) -> StreamId {
        stream_id(self.stream.id())
    }
}

/// The sending half of a stream: h3 hands it one buffer at a time and waits until it is taken.
pub struct SendStream<B: Buf> {
    stream: quinn::SendStream,
    writing: Option<WriteBuf<B>>,
}

impl<B: Buf> SendStream<B> {
    fn new(stream: quinn::SendStream) -> Self {
        Self {
            stream,
            writing: None,
        }
    }
}

impl<B: Buf> quic::SendStream<B> for SendStream<B> {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        if let Some(data) = &mut self.writing {
            while data.has_remaining() {
                let written = ready!(pin!(self.stream.write(data.chunk())).poll(cx))
                    .map_err(write_error)?;
                data.advance(written);
            }
            self.writing = None;
        }
        Poll::Ready(Ok(()))
    }

    fn send_data<T: Into<WriteBuf<B>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        if self.writing.is_some() {
            // h3 waits for `poll_ready` before it sends again; anything else is a bug in it.
            return Err(StreamErrorIncoming::ConnectionErrorIncoming {
                connection_error: ConnectionErrorIncoming::InternalError(
                    "data sent on a QUIC stream before the previous data was taken".to_owned(),
                ),
            });
        }
        self.writing = Some(data.into());
        Ok(())
    }

    fn poll_finish(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        Poll::Ready(
            self.stream
                .finish()
                .map_err(|e| StreamErrorIncoming::Unknown(Box::new(e))),
        )
    }

    fn reset(&mut self, reset_code: u64) {
        // A stream already finished or reset has nothing left to reset.
        let _ = self
            .stream
            .reset(VarInt::from_u64(reset_code).unwrap_or(VarInt::MAX));
    }

    fn send_id(&self) -> StreamId {
        stream_id(self.stream.id())
    }
}

fn stream_id(id: quinn::StreamId) -> StreamId {
    // A QUIC stream id is a variable-length integer, which h3's StreamId holds by definition.
    StreamId::try_from(u64::from(id)).expect("a QUIC stream id is at most 2^62 - 1")
}

fn connection_error(e: quinn::ConnectionError) -> ConnectionErrorIncoming {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => ConnectionErrorIncoming::ApplicationClose {
            error_code: close.error_code.into_inner(),
        },
        quinn::ConnectionError::TimedOut => ConnectionErrorIncoming::Timeout,
        other => ConnectionErrorIncoming::Undefined(Arc::new(other)),
    }
}

fn lost(e: quinn::ConnectionError) -> StreamErrorIncoming {
    StreamErrorIncoming::ConnectionErrorIncoming {
        connection_error: connection_error(e),
    }
}

fn read_error(e: quinn::ReadError) -> StreamErrorIncoming {
    match e {
        quinn::ReadError::Reset(code) => StreamErrorIncoming::StreamTerminated {
            error_code: code.into_inner(),
        },
        quinn::ReadError::ConnectionLost(e) => lost(e),
        other => StreamErrorIncoming::Unknown(Box::new(other)),
    }
}

fn write_error(e: quinn::WriteError) -> StreamErrorIncoming {
    match e {
        quinn::WriteError::Stopped(code) => StreamErrorIncoming::StreamTerminated {
            error_code: code.into_inner(),
        },
        quinn::WriteError::ConnectionLost(e) => lost(e),
        other => StreamErrorIncoming::Unknown(Box::new(other)),
    }
}
