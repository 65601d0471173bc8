//! One request and its response as the edge's handlers see them, whatever carries them:
//! Pingora's session (HTTP/1.1 and HTTP/2, plain or TLS) or an HTTP/3 request stream. Handlers
//! read the head, may send informational responses (100 Continue, 104), read the body as a
//! stream and write the response; every upload protocol is written once, against this.
//!
//! Must not depend on the origin or the database.

use crate::protocol::Reply;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// What a handler keeps of the request head while it reads the body.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The method.
    pub method: http::Method,
    /// The path, without the query.
    pub path: String,
    /// The query, if any.
    pub query: Option<String>,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The client's address (the connection's peer), when known.
    pub client: Option<std::net::IpAddr>,
}

/// A request being answered.
#[async_trait]
pub trait Exchange: Send {
    /// The request head.
    fn head(&self) -> RequestHead;
    /// The HTTP version carrying it: `1.1`, `2` or `3`.
    fn version(&self) -> &'static str;
    /// Sends an informational (1xx) response. Where the transport cannot carry it (Pingora's
    /// HTTP/2 drops them) it is not sent; a client never depends on one.
    async fn informational(
        &mut self,
        status: u16,
        headers: &[(&'static str, String)],
    ) -> pingora::Result<()>;
    /// The next piece of the request body; `None` at its end.
    async fn read(&mut self) -> pingora::Result<Option<Bytes>>;
    /// Whether the whole request body has been read.
    fn body_done(&mut self) -> bool;
    /// Sends the response head; `end` when there is no body.
    async fn respond(&mut self, head: ResponseHeader, end: bool) -> pingora::Result<()>;
    /// Sends a piece of the response body; `end` with the last one.
    async fn send(&mut self, data: Bytes, end: bool) -> pingora::Result<()>;
    /// Closes the connection after this response (a refused request whose body is unread).
    fn close_after(&mut self) {}
}

#[async_trait]
impl Exchange for Session {
    fn head(&self) -> RequestHead {
        let req = self.req_header();
        RequestHead {
            method: req.method.clone(),
            path: req.uri.path().to_owned(),
            query: req.uri.query().map(str::to_owned),
            headers: req.headers.clone(),
            client: self.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()),
        }
    }

    fn version(&self) -> &'static str {
        if self.is_http2() {
            "2"
        } else {
            "1.1"
        }
    }

    async fn informational(
        &mut self,
        status: u16,
        headers: &[(&'static str, String)],
    ) -> pingora::Result<()> {
        if status == 100 {
            return self.write_continue_response().await;
        }
        let mut header = ResponseHeader::build(status, Some(headers.len()))?;
        for (name, value) in headers {
            header.insert_header(*name, value)?;
        }
        self.write_response_header(Box::new(header), false).await
    }

    async fn read(&mut self) -> pingora::Result<Option<Bytes>> {
        self.read_request_body().await
    }

    fn body_done(&mut self) -> bool {
        self.is_body_done()
    }

    async fn respond(&mut self, head: ResponseHeader, end: bool) -> pingora::Result<()> {
        self.write_response_header(Box::new(head), end).await
    }

    async fn send(&mut self, data: Bytes, end: bool) -> pingora::Result<()> {
        self.write_response_body(Some(data), end).await
    }

    fn close_after(&mut self) {
        self.set_keepalive(None);
    }
}

/// The request body as a stream of pieces, read only as fast as the consumer takes them.
pub fn body_stream(
    x: &mut dyn Exchange,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + '_ {
    futures_util::stream::unfold(Some(x), |x| async move {
        let x = x?;
        match x.read().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(x))),
            Ok(None) => None,
            // End the stream after an error: the consumer sees it once.
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
        }
    })
}

/// Answers `Expect: 100-continue` once the request may proceed.
pub async fn continue_if_expected(
    x: &mut dyn Exchange,
    headers: &http::HeaderMap,
) -> pingora::Result<()> {
    let expected = headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expected {
        x.informational(100, &[]).await?;
    }
    Ok(())
}

/// How long, and how much, a refused request's remaining body is read after the reply, so a
/// client still sending sees the reply instead of a reset connection (nginx's lingering close).
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(10);
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// Writes a whole reply, with `extra` headers (CORS, `Alt-Svc`).
pub async fn write_reply(
    x: &mut dyn Exchange,
    reply: Reply,
    extra: &[(&'static str, String)],
) -> pingora::Result<()> {
    let (header, body) = rendered(reply, extra)?;
    let unread = !x.body_done();
    if unread {
        // Refused before the whole body was read: never reuse the connection.
        x.close_after();
    }
    x.respond(header, false).await?;
    x.send(body, true).await?;
    if unread {
        linger(x).await;
    }
    Ok(())
}

/// A reply's response head (with `extra` headers and the request's id) and body.
///
/// # Errors
/// A header value is not one HTTP allows.
pub(super) fn rendered(
    reply: Reply,
    extra: &[(&'static str, String)],
) -> pingora::Result<(ResponseHeader, Bytes)> {
    let reply = with_request_id(reply);
    let mut header = ResponseHeader::build(reply.status, Some(2))?;
    header.insert_header(http::header::CONTENT_TYPE, reply.content_type)?;
    header.insert_header(http::header::CONTENT_LENGTH, reply.body.len().to_string())?;
    for (name, value) in reply.headers.iter().chain(extra) {
        header.insert_header(*name, value)?;
    }
    Ok((header, reply.body))
}

/// The reply with the current request's id ([`crate::request_id`]): as `X-Request-Id`, and
/// as `request_id` in a JSON error body, so a client can quote it.
fn with_request_id(mut reply: Reply) -> Reply {
    let Some(id) = crate::request_id::current() else {
        return reply;
    };
    if let Some(body) =
        crate::request_id::quoted(reply.status, reply.content_type, &reply.body, &id)
    {
        reply.body = body.into();
    }
    reply.headers.push((crate::request_id::HEADER, id));
    reply
}

/// Reads and discards what the client is still sending, within [`LINGER_TIME`] and
/// [`LINGER_BYTES`], before the connection closes.
async fn linger(x: &mut dyn Exchange) {
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, x.read()).await {
            Ok(Ok(Some(piece))) => discarded += piece.len(),
            _ => break,
        }
    }
}
