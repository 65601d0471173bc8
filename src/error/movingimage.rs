//! movingimage's upload-URL errors: `{"message": …}` bodies (the Uploads API's shape, which
//! movingimage's clients read), and its quota code 1101.

use super::UploadsApiError;
use crate::upload::chunk_set::MAX_CHUNKS;
use serde_json::{json, Value};

/// An error of a movingimage upload URL (`POST /upload/{videoId}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MovingimageError {
    /// 400: the chunk headers are missing or out of range.
    ChunkHeaders,
    /// 400: the chunk's body ended before its end.
    BodyEnded,
    /// 400: neither chunk headers nor a multipart form.
    NotChunkNorForm,
    /// 400: the form is cut off or malformed (what is wrong with it).
    Malformed(String),
    /// 404: no such video for this token.
    NotFound,
    /// 409: a repeated chunk with other bytes, or another chunk count (what conflicts).
    Conflict(String),
    /// 409: another upload server holds the upload's earlier chunks (the client changed
    /// servers mid-upload).
    HeldElsewhere,
    /// 410: the upload failed (its status record says why; `edge_lost` when the server that
    /// held its earlier chunks was lost).
    Failed,
    /// 413: larger than allowed, in bytes.
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// 413: over the account's storage quota (code 1101).
    QuotaExceeded,
    /// 422: the full-file form has no file, or an empty one.
    FileMissing,
    /// The application refused the upload (its hook): the status and message it chose.
    Refused(crate::hook::Refusal),
    /// 503: storage or the origin is unavailable (the cause is logged).
    Unavailable,
}

impl MovingimageError {
    /// The HTTP status and JSON body.
    #[must_use]
    pub fn render(&self) -> (u16, Value) {
        let message = |status: u16, text: String| (status, json!({ "message": text }));
        match self {
            Self::ChunkHeaders => message(
                400,
                format!(
                    "Send Mi24-Upload-Total-Chunks (1 to {MAX_CHUNKS}) and Mi24-Upload-Current-Chunk (1 to the total) with each chunk."
                ),
            ),
            Self::BodyEnded => message(
                400,
                "The chunk's body ended early; send the chunk again.".into(),
            ),
            Self::NotChunkNorForm => message(
                400,
                "Send chunks with the Mi24-Upload-* headers, or the whole file as multipart/form-data field `file`.".into(),
            ),
            Self::Malformed(why) => message(400, format!("Malformed form: {why}")),
            Self::Conflict(why) => message(409, why.clone()),
            Self::HeldElsewhere => message(
                409,
                "This upload's earlier chunks are on another upload server; send every chunk to the upload URL you were given.".into(),
            ),
            Self::Failed => message(
                410,
                "This upload has failed (its status says why; edge_lost: the server holding its earlier chunks was lost before storing them). Upload the file again.".into(),
            ),
            Self::FileMissing => message(
                422,
                "The form needs a non-empty `file` field.".into(),
            ),
            Self::NotFound => UploadsApiError::NotFound.render(),
            Self::TooLarge { limit } => UploadsApiError::TooLarge { limit: *limit }.render(),
            Self::QuotaExceeded => UploadsApiError::QuotaExceeded.render(),
            Self::Refused(r) => UploadsApiError::Refused(r.clone()).render(),
            Self::Unavailable => UploadsApiError::Unavailable.render(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_stable() {
        let table = [
            (MovingimageError::ChunkHeaders, 400),
            (MovingimageError::BodyEnded, 400),
            (MovingimageError::NotChunkNorForm, 400),
            (MovingimageError::Malformed("x".into()), 400),
            (MovingimageError::NotFound, 404),
            (MovingimageError::Conflict("x".into()), 409),
            (MovingimageError::HeldElsewhere, 409),
            (MovingimageError::Failed, 410),
            (MovingimageError::TooLarge { limit: 1 }, 413),
            (MovingimageError::QuotaExceeded, 413),
            (MovingimageError::FileMissing, 422),
            (MovingimageError::Unavailable, 503),
        ];
        for (e, status) in table {
            let (s, body) = e.render();
            assert_eq!(s, status, "{e:?}");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        assert_eq!(MovingimageError::QuotaExceeded.render().1["code"], 1101);
    }
}
