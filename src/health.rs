//! Readiness (`GET /readyz`) shared by the roles: each check (a database ping, a storage
//! probe, the origin's health) runs with a time limit, so a probe never hangs, and the answer
//! names the checks that failed, `"ok"` or `"unavailable"` (the cause goes to the log, never
//! to the prober). `/healthz` stays liveness. No sockets here: the checks are given as futures.

use serde_json::{json, Map, Value};
use std::future::Future;
use std::time::Duration;

/// How long one check may take.
pub const CHECK_TIME: Duration = Duration::from_secs(3);

/// One named check's outcome.
pub type Outcome = (&'static str, bool);

/// Runs check `what` with the time limit; a failure is logged with its cause chain.
pub async fn check<E: std::error::Error>(
    role: &str,
    what: &'static str,
    probe: impl Future<Output = Result<(), E>>,
) -> Outcome {
    let why = match tokio::time::timeout(CHECK_TIME, probe).await {
        Ok(Ok(())) => return (what, true),
        Ok(Err(e)) => crate::error::chain(&e),
        Err(_) => format!("no answer within {CHECK_TIME:?}"),
    };
    tracing::warn!(role, check = what, error = %why, "Not ready.");
    (what, false)
}

/// The answer of `role` for its checks: `200 {"status": "ready", …}` when all passed, else
/// `503 {"status": "not ready", "checks": {"storage": "unavailable", …}}`.
#[must_use]
pub fn answer(role: &str, outcomes: &[Outcome]) -> (u16, Value) {
    let ready = outcomes.iter().all(|(_, ok)| *ok);
    let checks: Map<String, Value> = outcomes
        .iter()
        .map(|(what, ok)| {
            (
                (*what).to_owned(),
                json!(if *ok { "ok" } else { "unavailable" }),
            )
        })
        .collect();
    let status = if ready { "ready" } else { "not ready" };
    (
        if ready { 200 } else { 503 },
        json!({ "status": status, "role": role, "checks": checks }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failed_check_makes_it_not_ready() {
        let (status, body) = answer("edge", &[("origin", true), ("storage", true)]);
        assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
        let (status, body) = answer("edge", &[("origin", true), ("storage", false)]);
        assert_eq!(status, 503);
        assert_eq!(body["checks"]["storage"], "unavailable");
        assert_eq!(body["checks"]["origin"], "ok");
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_hangs_fails_after_its_time_limit() {
        let hang = std::future::pending::<Result<(), std::io::Error>>();
        assert_eq!(check("edge", "storage", hang).await, ("storage", false));
        let fine = async { Ok::<(), std::io::Error>(()) };
        assert_eq!(check("edge", "storage", fine).await, ("storage", true));
    }
}
