//! The client-visible errors: one closed table per API flavour, each entry a stable code, an
//! HTTP status and a message that is safe to show. Internal causes are logged where they
//! happen and never reach a client.
//!
//! Pure: no HTTP framework, so the edge (Pingora) and the origin (axum) render the same table.
//! Here: the Uploads API, xvid, Cloud VoD, S3 POST and token refusals; beside them the HTML form
//! (`ankoder`), movingimage's upload URLs, tus and the IETF draft. [`chain`] writes an internal
//! error with all its causes, for the one log line where it becomes a 503.

mod ankoder;
mod ietf;
mod movingimage;
mod tus;

pub use ankoder::AnkoderError;
pub use ietf::IetfError;
pub use movingimage::MovingimageError;
pub use tus::TusError;

use serde_json::{json, Value};

/// What every flavour says when the account's storage quota is reached (movingimage's 1101).
const QUOTA_MESSAGE: &str = "Upload denied: the booked storage capacity is reached.";
/// What the upload flavours say when storage or the origin is unavailable.
const RETRY_MESSAGE: &str = "The service is temporarily unavailable; retry the upload.";

/// An error and every cause under it, `outer: inner: innermost`, for a log line.
#[must_use]
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether `error` (or one of its causes) is a full disk: the request can be retried once
/// space is freed, or on another edge.
#[must_use]
pub fn disk_full(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28) {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// How long a client is told to wait before it retries on a full disk.
pub const FULL_RETRY_AFTER: &str = "30";

/// An error of the Uploads API (Laravel-style bodies: `message`, and `errors` per field for
/// validation failures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadsApiError {
    /// No or an unknown API key.
    Unauthenticated,
    /// No such upload for this account.
    NotFound,
    /// The path or method does not exist.
    NoRoute,
    /// A required form field is missing or unusable.
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The body is not a well-formed request of its kind.
    Malformed(String),
    /// The request conflicts with the upload's state.
    Conflict(&'static str),
    /// The file is larger than this node accepts.
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The account's storage quota would be exceeded.
    QuotaExceeded,
    /// The application refused the upload (its hook): the status and message it chose.
    Refused(crate::hook::Refusal),
    /// Storage or the origin is unavailable; the client should retry.
    Unavailable,
    /// The edge's disk is full; the client should retry later (or at another edge).
    Full,
    /// Anything else; details are in the server log.
    Internal,
}

impl UploadsApiError {
    /// The HTTP status and JSON body.
    #[must_use]
    pub fn render(&self) -> (u16, Value) {
        match self {
            Self::Unauthenticated => (
                401,
                json!({ "message": "Unauthenticated. Send Authorization: Bearer <api_key>." }),
            ),
            Self::NotFound => (404, json!({ "message": "Upload not found." })),
            Self::NoRoute => (404, json!({ "message": "Not found." })),
            Self::Invalid { field, message } => (
                422,
                json!({ "message": message, "errors": { *field: [message] } }),
            ),
            Self::Malformed(why) => (
                400,
                json!({ "message": format!("Malformed request: {why}") }),
            ),
            Self::Conflict(why) => (409, json!({ "message": why })),
            Self::TooLarge { limit } => (
                413,
                json!({ "message": format!("The video is larger than this server accepts ({limit} bytes).") }),
            ),
            Self::QuotaExceeded => (413, json!({ "code": 1101, "message": QUOTA_MESSAGE })),
            Self::Refused(r) => (
                r.status,
                json!({ "code": "refused_by_hook", "message": r.message }),
            ),
            Self::Unavailable => (503, json!({ "message": RETRY_MESSAGE })),
            Self::Full => (
                507,
                json!({ "message": "This edge's disk is full: the upload was not kept. Retry later." }),
            ),
            Self::Internal => (500, json!({ "message": "Internal server error." })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_stable() {
        let table = [
            (UploadsApiError::Unauthenticated, 401),
            (UploadsApiError::NotFound, 404),
            (
                UploadsApiError::Invalid {
                    field: "folder",
                    message: "x".into(),
                },
                422,
            ),
            (UploadsApiError::Malformed("x".into()), 400),
            (UploadsApiError::Conflict("x"), 409),
            (UploadsApiError::TooLarge { limit: 1 }, 413),
            (UploadsApiError::QuotaExceeded, 413),
            (UploadsApiError::Unavailable, 503),
            (UploadsApiError::Full, 507),
            (UploadsApiError::Internal, 500),
        ];
        for (err, status) in table {
            let (got, body) = err.render();
            assert_eq!(got, status, "{err:?}");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }

    #[test]
    fn a_chain_names_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot store the upload")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(chain(&e), "cannot store the upload: disk full");
    }

    #[test]
    fn validation_errors_name_the_field() {
        let (_, body) = UploadsApiError::Invalid {
            field: "folder",
            message: "The folder field is required.".into(),
        }
        .render();
        assert_eq!(body["errors"]["folder"][0], "The folder field is required.");
    }
}

/// An error of the xvid API: the seed's codes and messages, rendered as
/// `{"error": {"error_code", "error_message"}}` (or the same in XML).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XvidError {
    /// 400 `0x0230001`: a parameter is missing or unusable.
    InvalidInput,
    /// 403 `0x0000003`: no or an unknown Bearer token.
    InvalidToken,
    /// 404 `0x0230002`: the pipeline or file does not exist.
    NotFound,
    /// 500 `0x0000001`: anything else; details are in the server log.
    Internal,
}

impl XvidError {
    /// HTTP status, error code and message.
    #[must_use]
    pub fn parts(self) -> (u16, &'static str, &'static str) {
        match self {
            Self::InvalidInput => (400, "0x0230001", "Invalid Input"),
            Self::InvalidToken => (403, "0x0000003", "Invalid access token"),
            Self::NotFound => (404, "0x0230002", "Requested file does not exist"),
            Self::Internal => (500, "0x0000001", "Internal Error"),
        }
    }

    /// The HTTP status and body (as JSON; XML renders the same tree).
    #[must_use]
    pub fn render(self) -> (u16, Value) {
        let (status, code, message) = self.parts();
        (
            status,
            json!({ "error": { "error_code": code, "error_message": message } }),
        )
    }
}

#[cfg(test)]
mod xvid_tests {
    use super::*;

    #[test]
    fn the_seeds_codes() {
        let (status, body) = XvidError::InvalidInput.render();
        assert_eq!(status, 400);
        assert_eq!(
            body,
            json!({ "error": { "error_code": "0x0230001", "error_message": "Invalid Input" } })
        );
        assert_eq!(
            XvidError::InvalidToken.parts(),
            (403, "0x0000003", "Invalid access token")
        );
        assert_eq!(
            XvidError::NotFound.parts(),
            (404, "0x0230002", "Requested file does not exist")
        );
        assert_eq!(
            XvidError::Internal.parts(),
            (500, "0x0000001", "Internal Error")
        );
    }
}

/// An error of the Cloud VoD API: the seed's `{code, message}` body with its codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudVodError {
    /// 1500: `originFileName` over 40 characters.
    NameTooLong,
    /// 1604: `md5` given but empty.
    Md5Empty,
    /// 1605: `md5` longer than an MD5 digest.
    Md5TooLong,
    /// 1606: `originFileName` empty or missing.
    NameEmpty,
    /// 1607: the `fileId` names an upload of another file, or a parameter is unusable.
    Source,
    /// 1608: `overwrite` is neither 0 nor 1.
    Overwrite,
    /// 1609: `fileSize` is not a non-negative integer.
    SizeInvalid,
    /// 1610: `fileSize` is over the limit.
    SizeTooLarge,
    /// Missing or wrong `X-WS-AccessKey` / `Authorization`.
    Unauthorized,
    /// `X-WS-Timestamp` missing, malformed or more than 5 minutes off.
    StaleTimestamp,
    /// Anything else; details are in the server log.
    Internal,
}

impl CloudVodError {
    /// HTTP status, code and message.
    #[must_use]
    pub fn parts(self) -> (u16, u16, &'static str) {
        match self {
            Self::NameTooLong => (400, 1500, "The file name has exceeded 40 characters."),
            Self::Md5Empty => (400, 1604, "The file MD5 value cannot be empty."),
            Self::Md5TooLong => (400, 1605, "The length of MD5 string is too long."),
            Self::NameEmpty => (400, 1606, "The video name cannot be empty."),
            Self::Source => (400, 1607, "Video source error."),
            Self::Overwrite => (400, 1608, "Parameter overwrite is neither 0 nor 1."),
            Self::SizeInvalid => (400, 1609, "Video size can only be a non-negative integer."),
            Self::SizeTooLarge => (400, 1610, "Video size has exceeded the limit."),
            Self::Unauthorized => (
                401,
                401,
                "Authentication failed: check X-WS-AccessKey and Authorization.",
            ),
            Self::StaleTimestamp => (
                403,
                403,
                "X-WS-Timestamp is missing or more than 5 minutes from the server's clock.",
            ),
            Self::Internal => (500, 500, "Internal error."),
        }
    }

    /// The HTTP status and body.
    #[must_use]
    pub fn render(self) -> (u16, Value) {
        let (status, code, message) = self.parts();
        (status, json!({ "code": code, "message": message }))
    }
}

/// An error of the S3 POST Object endpoint, rendered as S3 does:
/// `<Error><Code>…</Code><Message>…</Message></Error>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Error {
    /// 403: the signature does not match.
    SignatureDoesNotMatch,
    /// 403: no such access key.
    InvalidAccessKeyId,
    /// 403: the policy refuses the form (expired, a failed condition, an extra field).
    AccessDenied(String),
    /// 400: a required field is missing or unusable.
    InvalidArgument(String),
    /// 400: the body is not a usable multipart form.
    MalformedPostRequest,
    /// 400: larger than the policy or the node allows.
    EntityTooLarge,
    /// 400: smaller than the policy's minimum.
    EntityTooSmall,
    /// 403: the account's storage quota is reached (movingimage's code 1101, in `UplinkCode`).
    QuotaExceeded,
    /// 404: the bucket (pipeline) does not exist for this account.
    NoSuchBucket,
    /// 404: the chunked upload is over: stored, or failed (the server holding its earlier
    /// chunks was lost).
    NoSuchUpload,
    /// 409: another upload server holds the upload's earlier chunks.
    OperationAborted,
    /// 503: storage or the origin is unavailable.
    ServiceUnavailable,
    /// 500: anything else.
    InternalError,
}

impl S3Error {
    /// HTTP status, S3 error code and message.
    #[must_use]
    pub fn parts(&self) -> (u16, &'static str, String) {
        match self {
            Self::SignatureDoesNotMatch => (
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided."
                    .into(),
            ),
            Self::InvalidAccessKeyId => (
                403,
                "InvalidAccessKeyId",
                "The access key Id you provided does not exist in our records.".into(),
            ),
            Self::AccessDenied(why) => (403, "AccessDenied", why.clone()),
            Self::InvalidArgument(why) => (400, "InvalidArgument", why.clone()),
            Self::MalformedPostRequest => (
                400,
                "MalformedPOSTRequest",
                "The body of your POST request is not well-formed multipart/form-data.".into(),
            ),
            Self::EntityTooLarge => (
                400,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size.".into(),
            ),
            Self::EntityTooSmall => (
                400,
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed size.".into(),
            ),
            Self::QuotaExceeded => (
                403,
                "QuotaExceeded",
                "Upload denied: the booked storage capacity is reached.".into(),
            ),
            Self::NoSuchBucket => (
                404,
                "NoSuchBucket",
                "The specified bucket does not exist.".into(),
            ),
            Self::NoSuchUpload => (
                404,
                "NoSuchUpload",
                "The upload these chunks belong to is over: it was stored, or it failed because the server holding its earlier chunks was lost. Upload the file again.".into(),
            ),
            Self::OperationAborted => (
                409,
                "OperationAborted",
                "This upload's earlier chunks are on another upload server; send every chunk to the same URL.".into(),
            ),
            Self::ServiceUnavailable => (
                503,
                "ServiceUnavailable",
                "Please reduce your request rate or retry.".into(),
            ),
            Self::InternalError => (
                500,
                "InternalError",
                "We encountered an internal error. Please try again.".into(),
            ),
        }
    }

    /// The HTTP status and the XML body.
    #[must_use]
    pub fn render(&self) -> (u16, String) {
        let (status, code, message) = self.parts();
        let message = message
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        // S3 clients read Code and Message and skip other elements.
        let extra = if matches!(self, Self::QuotaExceeded) {
            "<UplinkCode>1101</UplinkCode>"
        } else {
            ""
        };
        (
            status,
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>{extra}</Error>"),
        )
    }
}

impl crate::token::TokenError {
    /// The client-visible answer for an edge request whose upload token is refused: 401 for a
    /// token that is malformed, forged, unknown or expired; 403 for a genuine token used
    /// outside its scope. The message says what to do; the token itself is never echoed.
    #[must_use]
    pub fn render(&self) -> (u16, Value) {
        use crate::token::TokenError as T;
        let (code, message) = match self {
            T::Malformed(_) => ("token_malformed", "The upload token is malformed. Send it as __token__=… or Authorization: Bearer …."),
            T::UnknownKey => ("token_unknown_key", "The upload token was signed with a key this edge does not know; ask the API for a new upload URL."),
            T::BadSignature => ("token_invalid", "The upload token's signature is invalid; ask the API for a new upload URL."),
            T::Expired => ("token_expired", "The upload token has expired; ask the API for a new upload URL."),
            T::WrongScope => ("token_scope", "The upload token does not allow this upload (another upload, path or a larger size)."),
            T::WrongRegion(_) => ("token_region", "The upload URL belongs to an edge in another region; send the upload to the URL the API returned."),
        };
        (self.status(), json!({ "error": code, "message": message }))
    }
}

#[cfg(test)]
mod refusal_tests {
    use super::{S3Error, UploadsApiError};
    use crate::token::TokenError;

    #[test]
    fn quota_refusals_carry_code_1101_in_every_format() {
        let (status, body) = UploadsApiError::QuotaExceeded.render();
        assert_eq!((status, body["code"].as_u64()), (413, Some(1101)));
        let (status, xml) = S3Error::QuotaExceeded.render();
        assert_eq!(status, 403);
        assert!(xml.contains("<Code>QuotaExceeded</Code>"), "{xml}");
        assert!(xml.contains("<UplinkCode>1101</UplinkCode>"), "{xml}");
        assert!(!S3Error::EntityTooLarge.render().1.contains("UplinkCode"));
    }

    #[test]
    fn token_refusals_are_401_or_403_with_a_message() {
        for (e, status) in [
            (TokenError::Malformed("x"), 401),
            (TokenError::UnknownKey, 401),
            (TokenError::BadSignature, 401),
            (TokenError::Expired, 401),
            (TokenError::WrongScope, 403),
            (TokenError::WrongRegion("eu".into()), 403),
        ] {
            let (got, body) = e.render();
            assert_eq!(got, status, "{e:?}");
            assert!(body["error"]
                .as_str()
                .is_some_and(|c| c.starts_with("token_")));
            assert!(body["message"].as_str().is_some_and(|m| m.len() > 20));
        }
    }
}
