//! The IETF resumable-upload draft's errors as problem details (RFC 9457): a status, the
//! draft's problem type where it names one, a title and extra members. The headers that go
//! with them (`Upload-Limit`, `Upload-Complete`) depend on the request and are the adapter's.

use serde_json::{json, Value};

/// An error of an IETF draft request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IetfError {
    /// 400: no `Upload-Complete` (or `Upload-Incomplete`).
    NoCompleteness,
    /// 400: the lengths a request declares disagree, with each other or the upload's.
    InconsistentLength,
    /// 400: a PATCH without `Upload-Offset`, or with one that is not a number of bytes.
    NoOffset,
    /// 400: the upload is already complete.
    AlreadyComplete,
    /// 400: the body does not match its digest; it was discarded.
    DigestMismatch,
    /// 404: no such upload for this token.
    NotFound,
    /// 405: the method means nothing here.
    MethodNotAllowed,
    /// 409: the request's offset is not the upload's.
    OffsetMismatch {
        /// The upload's offset.
        expected: crate::upload::Offset,
        /// The request's.
        provided: crate::upload::Offset,
    },
    /// 409: another edge took the upload over while this one held it; this edge let it go.
    Moved,
    /// 413: larger than the upload's limit, in bytes.
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// 415: a PATCH that is not `application/partial-upload` (interop 6 on).
    WrongContentType,
    /// The application refused the upload (its hook): the status and message it chose.
    Refused(crate::hook::Refusal),
    /// 503: storage or the origin is unavailable (the cause is logged); resume later.
    Unavailable,
    /// 507: the edge's disk is full; nothing of this request was kept, resume later.
    Full,
}

impl IetfError {
    /// HTTP status, the draft's problem type (if any), title and extra members.
    #[must_use]
    pub fn problem(&self) -> (u16, Option<&'static str>, String, Value) {
        let plain = |status: u16, title: &str| (status, None, title.to_owned(), json!({}));
        match self {
            Self::NoCompleteness => plain(
                400,
                "Send Upload-Complete: ?1 or ?0 (Upload-Incomplete in interop version 3).",
            ),
            Self::InconsistentLength => (
                400,
                Some("inconsistent-upload-length"),
                "inconsistent length values for upload".into(),
                json!({}),
            ),
            Self::NoOffset => plain(
                400,
                "PATCH needs Upload-Offset: the number of bytes the upload holds (HEAD tells it).",
            ),
            Self::AlreadyComplete => plain(400, "The upload is already complete."),
            Self::DigestMismatch => plain(400, "Digest mismatch."),
            Self::NotFound => plain(404, "No such upload."),
            Self::MethodNotAllowed => plain(405, "Method not allowed here."),
            Self::OffsetMismatch { expected, provided } => (
                409,
                Some("mismatching-upload-offset"),
                "offset from request does not match offset of resource".into(),
                json!({ "expected-offset": expected, "provided-offset": provided }),
            ),
            Self::Moved => plain(
                409,
                "This upload was continued on another edge: ask HEAD for its offset and resume from there.",
            ),
            Self::Refused(r) => (
                r.status,
                None,
                r.message.clone(),
                json!({ "code": "refused_by_hook" }),
            ),
            Self::TooLarge { max } => plain(
                413,
                &format!("The upload would be larger than max-size ({max} bytes)."),
            ),
            Self::WrongContentType => {
                plain(415, "PATCH needs Content-Type: application/partial-upload.")
            }
            Self::Unavailable => plain(
                503,
                "The service is temporarily unavailable; resume the upload.",
            ),
            Self::Full => plain(
                507,
                "This edge's disk is full: this request's bytes were not kept. Resume the upload later.",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::Offset;

    #[test]
    fn statuses_and_types_are_stable() {
        let table = [
            (IetfError::NoCompleteness, 400, None),
            (
                IetfError::InconsistentLength,
                400,
                Some("inconsistent-upload-length"),
            ),
            (IetfError::NotFound, 404, None),
            (
                IetfError::OffsetMismatch {
                    expected: Offset::new(5),
                    provided: Offset::new(3),
                },
                409,
                Some("mismatching-upload-offset"),
            ),
            (IetfError::TooLarge { max: 9 }, 413, None),
            (IetfError::WrongContentType, 415, None),
            (IetfError::Unavailable, 503, None),
        ];
        for (e, status, kind) in table {
            let (s, k, title, _) = e.problem();
            assert_eq!((s, k), (status, kind), "{e:?}");
            assert!(!title.is_empty());
        }
        let (_, _, _, extra) = IetfError::OffsetMismatch {
            expected: Offset::new(5),
            provided: Offset::new(3),
        }
        .problem();
        assert_eq!(extra["expected-offset"], 5);
    }
}
