//! The notifier: sends the outbox's notifications to the customers' applications. Several
//! senders claim due notifications one at a time, so a slow or failing receiver holds up only
//! its own; each attempt is signed afresh (seed signature and Standard Webhooks headers, same
//! `webhook-id`), has a time limit, follows no redirect and, unless the operator allows it,
//! refuses private, loopback and link-local addresses, checked on every address a name
//! resolves to at connection time. Failures are retried with capped exponential back-off and
//! jitter until the retry window closes.

use super::State;
use crate::config::NotifySettings;
use crate::db::now_ms;
use crate::db::outbox::{self, Due, Outcome};
use crate::notify;
use std::time::Duration;

/// How long an idle sender waits before looking again without being woken.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// The HTTP client notifications and hooks are sent with: the guard of [`crate::outbound`]
/// (unless the operator allows private addresses), no redirects, the time limit.
///
/// # Errors
/// The TLS roots cannot be loaded.
pub(super) fn client(settings: &NotifySettings) -> reqwest::Result<reqwest::Client> {
    crate::outbound::client(settings.allow_private_addresses, 0, "notifications")
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .build()
}

/// A message to an application, and how it is signed.
pub(super) struct Signed<'a> {
    /// The body format.
    pub format: notify::Format,
    /// Its `webhook-id`.
    pub id: &'a str,
    /// The message (JSON text).
    pub message: &'a str,
    /// The account secret that signs it.
    pub secret: &'a str,
}

/// Posts `signed` to the application at `url`, signed now, through `client`, after the guard's
/// check of the URL (`allow_private`); the response, whatever its status.
///
/// # Errors
/// The URL is refused or the request fails (said without the URL, which may carry a token).
pub(super) async fn post_signed(
    client: &reqwest::Client,
    url: &str,
    allow_private: bool,
    signed: &Signed<'_>,
) -> Result<reqwest::Response, String> {
    crate::outbound::check_url(url, allow_private).map_err(|e| e.to_string())?;
    let request = notify::request(
        signed.format,
        signed.id,
        signed.message,
        signed.secret.as_bytes(),
        now_ms() / 1000,
    );
    let mut builder = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, request.content_type);
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    // The resolver's refusal is the useful part of the chain.
    builder
        .body(request.body)
        .send()
        .await
        .map_err(|e| crate::error::chain(&e.without_url()))
}

/// Starts the senders; they run until the process ends.
pub fn spawn(state: &State) {
    for _ in 0..state.settings.notify.senders {
        tokio::spawn(run(state.clone(), state.web.clone()));
    }
}

async fn run(state: State, client: reqwest::Client) {
    let settings = &state.settings.notify;
    // A claim outlasts the longest request, so two senders never send the same attempt.
    let hold_ms = i64::try_from((settings.timeout * 2 + Duration::from_secs(30)).as_millis())
        .unwrap_or(i64::MAX / 4);
    loop {
        match outbox::claim(&state.db, now_ms(), hold_ms).await {
            Ok(Some(due)) => {
                let outcome = attempt(&client, settings, &due).await;
                log(&due, &outcome);
                if let Err(e) = outbox::record(&state.db, &due.id, &outcome, now_ms()).await {
                    tracing::error!(id = %due.id, error = %e, "Could not record a notification attempt; it will be sent again.");
                }
            }
            Ok(None) => {
                let _ = tokio::time::timeout(IDLE_POLL, state.notify_wake.notified()).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "Could not claim a notification.");
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
    }
}

/// Logs and counts an attempt's outcome.
fn log(due: &Due, outcome: &Outcome) {
    let attempt = due.attempts + 1;
    crate::metrics::notification(match outcome {
        Outcome::Delivered => "delivered",
        Outcome::RetryAt(..) => "retry",
        Outcome::GiveUp(_) => "gave_up",
    });
    match outcome {
        Outcome::Delivered => {
            tracing::info!(id = %due.id, upload_id = %due.upload_id, attempt, "Notification delivered.");
        }
        Outcome::RetryAt(at, error) => {
            tracing::warn!(id = %due.id, upload_id = %due.upload_id, attempt, error = %error,
                retry_in_ms = at - now_ms(), "Notification failed; will retry.");
        }
        Outcome::GiveUp(error) => {
            tracing::error!(id = %due.id, upload_id = %due.upload_id, attempt, error = %error,
                "Notification failed and its retry window is over; given up.");
        }
    }
}

/// Sends one attempt and decides what happens next.
async fn attempt(client: &reqwest::Client, settings: &NotifySettings, due: &Due) -> Outcome {
    let failure = match send(client, settings, due).await {
        Ok(()) => return Outcome::Delivered,
        Err(e) => e,
    };
    let now = now_ms();
    let attempt = u32::try_from(due.attempts + 1).unwrap_or(u32::MAX);
    let delay = notify::retry_delay(
        attempt,
        settings.first_retry,
        settings.max_retry,
        rand::random_range(0.8..1.2),
    );
    let next = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4);
    let window = i64::try_from(settings.retry_window.as_millis()).unwrap_or(i64::MAX / 4);
    if next > due.created_at.saturating_add(window) {
        Outcome::GiveUp(failure)
    } else {
        Outcome::RetryAt(next, failure)
    }
}

async fn send(
    client: &reqwest::Client,
    settings: &NotifySettings,
    due: &Due,
) -> Result<(), String> {
    let signed = Signed {
        format: due.format,
        id: &due.id,
        message: &due.message,
        secret: &due.secret,
    };
    let response = post_signed(client, &due.url, settings.allow_private_addresses, &signed).await?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else if status.is_redirection() {
        Err(format!(
            "the receiver answered {status} (redirects are not followed)"
        ))
    } else {
        Err(format!("the receiver answered {status}"))
    }
}
