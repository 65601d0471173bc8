//! Forwards a control-API request the edge has read itself to the origin (HTTP/3 requests, and
//! `POST /v1/videos` without a `url`), as Pingora's proxy does for the others.
//!
//! Must not depend on the protocols' adapters.

use super::exchange::{write_reply, Exchange, RequestHead};
use super::origins::Origins;
use crate::error::UploadsApiError;
use crate::protocol::Reply;
use bytes::Bytes;
use pingora::http::ResponseHeader;

/// The largest control-API request body forwarded to the origin (uploads never are).
const FORWARD_LIMIT: usize = 1 << 20;

/// Forwards a control-API request to the origin, as Pingora's proxy does for TCP: the
/// internal secret header is dropped and the client joins `X-Forwarded-For`.
///
/// # Errors
/// The client connection fails.
pub(super) async fn forward(
    x: &mut dyn Exchange,
    client: &reqwest::Client,
    origins: &Origins,
) -> pingora::Result<()> {
    let head = x.head();
    match read_body(x).await? {
        Ok(body) => forward_read(x, head, body, client, origins).await,
        Err(reply) => write_reply(x, reply, &[]).await,
    }
}

/// A control-API request's body, read whole (it is small), or the reply refusing it.
///
/// # Errors
/// The client connection fails.
pub(super) async fn read_body(x: &mut dyn Exchange) -> pingora::Result<Result<Vec<u8>, Reply>> {
    let mut body = Vec::new();
    while let Some(piece) = x.read().await? {
        body.extend_from_slice(&piece);
        if body.len() > FORWARD_LIMIT {
            return Ok(Err(Reply::error(&UploadsApiError::Malformed(
                "the request body is too large for this API".into(),
            ))));
        }
    }
    Ok(Ok(body))
}

/// [`forward`] with the request's body already read.
///
/// # Errors
/// The client connection fails.
pub(super) async fn forward_read(
    x: &mut dyn Exchange,
    head: RequestHead,
    body: Vec<u8>,
    client: &reqwest::Client,
    origins: &Origins,
) -> pingora::Result<()> {
    // The current origin; one that cannot be connected to is left for the next request.
    let origin = origins.current();
    let url = format!(
        "{}{}{}",
        origins.get(origin).url,
        head.path,
        head.query.map(|q| format!("?{q}")).unwrap_or_default()
    );
    let mut headers = head.headers.clone();
    headers.remove(crate::control::SECRET_HEADER);
    headers.remove(http::header::HOST);
    if let Some(client_addr) = head.client {
        let chain = super::proxy::forwarded_chain(&head.headers, client_addr);
        if let Ok(value) = http::HeaderValue::from_str(&chain) {
            headers.insert("x-forwarded-for", value);
        }
    }
    let id = crate::request_id::current().unwrap_or_default();
    if let Ok(value) = http::HeaderValue::from_str(&id) {
        headers.insert(crate::request_id::HEADER, value);
    }
    let answer = client
        .request(head.method.clone(), url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let mut answer = match answer {
        Ok(a) => a,
        Err(e) => {
            if e.is_connect() {
                origins.failed(origin);
            }
            tracing::warn!(error = %e, "Forwarding a request to the origin failed.");
            let reply = Reply::error(&UploadsApiError::Unavailable);
            return write_reply(x, reply, &[]).await;
        }
    };
    let mut head = ResponseHeader::build(answer.status().as_u16(), Some(answer.headers().len()))?;
    for (name, value) in answer.headers() {
        head.append_header(name.clone(), value.clone())?;
    }
    head.insert_header(crate::request_id::HEADER, &id)?;
    x.respond(head, false).await?;
    loop {
        match answer.chunk().await {
            Ok(Some(piece)) => x.send(piece, false).await?,
            Ok(None) => return x.send(Bytes::new(), true).await,
            Err(e) => {
                return Err(pingora::Error::because(
                    pingora::ErrorType::ReadError,
                    "reading the origin's answer",
                    e,
                ))
            }
        }
    }
}
