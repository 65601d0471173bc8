//! The Ankoder HTML form's errors: a stable code and a message, sent to `failed_redirect` as
//! `error_code` and `error`, or as `{"result": "failed", "error": CODE, "message": …}`.

use serde_json::{json, Value};

/// An error of the HTML form upload (`POST /files/upload`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnkoderError {
    /// 400: not a `multipart/form-data` request.
    NotMultipart,
    /// 400: the form is cut off or malformed (what is wrong with it).
    Malformed(String),
    /// 400: a redirect field that is not an absolute http(s) URL (the field's name).
    BadRedirect(&'static str),
    /// 401: no `access_key` before the file.
    AccessKeyMissing,
    /// 401: an unknown `access_key`.
    AccessKeyInvalid,
    /// 413: larger than the form limit, in bytes.
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// 413: over the account's storage quota (movingimage's code 1101, as everywhere).
    QuotaExceeded,
    /// 422: the form has no file.
    FileMissing,
    /// 422: more than one file.
    FileTwice,
    /// 422: the file is empty.
    FileEmpty,
    /// The application refused the upload (its hook): the status and message it chose.
    Refused(crate::hook::Refusal),
    /// 503: storage or the origin is unavailable (the cause is logged).
    Unavailable,
}

impl AnkoderError {
    /// HTTP status, code and message.
    #[must_use]
    pub fn parts(&self) -> (u16, &'static str, String) {
        match self {
            Self::NotMultipart => (
                400,
                "malformed",
                "Expected a multipart/form-data form.".into(),
            ),
            Self::Malformed(why) => (400, "malformed", format!("Malformed form: {why}")),
            Self::BadRedirect(name) => (
                400,
                "bad_redirect",
                format!("{name} must be an absolute http or https URL."),
            ),
            Self::AccessKeyMissing => (
                401,
                "access_key_missing",
                "The form needs an access_key field before the file.".into(),
            ),
            Self::AccessKeyInvalid => (
                401,
                "access_key_invalid",
                "The access_key is not valid.".into(),
            ),
            Self::TooLarge { limit } => (
                413,
                "too_large",
                format!("The file is larger than {limit} bytes."),
            ),
            Self::QuotaExceeded => (413, "1101", super::QUOTA_MESSAGE.into()),
            Self::FileMissing => (422, "file_missing", "The form has no file.".into()),
            Self::FileTwice => (422, "file_twice", "Send one file per form.".into()),
            Self::FileEmpty => (422, "file_empty", "The file is empty.".into()),
            Self::Refused(r) => (r.status, "refused_by_hook", r.message.clone()),
            Self::Unavailable => (503, "unavailable", super::RETRY_MESSAGE.into()),
        }
    }

    /// The HTTP status and JSON body, for a form without `failed_redirect`.
    #[must_use]
    pub fn render(&self) -> (u16, Value) {
        let (status, code, message) = self.parts();
        (
            status,
            json!({ "result": "failed", "error": code, "message": message }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let table = [
            (AnkoderError::NotMultipart, 400, "malformed"),
            (AnkoderError::Malformed("x".into()), 400, "malformed"),
            (
                AnkoderError::BadRedirect("success_redirect"),
                400,
                "bad_redirect",
            ),
            (AnkoderError::AccessKeyMissing, 401, "access_key_missing"),
            (AnkoderError::AccessKeyInvalid, 401, "access_key_invalid"),
            (AnkoderError::TooLarge { limit: 1 }, 413, "too_large"),
            (AnkoderError::QuotaExceeded, 413, "1101"),
            (AnkoderError::FileMissing, 422, "file_missing"),
            (AnkoderError::FileTwice, 422, "file_twice"),
            (AnkoderError::FileEmpty, 422, "file_empty"),
            (AnkoderError::Unavailable, 503, "unavailable"),
        ];
        for (e, status, code) in table {
            let (s, body) = e.render();
            assert_eq!((s, body["error"].as_str()), (status, Some(code)), "{e:?}");
            assert_eq!(body["result"], "failed");
            let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
            assert!(readme.contains(&format!("`{code}`")), "README lacks {code}");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
}
