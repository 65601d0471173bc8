//! tus 1.0's errors: a status, a short text body and the headers tus defines for them
//! (`Tus-Max-Size`, `Upload-Offset`, `Retry-After`). Token and quota refusals use the shared
//! tables ([`crate::token::TokenError`], the quota's code 1101).

/// An error of a tus request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TusError {
    /// 400: `Upload-Concat: final;` without partial upload URLs.
    FinalWithoutParts,
    /// 400: `Upload-Concat` neither `partial` nor `final;…`.
    BadConcat,
    /// 400: a final upload given a length.
    FinalWithLength,
    /// 400: `Upload-Length` is not a number.
    BadLength,
    /// 400: neither `Upload-Length` nor `Upload-Defer-Length: 1`.
    NoLength,
    /// 400: `Upload-Length` below the offset or above the limit.
    LengthOutOfRange,
    /// 400: `Upload-Metadata` is not `key base64` pairs.
    BadMetadata,
    /// 400: the partial uploads cannot be concatenated (which and why).
    NotConcatenable(String),
    /// 400: a PATCH without `Upload-Offset`, or with one that is not a number of bytes.
    NoOffset,
    /// 400: `Upload-Checksum` is not `algorithm base64`.
    BadChecksum,
    /// 403: a final upload cannot be patched.
    FinalPatched,
    /// 404: no such upload for this token.
    NotFound,
    /// 405: the method means nothing here.
    MethodNotAllowed,
    /// 409: the request's offset is not the upload's.
    OffsetMismatch {
        /// The upload's offset.
        current: crate::upload::Offset,
        /// The request's.
        sent: crate::upload::Offset,
    },
    /// 409: another edge took the upload over while this one held it; this edge let it go.
    Moved,
    /// 412: not `Tus-Resumable: 1.0.0`.
    UnsupportedVersion,
    /// 413: larger than `Tus-Max-Size`, in bytes.
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// 415: a PATCH that is not `application/offset+octet-stream`.
    WrongContentType,
    /// 460: the body does not match its `Upload-Checksum`; it was discarded.
    ChecksumMismatch,
    /// The application refused the upload (its hook): the status and message it chose.
    Refused(crate::hook::Refusal),
    /// 503: storage or the origin is unavailable (the cause is logged); retry.
    Unavailable,
    /// 507: the edge's disk is full; nothing of this request was kept, retry from the offset.
    Full,
}

impl TusError {
    /// HTTP status, text body and the tus headers that go with it.
    #[must_use]
    pub fn render(&self) -> (u16, String, Vec<(&'static str, String)>) {
        let plain = |status: u16, text: &str| (status, text.to_owned(), Vec::new());
        match self {
            Self::FinalWithoutParts => plain(
                400,
                "Upload-Concat: final; must list the partial uploads' URLs.",
            ),
            Self::BadConcat => plain(400, "Upload-Concat must be `partial` or `final;URL URL…`."),
            Self::FinalWithLength => plain(
                400,
                "A final upload takes its length from its partial uploads: send no Upload-Length.",
            ),
            Self::BadLength => plain(400, "Upload-Length must be a non-negative integer."),
            Self::NoLength => plain(400, "Send Upload-Length, or Upload-Defer-Length: 1."),
            Self::LengthOutOfRange => plain(
                400,
                "Upload-Length must be at least the offset and at most Tus-Max-Size.",
            ),
            Self::BadMetadata => plain(
                400,
                "Upload-Metadata must be `key base64value` pairs separated by commas.",
            ),
            Self::NotConcatenable(why) => plain(400, why),
            Self::NoOffset => plain(
                400,
                "PATCH needs Upload-Offset: the number of bytes the upload holds (HEAD tells it).",
            ),
            Self::BadChecksum => plain(
                400,
                "Upload-Checksum must be `sha1|sha256|md5 base64digest`.",
            ),
            Self::FinalPatched => plain(403, "A final upload cannot be patched."),
            Self::NotFound => plain(404, "No such upload."),
            Self::MethodNotAllowed => plain(405, "Method not allowed here."),
            Self::OffsetMismatch { current, sent } => (
                409,
                format!("Upload-Offset is {current}, not {sent}."),
                vec![("upload-offset", current.to_string())],
            ),
            Self::Moved => plain(
                409,
                "This upload was continued on another edge: ask HEAD for its offset and resume from there.",
            ),
            Self::UnsupportedVersion => (
                412,
                "This server speaks tus 1.0.0 (send Tus-Resumable: 1.0.0).".into(),
                vec![("tus-version", "1.0.0".into())],
            ),
            Self::TooLarge { max } => (
                413,
                format!("The upload would be larger than Tus-Max-Size ({max} bytes)."),
                vec![("tus-max-size", max.to_string())],
            ),
            Self::WrongContentType => plain(
                415,
                "PATCH needs Content-Type: application/offset+octet-stream.",
            ),
            Self::ChecksumMismatch => plain(460, "Checksum mismatch: the chunk was discarded."),
            Self::Refused(r) => plain(r.status, &r.message),
            Self::Unavailable => (
                503,
                "The service is temporarily unavailable; retry.".into(),
                vec![("retry-after", "5".into())],
            ),
            Self::Full => (
                507,
                "This edge's disk is full: this request's bytes were not kept. Resume from the upload's offset later.".into(),
                vec![("retry-after", super::FULL_RETRY_AFTER.into())],
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::Offset;

    #[test]
    fn statuses_are_stable() {
        let table = [
            (TusError::FinalWithoutParts, 400),
            (TusError::NotConcatenable("x".into()), 400),
            (TusError::NoOffset, 400),
            (TusError::FinalPatched, 403),
            (TusError::NotFound, 404),
            (TusError::MethodNotAllowed, 405),
            (
                TusError::OffsetMismatch {
                    current: Offset::new(5),
                    sent: Offset::new(3),
                },
                409,
            ),
            (TusError::UnsupportedVersion, 412),
            (TusError::TooLarge { max: 9 }, 413),
            (TusError::WrongContentType, 415),
            (TusError::ChecksumMismatch, 460),
            (TusError::Unavailable, 503),
        ];
        for (e, status) in table {
            let (s, text, _) = e.render();
            assert_eq!(s, status, "{e:?}");
            assert!(!text.is_empty());
        }
        let (_, _, headers) = TusError::OffsetMismatch {
            current: Offset::new(5),
            sent: Offset::new(3),
        }
        .render();
        assert_eq!(headers, [("upload-offset", "5".to_owned())]);
    }
}
