//! Notifications to the customer's application, as pure values: the seed's message (a new
//! video that succeeded or failed, a status change), its signature (base64 HMAC-SHA1 of the
//! message with the account secret), the body in either format, the Standard Webhooks headers
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`) and the
//! retry schedule.
//!
//! Must not depend on the database, the network or the clock: times come in as arguments.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::time::Duration;

use crate::upload::{Failure, Status};

/// How an account's notifications are sent. Both formats carry the Standard Webhooks headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// The seed's `application/x-www-form-urlencoded` body: `message=<JSON>&signature=<base64>`.
    #[default]
    Form,
    /// `application/json`: the message object itself, as Standard Webhooks libraries expect.
    Json,
}

impl Format {
    /// Its name in the database and on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Format::Form => "form",
            Format::Json => "json",
        }
    }

    /// The format of this name.
    ///
    /// # Errors
    /// Neither `form` nor `json`.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "form" => Ok(Format::Form),
            "json" => Ok(Format::Json),
            other => Err(format!(
                "notification format {other:?}: use \"form\" (the seed's message=…&signature=…) or \"json\""
            )),
        }
    }
}

/// What a notification says about its upload.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The upload's id.
    pub video_id: &'a str,
    /// The status it reached.
    pub status: Status,
    /// Why it failed.
    pub failure: Option<Failure>,
    /// The upload form's `custom_*` fields, echoed back (an empty object when none).
    pub custom_fields: Value,
    /// Media duration in milliseconds.
    pub duration_ms: Option<i64>,
    /// Stored bytes.
    pub size: Option<i64>,
    /// The client's file name.
    pub filename: &'a str,
    /// What processing produced (as on the status record).
    pub outputs: Value,
    /// When the status changed (ms since the epoch).
    pub at_ms: i64,
}

/// The seed's `NewVideo` message for an upload that completed or failed; `None` for any other
/// status.
#[must_use]
pub fn new_video(f: &Facts<'_>) -> Option<Value> {
    let mut message = match f.status {
        Status::Completed => json!({
            "result": "success",
            "error": null,
            "duration": f.duration_ms.map(|d| d.to_string()),
            "size": f.size.map(|s| s.to_string()),
            "filename": f.filename,
            "outputs": f.outputs,
        }),
        Status::Failed => json!({
            "result": "failed",
            "error": f.failure.map_or("processing failed", Failure::short),
            "error_code": f.failure.map(Failure::code),
            "video_name": f.filename,
        }),
        _ => return None,
    };
    message["video_id"] = json!(f.video_id);
    message["type"] = json!("NewVideo");
    message["custom_fields"] = f.custom_fields.clone();
    Some(message)
}

/// A `StatusChanged` message: the upload reached `processing`, `completed` or `failed` (sent to
/// accounts that ask for status changes); `None` for any other status.
#[must_use]
pub fn status_changed(f: &Facts<'_>) -> Option<Value> {
    if !matches!(
        f.status,
        Status::Processing | Status::Completed | Status::Failed
    ) {
        return None;
    }
    Some(json!({
        "type": "StatusChanged",
        "video_id": f.video_id,
        "status": f.status.code(),
        "status_text": f.status.text(),
        "error": f.failure.map(Failure::message),
        "error_code": f.failure.map(Failure::code),
        "updated_at": f.at_ms,
        "custom_fields": f.custom_fields,
    }))
}

/// An `UploadProgress` message: `bytes_received` of an upload still receiving, with its
/// declared `total` when known.
#[must_use]
pub fn upload_progress(
    video_id: &str,
    bytes_received: u64,
    total: Option<u64>,
    at_ms: i64,
) -> Value {
    json!({
        "type": "UploadProgress",
        "video_id": video_id,
        "status": Status::Receiving.code(),
        "bytes_received": bytes_received,
        "total": total,
        "updated_at": at_ms,
    })
}

fn hmac_base64<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac =
        <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length");
    for p in parts {
        mac.update(p);
    }
    B64.encode(mac.finalize().into_bytes())
}

/// The seed's `signature`: base64 of HMAC-SHA1 over the message text with the account secret.
#[must_use]
pub fn seed_signature(secret: &[u8], message: &str) -> String {
    hmac_base64::<Hmac<sha1::Sha1>>(secret, &[message.as_bytes()])
}

/// The Standard Webhooks `webhook-signature` value: `v1,` and base64 of HMAC-SHA256 over
/// `<id>.<timestamp>.<body>`. The key is the account secret's bytes, which a receiver's library
/// takes as `whsec_` followed by their base64.
#[must_use]
pub fn webhook_signature(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac_base64::<Hmac<sha2::Sha256>>(
        secret,
        &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
    );
    format!("v1,{mac}")
}

/// One request, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its body.
    pub body: Vec<u8>,
    /// `webhook-id`, `webhook-timestamp` and `webhook-signature`.
    pub headers: [(&'static str, String); 3],
}

/// The request for `message` (JSON text) in `format`, signed both ways at `timestamp` (seconds
/// since the epoch). A retry is signed again with its own time and the same `id`.
#[must_use]
pub fn request(format: Format, id: &str, message: &str, secret: &[u8], timestamp: i64) -> Request {
    let (content_type, body) = match format {
        Format::Form => (
            "application/x-www-form-urlencoded",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("message", message)
                .append_pair("signature", &seed_signature(secret, message))
                .finish()
                .into_bytes(),
        ),
        Format::Json => ("application/json", message.as_bytes().to_vec()),
    };
    let signature = webhook_signature(secret, id, timestamp, &body);
    Request {
        content_type,
        body,
        headers: [
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ],
    }
}

/// The wait before retry number `attempt` (1 after the first failure): `first`, doubled each
/// time, capped at `cap`, then scaled by `jitter` (from 0.8 to 1.2; pass 1.0 for none).
#[must_use]
pub fn retry_delay(attempt: u32, first: Duration, cap: Duration, jitter: f64) -> Duration {
    let doubled = first.saturating_mul(1 << attempt.saturating_sub(1).min(20));
    doubled.min(cap).mul_f64(jitter.clamp(0.8, 1.2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn facts(status: Status) -> Facts<'static> {
        Facts {
            video_id: "9c1fa5c4-a8f1-4b2e-9d6e-1c8a0b9e2d7f",
            status,
            failure: (status == Status::Failed).then_some(Failure::NotAVideo),
            custom_fields: json!({"custom_user": "1", "custom_profile": "5"}),
            duration_ms: Some(11_540),
            size: Some(876_986),
            filename: "lake.avi",
            outputs: json!([]),
            at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn success_has_the_seeds_fields() {
        let m = new_video(&facts(Status::Completed)).unwrap();
        assert_eq!(m["result"], "success");
        assert_eq!(m["error"], Value::Null);
        assert_eq!(m["type"], "NewVideo");
        assert_eq!(m["duration"], "11540");
        assert_eq!(m["size"], "876986");
        assert_eq!(m["filename"], "lake.avi");
        assert_eq!(m["custom_fields"]["custom_profile"], "5");
    }

    #[test]
    fn failure_has_the_seeds_fields() {
        let m = new_video(&facts(Status::Failed)).unwrap();
        assert_eq!(m["result"], "failed");
        assert_eq!(m["error"], "invalid video");
        assert_eq!(m["error_code"], "not_a_video");
        assert_eq!(m["video_name"], "lake.avi");
        assert_eq!(m["custom_fields"]["custom_user"], "1");
        assert!(new_video(&facts(Status::Processing)).is_none());
    }

    #[test]
    fn status_changes_only_for_the_three_statuses() {
        assert_eq!(
            status_changed(&facts(Status::Processing)).unwrap()["status"],
            3
        );
        assert!(status_changed(&facts(Status::Uploading)).is_none());
        assert!(status_changed(&facts(Status::Pending)).is_none());
    }

    #[test]
    fn seed_signature_is_rfc2104_hmac_sha1() {
        // RFC 2202 test case 2.
        assert_eq!(
            seed_signature(b"Jefe", "what do ya want for nothing?"),
            B64.encode(hex::decode("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79").unwrap())
        );
    }

    #[test]
    fn webhook_signature_matches_the_specs_example() {
        // The example of the Standard Webhooks specification.
        let secret = B64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            webhook_signature(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn form_body_carries_message_and_signature() {
        let r = request(Format::Form, "msg_1", r#"{"a":1}"#, b"secret", 1);
        let pairs: Vec<(String, String)> = form_urlencoded::parse(&r.body).into_owned().collect();
        assert_eq!(pairs[0], ("message".into(), r#"{"a":1}"#.into()));
        assert_eq!(pairs[1].1, seed_signature(b"secret", r#"{"a":1}"#));
        assert_eq!(r.content_type, "application/x-www-form-urlencoded");
        let json = request(Format::Json, "msg_1", r#"{"a":1}"#, b"secret", 1);
        assert_eq!(json.body, br#"{"a":1}"#);
        assert_eq!(
            json.headers[2].1,
            webhook_signature(b"secret", "msg_1", 1, br#"{"a":1}"#)
        );
    }

    #[test]
    fn formats_parse() {
        assert_eq!(Format::parse("json"), Ok(Format::Json));
        assert_eq!(Format::parse(Format::Form.name()), Ok(Format::Form));
        assert!(Format::parse("xml").unwrap_err().contains("xml"));
    }

    #[test]
    fn retries_double_from_the_first_delay_to_the_cap() {
        let (first, cap) = (Duration::from_secs(5), Duration::from_secs(3600));
        let d: Vec<u64> = (1..=12)
            .map(|a| retry_delay(a, first, cap, 1.0).as_secs())
            .collect();
        assert_eq!(
            d,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
    }

    proptest! {
        #[test]
        fn retry_delays_stay_within_jitter_of_the_capped_doubling(attempt in 1u32..200, jitter in 0.0f64..2.0) {
            let (first, cap) = (Duration::from_secs(5), Duration::from_secs(3600));
            let d = retry_delay(attempt, first, cap, jitter);
            prop_assert!(d >= first.mul_f64(0.8));
            prop_assert!(d <= cap.mul_f64(1.2));
        }
    }
}
