//! Wire protocols: thin adapters, one file per API flavour, that translate requests into calls
//! on the ingest core and its results into replies. They see headers and a body stream, never
//! a particular HTTP server, so every listener (Pingora's HTTP/1.1 and HTTP/2, later QUIC)
//! serves them the same way.

pub mod ankoder_form;
pub mod ietf;
pub mod movingimage;
pub mod multipart;
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
    /// The client's address, when known.
    pub client: Option<std::net::IpAddr>,
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
        let verified = crate::token::from_query(query)
            .or_else(|| bearer(headers).map(str::to_owned))
            .ok_or(TokenError::Malformed(crate::token::NO_TOKEN))
            .and_then(|token| self.keyring.verify(&token, self.now, self.skew))
            .and_then(|claims| claims.permits_region(self.region).map(|()| claims));
        verified.map_err(refused)
    }
}

/// Counts a token refusal ([`crate::metrics`]) and passes it on.
pub fn refused(e: TokenError) -> TokenError {
    crate::metrics::token_refused(e.reason());
    e
}

/// The boundary of a `multipart/form-data` request, if it is one.
#[must_use]
pub fn multipart_boundary(headers: &http::HeaderMap) -> Option<String> {
    let content_type = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    multipart::boundary(content_type)
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

/// The header carrying the application's `pre-finish` answer for a stored upload, if it gave
/// one ([`crate::hook::RESPONSE_HEADER`]).
#[must_use]
pub fn hook_response(done: Option<&crate::ingest::Completed>) -> Option<(&'static str, String)> {
    let answer = done?.view.hook_response.as_ref()?;
    Some((
        crate::hook::RESPONSE_HEADER,
        crate::hook::header_value(answer),
    ))
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
    Reply::error(&UploadsApiError::QuotaExceeded)
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
