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

    #[tokio::test]
    async fn current_only_inside_its_scope() {
        assert_eq!(current(), None);
        let inside = scope("r1".into(), async { current() }).await;
        assert_eq!(inside.as_deref(), Some("r1"));
    }
}
