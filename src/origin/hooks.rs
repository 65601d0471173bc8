//! Sends an account's blocking hooks ([`crate::hook`]) and waits for the answer: signed as its
//! notifications are (Standard Webhooks headers, JSON body), through the notifier's HTTP client
//! (no redirects; private, loopback and link-local addresses refused unless the operator allows
//! them), within the hook's time limit. A hook that gives no usable answer is logged and its
//! failure policy decides.
//!
//! Must not depend on the edge.

use super::State;
use crate::db::{self, now_ms, DbError};
use crate::hook::{self, Kind, OnFailure, Refusal, Verdict};
use serde_json::Value;

/// Asks the account's `kind` hook about an upload (`data`, the message's `data`). `None` when
/// the account has no such hook, or it failed and its policy lets the upload go on.
///
/// # Errors
/// The account's hook settings cannot be read.
pub(super) async fn ask(
    state: &State,
    account_id: &str,
    kind: Kind,
    data: Value,
) -> Result<Option<Verdict>, DbError> {
    let Some((hooks, secret)) = db::account::hooks(&state.db, account_id).await? else {
        return Ok(None);
    };
    let Some(policy) = hooks.policy(kind) else {
        return Ok(None);
    };
    let message = hook::message(kind, data, now_ms()).to_string();
    let sent = tokio::time::timeout(
        policy.timeout(),
        send(state, &hooks.url, &secret, kind, &message),
    )
    .await
    .unwrap_or_else(|_| Err(format!("no answer within {} ms", policy.timeout_ms)));
    match sent {
        Ok(verdict) => {
            crate::metrics::hook_answered(kind.name(), verdict_name(&verdict));
            Ok(Some(verdict))
        }
        Err(why) => {
            crate::metrics::hook_answered(kind.name(), "failed");
            tracing::warn!(account_id = %account_id, hook = kind.name(), error = %why,
                on_failure = policy.on_failure.name(), "The application's hook gave no usable answer.");
            Ok(match policy.on_failure {
                OnFailure::Refuse => Some(Verdict::Refuse(Refusal::unanswered(kind))),
                OnFailure::Continue => None,
            })
        }
    }
}

fn verdict_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Refuse(_) => "refused",
        Verdict::Accept(_) | Verdict::Finish(_) => "accepted",
    }
}

/// One signed request and its answer, read as a verdict.
async fn send(
    state: &State,
    url: &str,
    secret: &str,
    kind: Kind,
    message: &str,
) -> Result<Verdict, String> {
    let id = format!("hook_{}", uuid::Uuid::new_v4().simple());
    let signed = super::notifier::Signed {
        format: crate::notify::Format::Json,
        id: &id,
        message,
        secret,
    };
    let allow_private = state.settings.notify.allow_private_addresses;
    let response = super::notifier::post_signed(&state.web, url, allow_private, &signed).await?;
    let status = response.status().as_u16();
    // An answer larger than any usable one is not read to its end.
    let mut body = Vec::new();
    let mut response = response;
    while let Some(piece) = response
        .chunk()
        .await
        .map_err(|e| crate::error::chain(&e.without_url()))?
    {
        body.extend_from_slice(&piece);
        if body.len() > 4 * hook::MAX_ANSWER {
            return Err(format!(
                "the answer is larger than {} bytes",
                4 * hook::MAX_ANSWER
            ));
        }
    }
    hook::read_answer(kind, status, &body)
}
