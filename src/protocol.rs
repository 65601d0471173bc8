//! Wire protocols: thin adapters, one file per API flavour, that translate requests into calls
//! on the ingest core and its results into replies. They see headers and a body stream, never
//! a particular HTTP server, so every listener (Pingora's HTTP/1.1 and HTTP/2, later QUIC)
//! serves them the same way.

pub mod ankoder_form;
pub mod ietf;
pub mod movingimage;
pub mod resumable;
pub mod s3_post;
pub mod tus;
pub mod uploads_api;

use crate::error::UploadsApiError;
use crate::ingest::Ingest;
use crate::token::{Claims, Keyring, TokenError};
use bytes::Bytes;
use serde_json::Value;

/// What a token-checked protocol needs from its edge; `Spool` is its kind of spool.
pub struct Ctx<'a, Spool> {
    /// The ingest core.
    pub ingest: &'a Ingest,
    /// Token keys.
    pub keyring: &'a Keyring,
    /// Allowed clock skew (seconds).
    pub skew: u64,
    /// The protocol's spool.
    pub spool: &'a Spool,
    /// Now, Unix seconds.
    pub now: u64,
    /// This edge's region, if it is in a fleet region.
    pub region: Option<&'a str>,
}

impl<Spool> Ctx<'_, Spool> {
    /// The request's token (`__token__` query parameter, else `Authorization: Bearer`),
    /// verified, and for this edge's region; its scope is the caller's to check.
    ///
    /// # Errors
    /// Missing, malformed, forged, unknown-key, expired or another region's.
    pub fn verify_token(
        &self,
        query: Option<&str>,
        headers: &http::HeaderMap,
    ) -> Result<Claims, TokenError> {
        let token = crate::token::from_query(query)
            .or_else(|| bearer(headers).map(str::to_owned))
            .ok_or(TokenError::Malformed("no token"))?;
        let claims = self.keyring.verify(&token, self.now, self.skew)?;
        claims.permits_region(self.region)?;
        Ok(claims)
    }
}

/// A form whose text fields are at most `max_field` bytes and whose `file` field is streamed
/// whatever its size (the caller enforces the file's own limits).
pub fn file_form<'r, S>(body: S, boundary: String, max_field: u64) -> multer::Multipart<'r>
where
    S: futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'r,
{
    let limits = multer::SizeLimit::new()
        .per_field(max_field)
        .for_field("file", u64::MAX);
    form(
        body,
        boundary,
        multer::Constraints::new().size_limit(limits),
    )
}

/// A `multipart/form-data` parser over a request body, fed one piece at a time: multer reads
/// everything a stream has ready into one growing buffer, which for a fast client is much of
/// the upload (memory and copies without bound); see [`paced`].
pub fn form<'r, S>(
    body: S,
    boundary: String,
    constraints: multer::Constraints,
) -> multer::Multipart<'r>
where
    S: futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'r,
{
    multer::Multipart::with_constraints(paced(body), boundary, constraints)
}

/// `body`, pausing after each piece (it answers `Pending` once, and wakes itself at once), so a
/// consumer that reads until `Pending` takes one piece at a time.
fn paced<S>(body: S) -> impl futures_util::Stream<Item = S::Item> + Send
where
    S: futures_util::Stream + Send,
{
    let mut body = Box::pin(body);
    let mut just_gave = false;
    futures_util::stream::poll_fn(move |cx| {
        if std::mem::take(&mut just_gave) {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        let next = body.as_mut().poll_next(cx);
        just_gave = matches!(next, std::task::Poll::Ready(Some(_)));
        next
    })
}

/// The boundary of a `multipart/form-data` request, if it is one.
#[must_use]
pub fn multipart_boundary(headers: &http::HeaderMap) -> Option<String> {
    let content_type = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    multer::parse_boundary(content_type).ok()
}

/// A complete reply to render on whatever connection the request came in on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
    /// Further headers (`ETag`, `Location`, …).
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    /// The reply for an error of the client-visible table.
    #[must_use]
    pub fn error(e: &UploadsApiError) -> Self {
        let (status, body) = e.render();
        Self::json(status, &body)
    }

    /// A JSON reply.
    #[must_use]
    pub fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: Bytes::from(body.to_string()),
            headers: Vec::new(),
        }
    }
}

/// The account's storage quota is reached: every protocol answers with movingimage's code
/// 1101 (in its own format where it has one), and keeps nothing of the upload.
#[must_use]
pub fn quota_exceeded() -> Reply {
    Reply::json(
        413,
        &serde_json::json!({ "code": 1101, "message": "Upload denied: the booked storage capacity is reached." }),
    )
}

/// The token of an `Authorization: Bearer …` header.
#[must_use]
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn a_paced_body_gives_one_piece_per_poll() {
        use futures_util::Stream;
        use std::task::{Context, Poll};
        let mut body = std::pin::pin!(paced(futures_util::stream::iter([1, 2])));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let polls: Vec<Poll<Option<i32>>> =
            (0..5).map(|_| body.as_mut().poll_next(&mut cx)).collect();
        assert_eq!(
            polls,
            [
                Poll::Ready(Some(1)),
                Poll::Pending,
                Poll::Ready(Some(2)),
                Poll::Pending,
                Poll::Ready(None)
            ]
        );
    }

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer sk-abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("sk-abc"));
        h.insert("authorization", "bearer  sk-abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("sk-abc"));
        h.insert("authorization", "Basic sk-abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
