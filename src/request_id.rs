//! The request id that ties a client's complaint to the log lines of its request, across
//! roles: taken from the client's `X-Request-Id` when it is sane, else made; carried in a
//! task-local while the edge serves the request, so every log line (through a span), the
//! internal calls to the origin and the reply carry it. No sockets here.

use std::future::Future;

/// The header that carries it, in both directions and to the origin.
pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static CURRENT: String;
}

/// The client's id if it is 1 to 128 characters of letters, digits, `-`, `_`, `.` or `:`;
/// otherwise a new one.
#[must_use]
pub fn from_client(value: Option<&str>) -> String {
    match value {
        Some(v)
            if !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            v.to_owned()
        }
        _ => uuid::Uuid::new_v4().simple().to_string(),
    }
}

/// The id of a request with these headers ([`from_client`] of its `X-Request-Id`).
#[must_use]
pub fn from_headers(headers: &http::HeaderMap) -> String {
    from_client(headers.get(HEADER).and_then(|v| v.to_str().ok()))
}

/// Whether an answer is a JSON error, whose body quotes the request id.
#[must_use]
pub fn quotable(status: u16, content_type: &str) -> bool {
    status >= 400
        && (content_type.starts_with("application/json")
            || content_type.starts_with("application/problem+json"))
}

/// An error answer's JSON body with `"request_id": id` added, so a client can quote it; `None`
/// when the answer is not an error or its body not a JSON object (it is then sent as it is).
#[must_use]
pub fn quoted(status: u16, content_type: &str, body: &[u8], id: &str) -> Option<String> {
    if !quotable(status, content_type) {
        return None;
    }
    match serde_json::from_slice(body).ok()? {
        serde_json::Value::Object(mut object) => {
            object.insert("request_id".into(), id.into());
            Some(serde_json::Value::Object(object).to_string())
        }
        _ => None,
    }
}

/// Runs `work` with `id` as the current request id.
pub async fn scope<F: Future>(id: String, work: F) -> F::Output {
    CURRENT.scope(id, work).await
}

/// The current request's id, inside [`scope`].
#[must_use]
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_client_id_is_kept_and_anything_else_replaced() {
        assert_eq!(from_client(Some("req-42.a:b_c")), "req-42.a:b_c");
        for bad in [
            None,
            Some(""),
            Some("a b"),
            Some("x\r\ny"),
            Some(&"a".repeat(129)[..]),
        ] {
            let made = from_client(bad);
            assert_eq!(made.len(), 32, "{bad:?}");
        }
    }

    #[test]
    fn only_json_error_objects_quote_the_id() {
        let body = br#"{"message":"No."}"#;
        assert_eq!(
            quoted(401, "application/json", body, "r1").as_deref(),
            Some(r#"{"message":"No.","request_id":"r1"}"#)
        );
        assert!(quoted(409, "application/problem+json", body, "r1").is_some());
        assert_eq!(quoted(200, "application/json", body, "r1"), None);
        assert_eq!(quoted(400, "text/plain", body, "r1"), None);
        assert_eq!(quoted(400, "application/json", b"[1]", "r1"), None);
    }

    #[tokio::test]
    async fn current_only_inside_its_scope() {
        assert_eq!(current(), None);
        let inside = scope("r1".into(), async { current() }).await;
        assert_eq!(inside.as_deref(), Some("r1"));
    }
}
