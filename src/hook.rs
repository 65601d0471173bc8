//! Blocking hooks, as pure values: an account's hook settings, the signed message the origin
//! sends (`pre-create` before an upload is accepted, `pre-finish` once its last byte is in), and
//! what the application's answer means (go on, possibly with changes or data for the client, or
//! refuse with a status and message the client sees). The answer to `pre-finish` travels to the
//! client as JSON in one header, [`RESPONSE_HEADER`], made ASCII by [`header_value`].
//!
//! Must not depend on the database, the network or the clock.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The response header carrying the application's `pre-finish` answer (compact JSON, ASCII).
pub const RESPONSE_HEADER: &str = "uplink-hook-response";

/// The largest `pre-finish` answer passed on to the client, in bytes of compact JSON: it
/// travels in a response header.
pub const MAX_ANSWER: usize = 4096;

/// The longest refusal message shown to a client, in characters.
const MAX_MESSAGE: usize = 1000;

/// The longest folder a `pre-create` answer may set (the Uploads API's limit).
const MAX_FOLDER: usize = 1024;

/// A hook's time limit when the operator gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The range of time limits an operator may set: the edge waits 30 s for any answer of the
/// origin, which must have heard the application by then.
pub const TIMEOUTS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(20);

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Before an upload is accepted.
    PreCreate,
    /// When the last byte is in, before the upload counts as stored.
    PreFinish,
}

impl Kind {
    /// Every hook.
    pub const ALL: [Kind; 2] = [Kind::PreCreate, Kind::PreFinish];

    /// The hook of this name.
    ///
    /// # Errors
    /// Neither `pre-create` nor `pre-finish`.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| format!("{name:?} is not a hook: use pre-create or pre-finish"))
    }

    /// Its name in messages, settings and the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Kind::PreCreate => "pre-create",
            Kind::PreFinish => "pre-finish",
        }
    }
}

/// What happens when the application gives no usable answer in time (unreachable, a status
/// other than 2xx, a body that is not an answer, or over the time limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// The upload is refused.
    Refuse,
    /// The upload goes on as if the application had answered with no changes.
    Continue,
}

impl OnFailure {
    /// The policy of this name.
    ///
    /// # Errors
    /// Neither `refuse` nor `continue`.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "refuse" => Ok(Self::Refuse),
            "continue" => Ok(Self::Continue),
            other => Err(format!(
                "hook failure policy {other:?}: use \"refuse\" or \"continue\""
            )),
        }
    }

    /// Its name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Refuse => "refuse",
            Self::Continue => "continue",
        }
    }
}

/// One hook's time limit and failure policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// How long the application has to answer, in milliseconds.
    pub timeout_ms: u64,
    /// What a failure to answer means.
    pub on_failure: OnFailure,
}

impl Policy {
    /// The default for `kind`: 5 s; a `pre-create` that fails refuses the upload (nothing has
    /// been sent yet, the client can try again), a `pre-finish` that fails lets it go on
    /// (refusing would throw away every byte the client sent).
    #[must_use]
    pub fn default_for(kind: Kind) -> Self {
        Self {
            timeout_ms: u64::try_from(DEFAULT_TIMEOUT.as_millis()).unwrap_or(5000),
            on_failure: match kind {
                Kind::PreCreate => OnFailure::Refuse,
                Kind::PreFinish => OnFailure::Continue,
            },
        }
    }

    /// Its time limit.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// An account's hooks: where they go, and which are sent with what policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hooks {
    /// The application's endpoint (http or https).
    pub url: String,
    /// `pre-create`, if sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_create: Option<Policy>,
    /// `pre-finish`, if sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_finish: Option<Policy>,
}

impl Hooks {
    /// The policy of `kind`, if that hook is sent.
    #[must_use]
    pub fn policy(&self, kind: Kind) -> Option<Policy> {
        match kind {
            Kind::PreCreate => self.pre_create,
            Kind::PreFinish => self.pre_finish,
        }
    }

    /// The policy of `kind`, to change (`None`: that hook is not sent).
    pub fn policy_mut(&mut self, kind: Kind) -> &mut Option<Policy> {
        match kind {
            Kind::PreCreate => &mut self.pre_create,
            Kind::PreFinish => &mut self.pre_finish,
        }
    }
}

/// The application refused an upload: the status (4xx) and message its client sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The HTTP status the client gets.
    pub status: u16,
    /// What it is told.
    pub message: String,
}

impl Refusal {
    /// The refusal when `kind` gave no usable answer and its policy refuses: 503 before an
    /// upload starts (the client may try again later), 502 at its end (the upload is over).
    #[must_use]
    pub fn unanswered(kind: Kind) -> Self {
        match kind {
            Kind::PreCreate => Self {
                status: 503,
                message: "The application this upload is for did not answer whether to accept it; try again later.".into(),
            },
            Kind::PreFinish => Self {
                status: 502,
                message: "The application this upload is for did not answer whether to keep it; the upload was not kept.".into(),
            },
        }
    }
}

/// What a `pre-create` answer changes in the upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The folder the upload goes in (the Uploads API's `folder`).
    pub folder: Option<String>,
    /// The application's own metadata for the upload (a JSON object of strings, as text).
    pub metadata: Option<String>,
}

/// What the application answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on; for `pre-create` with these changes.
    Accept(Changes),
    /// Go on; for `pre-finish` with this answer for the client (`None` for an empty answer).
    Finish(Option<Value>),
    /// Refuse the upload.
    Refuse(Refusal),
}

/// The message sent for `kind` about an upload (`data` as [`pre_create_data`] or
/// [`pre_finish_data`] build it), as the body's JSON.
#[must_use]
pub fn message(kind: Kind, data: Value, at_ms: i64) -> Value {
    json!({ "type": kind.name(), "timestamp": crate::clock::rfc3339(at_ms), "data": data })
}

/// What `pre-create` says of an upload about to be accepted.
#[derive(Debug, Clone, Copy)]
pub struct Creating<'a> {
    /// The account.
    pub account_id: &'a str,
    /// The API flavour receiving it.
    pub flavour: &'a str,
    /// Its length, if declared before its bytes.
    pub size: Option<u64>,
    /// The client's file name.
    pub filename: &'a str,
    /// The client's metadata (tus `Upload-Metadata`, decoded), if it sent any.
    pub metadata: Option<&'a Map<String, Value>>,
    /// The client's address, as the edge saw it.
    pub client: Option<&'a str>,
}

/// `pre-create`'s `data`.
#[must_use]
pub fn pre_create_data(c: &Creating<'_>) -> Value {
    json!({
        "account_id": c.account_id,
        "flavour": c.flavour,
        "size": c.size,
        "filename": c.filename,
        "metadata": c.metadata.cloned().unwrap_or_default(),
        "client_address": c.client,
    })
}

/// What `pre-finish` says of an upload whose last byte is in.
#[derive(Debug, Clone, Copy)]
pub struct Finishing<'a> {
    /// The upload's id.
    pub upload_id: &'a str,
    /// The account.
    pub account_id: &'a str,
    /// The API flavour that received it.
    pub flavour: &'a str,
    /// Bytes stored.
    pub size: u64,
    /// The client's file name.
    pub filename: &'a str,
    /// Its folder, if any.
    pub folder: Option<&'a str>,
    /// The application's metadata set at `pre-create` (JSON text), if any.
    pub metadata: Option<&'a str>,
}

/// `pre-finish`'s `data`.
#[must_use]
pub fn pre_finish_data(f: &Finishing<'_>) -> Value {
    let metadata = f
        .metadata
        .and_then(|m| serde_json::from_str::<Value>(m).ok())
        .unwrap_or_else(|| json!({}));
    json!({
        "upload_id": f.upload_id,
        "account_id": f.account_id,
        "flavour": f.flavour,
        "size": f.size,
        "filename": f.filename,
        "folder": f.folder,
        "metadata": metadata,
    })
}

/// Reads the application's answer to `kind`: HTTP status `status`, body `body`.
///
/// A 2xx with an empty body goes on unchanged. A JSON object with `refuse` refuses
/// (`{"refuse": {"status": 403, "message": "…"}}`; status 400–499, 403 when absent). Otherwise,
/// for `pre-create`, `folder` (a string) and `metadata` (an object of strings) are taken; for
/// `pre-finish` the whole answer is passed to the client.
///
/// # Errors
/// Not an answer (a status other than 2xx, a body that is not JSON, or a field of the wrong
/// type or size): the hook failed, and its policy decides.
pub fn read_answer(kind: Kind, status: u16, body: &[u8]) -> Result<Verdict, String> {
    if !(200..300).contains(&status) {
        return Err(format!("the hook answered {status}"));
    }
    let answer: Option<Value> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(
            serde_json::from_slice(body)
                .map_err(|e| format!("the hook's answer is not JSON: {e}"))?,
        )
    };
    if let Some(refuse) = answer.as_ref().and_then(|a| a.get("refuse")) {
        return refusal(refuse).map(Verdict::Refuse);
    }
    match kind {
        Kind::PreCreate => changes(answer.as_ref()).map(Verdict::Accept),
        Kind::PreFinish => {
            if let Some(a) = &answer {
                let size = a.to_string().len();
                if size > MAX_ANSWER {
                    return Err(format!(
                        "the hook's answer is {size} bytes; at most {MAX_ANSWER} are passed on"
                    ));
                }
            }
            Ok(Verdict::Finish(answer))
        }
    }
}

fn refusal(refuse: &Value) -> Result<Refusal, String> {
    let status = match refuse.get("status") {
        None | Some(Value::Null) => 403,
        Some(s) => s
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .filter(|s| (400..500).contains(s))
            .ok_or("a refusal's status must be a number from 400 to 499")?,
    };
    let message = match refuse.get("message") {
        None | Some(Value::Null) => "The application this upload is for refused it.".to_owned(),
        Some(Value::String(m)) => m.chars().take(MAX_MESSAGE).collect(),
        Some(_) => return Err("a refusal's message must be a string".into()),
    };
    Ok(Refusal { status, message })
}

fn changes(answer: Option<&Value>) -> Result<Changes, String> {
    let Some(answer) = answer else {
        return Ok(Changes::default());
    };
    let folder = match answer.get("folder") {
        None | Some(Value::Null) => None,
        Some(Value::String(f)) if f.len() <= MAX_FOLDER => Some(f.clone()),
        Some(_) => {
            return Err(format!(
                "folder must be a string of at most {MAX_FOLDER} bytes"
            ))
        }
    };
    let metadata = match answer.get("metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) if m.values().all(Value::is_string) => {
            let text = Value::Object(m.clone()).to_string();
            if text.len() > MAX_ANSWER {
                return Err(format!(
                    "metadata must be at most {MAX_ANSWER} bytes of JSON"
                ));
            }
            Some(text)
        }
        Some(_) => return Err("metadata must be an object of strings".into()),
    };
    Ok(Changes { folder, metadata })
}

/// `answer` as compact JSON in ASCII (other characters as `\u` escapes), fit for a header.
#[must_use]
pub fn header_value(answer: &Value) -> String {
    let mut out = String::new();
    for c in answer.to_string().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_answer_goes_on_unchanged() {
        assert_eq!(
            read_answer(Kind::PreCreate, 204, b""),
            Ok(Verdict::Accept(Changes::default()))
        );
        assert_eq!(
            read_answer(Kind::PreFinish, 200, b" \n"),
            Ok(Verdict::Finish(None))
        );
    }

    #[test]
    fn a_refusal_carries_its_status_and_message() {
        let body = br#"{"refuse": {"status": 451, "message": "Not here."}}"#;
        let want = Refusal {
            status: 451,
            message: "Not here.".into(),
        };
        assert_eq!(
            read_answer(Kind::PreCreate, 200, body),
            Ok(Verdict::Refuse(want.clone()))
        );
        assert_eq!(
            read_answer(Kind::PreFinish, 200, body),
            Ok(Verdict::Refuse(want))
        );
        let Ok(Verdict::Refuse(r)) = read_answer(Kind::PreCreate, 200, br#"{"refuse": {}}"#) else {
            panic!("a bare refusal refuses");
        };
        assert_eq!(r.status, 403);
        for bad in [
            &br#"{"refuse": {"status": 200}}"#[..],
            br#"{"refuse": {"status": 503}}"#,
            br#"{"refuse": {"message": 1}}"#,
        ] {
            assert!(read_answer(Kind::PreCreate, 200, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pre_create_sets_folder_and_metadata() {
        let body = br#"{"folder": "cats", "metadata": {"owner": "ann"}}"#;
        assert_eq!(
            read_answer(Kind::PreCreate, 200, body),
            Ok(Verdict::Accept(Changes {
                folder: Some("cats".into()),
                metadata: Some(r#"{"owner":"ann"}"#.into()),
            }))
        );
        for bad in [
            &br#"{"folder": 3}"#[..],
            br#"{"metadata": {"n": 1}}"#,
            br#"{"metadata": []}"#,
        ] {
            assert!(read_answer(Kind::PreCreate, 200, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pre_finish_passes_the_answer_on_within_its_limit() {
        let body = br#"{"video_page": "https://example.com/v/1"}"#;
        assert_eq!(
            read_answer(Kind::PreFinish, 200, body),
            Ok(Verdict::Finish(Some(
                json!({"video_page": "https://example.com/v/1"})
            )))
        );
        let big = json!({ "x": "y".repeat(MAX_ANSWER) }).to_string();
        assert!(read_answer(Kind::PreFinish, 200, big.as_bytes()).is_err());
    }

    #[test]
    fn failures_are_not_answers() {
        for (status, body) in [(500, &b""[..]), (302, b""), (404, b"{}"), (200, b"<html>")] {
            assert!(
                read_answer(Kind::PreCreate, status, body).is_err(),
                "{status}"
            );
        }
    }

    #[test]
    fn header_values_are_ascii_json() {
        let answer = json!({ "title": "Grüße 🎬", "n": 1 });
        let header = header_value(&answer);
        assert!(header.is_ascii(), "{header}");
        assert!(http::HeaderValue::from_str(&header).is_ok());
        assert_eq!(serde_json::from_str::<Value>(&header).unwrap(), answer);
    }
}
