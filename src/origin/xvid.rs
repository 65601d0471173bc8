//! The xvid API's upload sessions: `POST /v1/files/uploads?object_key=…&pipeline_id=…`
//! (Bearer API key; optional `ip`, `expires_at`, `format=json|xml`, `human=true`) opens an
//! upload and answers the seed's body: `form_post_url` (the edge's S3-style POST endpoint),
//! `form_post_params` with a signed S3 V2 policy, `status: "UPLOADING"`, ids. Errors are the
//! seed's four codes, in JSON or XML like the success body.

use super::api::owner;
use super::routing::ClientAddr;
use super::session::{self, Opening, SessionError};
use super::State;
use crate::control::{REGION_FORM_FIELD, SESSION_FORM_FIELD};
use crate::db::now_ms;
use crate::error::XvidError;
use crate::geo::client::parse_address;
use crate::store::ObjectKey;
use axum::extract::{RawQuery, State as Ext};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::IpAddr;

/// An unused upload is deleted after this long unless `expires_at` says otherwise.
const DEFAULT_EXPIRY_SECS: i64 = 7 * 24 * 3600;

/// The routes (with and without the trailing slash the seed's curl line uses).
pub fn routes() -> Router<State> {
    Router::new()
        .route("/v1/files/uploads", post(create))
        .route("/v1/files/uploads/", post(create))
}

/// How to render: JSON or XML, compact or indented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Render {
    xml: bool,
    human: bool,
}

impl Render {
    fn reply(self, status: u16, body: &Value) -> Response {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let (content_type, text) = if self.xml {
            let (root, inner) = body
                .as_object()
                .and_then(|o| o.iter().next())
                .map_or(("response", body), |(k, v)| (k.as_str(), v));
            ("application/xml", to_xml(root, inner, self.human))
        } else if self.human {
            (
                "application/json",
                serde_json::to_string_pretty(body).unwrap_or_default(),
            )
        } else {
            ("application/json", body.to_string())
        };
        (status, [(header::CONTENT_TYPE, content_type)], text).into_response()
    }

    fn error(self, e: XvidError) -> Response {
        let (status, body) = e.render();
        self.reply(status, &body)
    }
}

/// The response format: `format` overrides `Accept`; JSON unless XML is asked for.
fn render_from(params: &HashMap<String, String>, headers: &HeaderMap) -> Result<Render, ()> {
    let xml = match params.get("format").map(String::as_str) {
        Some("json") => false,
        Some("xml") => true,
        Some(_) => return Err(()),
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/xml") || a.contains("text/xml")),
    };
    let human = match params.get("human").map(String::as_str) {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(_) => return Err(()),
    };
    Ok(Render { xml, human })
}

/// `expires_at` (Unix seconds; 0 = never) → expiry in ms, or `None` for never.
fn expiry(raw: Option<&str>, now_ms: i64) -> Result<Option<i64>, ()> {
    match raw {
        None => Ok(Some(now_ms + DEFAULT_EXPIRY_SECS * 1000)),
        Some("0") => Ok(None),
        Some(s) => {
            let secs: i64 = s.parse().map_err(|_| ())?;
            if secs <= now_ms / 1000 || secs > i64::MAX / 1000 {
                return Err(());
            }
            Ok(Some(secs * 1000))
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A JSON tree as XML: objects become child elements, arrays repeated `<item>`s.
fn to_xml(root: &str, value: &Value, pretty: bool) -> String {
    fn write(out: &mut String, name: &str, v: &Value, depth: usize, pretty: bool) {
        let indent = if pretty {
            "  ".repeat(depth)
        } else {
            String::new()
        };
        let nl = if pretty { "\n" } else { "" };
        match v {
            Value::Object(map) => {
                out.push_str(&format!("{indent}<{name}>{nl}"));
                for (k, child) in map {
                    write(out, k, child, depth + 1, pretty);
                }
                out.push_str(&format!("{indent}</{name}>{nl}"));
            }
            Value::Array(items) => {
                out.push_str(&format!("{indent}<{name}>{nl}"));
                for child in items {
                    write(out, "item", child, depth + 1, pretty);
                }
                out.push_str(&format!("{indent}</{name}>{nl}"));
            }
            Value::Null => out.push_str(&format!("{indent}<{name}/>{nl}")),
            Value::String(s) => {
                out.push_str(&format!("{indent}<{name}>{}</{name}>{nl}", escape(s)))
            }
            other => out.push_str(&format!("{indent}<{name}>{other}</{name}>{nl}")),
        }
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    write(&mut out, root, value, 0, pretty);
    out
}

async fn create(
    Ext(state): Ext<State>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    // Parameters from the query string (as the seed) or a form body.
    let params = super::api::params(query.as_deref(), &body);
    let Ok(render) = render_from(&params, &headers) else {
        return Render {
            xml: false,
            human: false,
        }
        .error(XvidError::InvalidInput);
    };
    match session_for(&state, client, &headers, &params).await {
        Ok(body) => render.reply(200, &body),
        Err(e) => render.error(e),
    }
}

/// What a session request asks for (query string or form body).
struct SessionRequest<'a> {
    /// The object key the client chose, relative to the pipeline's root.
    object_key: &'a str,
    pipeline_id: &'a str,
    /// The uploader's address, for the edge choice.
    ip: Option<IpAddr>,
    /// When an unused session may be deleted (ms), if ever.
    expires_at: Option<i64>,
}

impl<'a> SessionRequest<'a> {
    /// Parses and checks the parameters at time `now` (ms).
    fn parse(params: &'a HashMap<String, String>, now: i64) -> Result<Self, XvidError> {
        let object_key = params
            .get("object_key")
            .map(|k| k.trim_start_matches('/'))
            .ok_or(XvidError::InvalidInput)?;
        ObjectKey::new(object_key).map_err(|_| XvidError::InvalidInput)?;
        let pipeline_id = params
            .get("pipeline_id")
            .filter(|p| !p.is_empty())
            .ok_or(XvidError::InvalidInput)?;
        let ip = params
            .get("ip")
            .map(|raw| parse_address(raw).ok_or(XvidError::InvalidInput))
            .transpose()?;
        let expires_at = expiry(params.get("expires_at").map(String::as_str), now)
            .map_err(|_| XvidError::InvalidInput)?;
        Ok(Self {
            object_key,
            pipeline_id,
            ip,
            expires_at,
        })
    }
}

/// The fields of a session's browser form and the S3 V2 policy that covers them.
struct SessionForm<'a> {
    pipeline_id: &'a str,
    /// The file's name (the key's last segment).
    name: &'a str,
    /// The staging key, `tmp/{pipeline}/{object_key}`.
    key: &'a str,
    /// The session's upload id: the form completes this upload, not the newest for the key.
    session: &'a str,
    /// The region of the edge the form is posted to, when routing chose one.
    region: Option<&'a str>,
    /// The largest file the account may send.
    max_size: Option<u64>,
}

impl SessionForm<'_> {
    /// `form_post_params`: the seed's fields, the session (and region) field, and the policy
    /// signed with the account's secret, valid until `expiration`.
    fn signed(
        &self,
        secret: &str,
        access_key: &str,
        expiration: chrono::DateTime<chrono::Utc>,
    ) -> Value {
        let field = |name: &str, value: &str| {
            let mut condition = serde_json::Map::new();
            condition.insert(name.into(), Value::String(value.to_owned()));
            Value::Object(condition)
        };
        let mut conditions = vec![
            json!({ "bucket": self.pipeline_id }),
            json!({ "key": self.key }),
            json!({ "acl": "private" }),
            json!({ "success_action_status": "201" }),
            json!(["starts-with", "$name", ""]),
            json!(["starts-with", "$filename", ""]),
            json!(["starts-with", "$chunk", ""]),
            json!(["starts-with", "$chunks", ""]),
            field(SESSION_FORM_FIELD, self.session),
        ];
        conditions.extend(self.region.map(|r| field(REGION_FORM_FIELD, r)));
        conditions.extend(
            self.max_size
                .map(|max| json!(["content-length-range", 0, max])),
        );
        let signed = crate::s3_policy::sign_v2(
            secret,
            &expiration.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            &conditions,
        );
        let mut params = json!({
            "name": self.name,
            "success_action_status": "201",
            "filename": "",
            "chunk": "0",
            "chunks": "1",
            "policy": signed.policy,
            "signature": signed.signature,
            "AWSAccessKeyId": access_key,
            "key": self.key,
            "acl": "private",
        });
        params[SESSION_FORM_FIELD] = Value::String(self.session.to_owned());
        if let Some(region) = self.region {
            params[REGION_FORM_FIELD] = Value::String(region.to_owned());
        }
        params
    }
}

async fn session_for(
    state: &State,
    client: Option<IpAddr>,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Value, XvidError> {
    let owner = owner(state, headers).await.map_err(|e| match e.0 {
        crate::error::UploadsApiError::Unauthenticated => XvidError::InvalidToken,
        _ => XvidError::Internal,
    })?;
    let now = now_ms();
    let SessionRequest {
        object_key,
        pipeline_id,
        ip,
        expires_at,
    } = SessionRequest::parse(params, now)?;
    let name = object_key.rsplit('/').next().unwrap_or(object_key);
    let metadata = json!({ "ip": ip.map(|a| a.to_string()), "object_key": object_key }).to_string();
    let opening = Opening {
        flavour: "xvid",
        filename: name,
        pipeline_id: Some(pipeline_id),
        relative_key: Some(object_key),
        expires_at,
        metadata: Some(metadata),
        ..Opening::default()
    };
    let opened = session::open(state, &owner, &opening, now)
        .await
        .map_err(|e| match e {
            SessionError::UnknownPipeline => XvidError::NotFound,
            other => {
                tracing::error!(error = %other, "Could not open an xvid upload session.");
                XvidError::Internal
            }
        })?;
    let secret = crate::db::account::secret_of(&state.db, &owner.account_id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "Could not read the account's signing secret.");
            XvidError::Internal
        })?;
    let key = format!("tmp/{pipeline_id}/{object_key}");
    let ttl = session::validity(state, &owner, None);
    // The seed: "the form post URL returned … will be geo-optimized to be closer to the given
    // IP's geo-location"; without `ip`, the requesting client's.
    let edge = state.edges.target(state, ip.or(client)).await;
    // The same instant as the session's creation, read once.
    let expiration = chrono::DateTime::from_timestamp_millis(now).unwrap_or_default() + ttl;
    let id = opened.id.to_string();
    let form = SessionForm {
        pipeline_id,
        name,
        key: &key,
        session: &id,
        region: edge.region.as_deref(),
        max_size: owner
            .quota_remaining
            .into_iter()
            .chain(owner.max_upload_size)
            .min(),
    };
    let form_post_params = form.signed(&secret.secret, &secret.access_key, expiration);
    Ok(json!({
        "upload": {
            "form_post_params": form_post_params,
            "status": "UPLOADING",
            "object_key": object_key,
            "nb_chunks": 0,
            "type": "S3",
            "form_post_url": format!("{}/s3/{pipeline_id}", edge.url),
            "pipeline": { "id": pipeline_id },
            "file": { "id": id },
            "id": id,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_defaults_to_a_week_and_zero_is_never() {
        let now = 1_700_000_000_000;
        assert_eq!(expiry(None, now), Ok(Some(now + 7 * 24 * 3600 * 1000)));
        assert_eq!(expiry(Some("0"), now), Ok(None));
        assert_eq!(expiry(Some("1800000000"), now), Ok(Some(1_800_000_000_000)));
        assert!(expiry(Some("1600000000"), now).is_err());
        assert!(expiry(Some("soon"), now).is_err());
    }

    #[test]
    fn format_and_human() {
        let p = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let mut h = HeaderMap::new();
        assert_eq!(
            render_from(&p(&[]), &h),
            Ok(Render {
                xml: false,
                human: false
            })
        );
        h.insert(header::ACCEPT, "application/xml".parse().unwrap());
        assert_eq!(
            render_from(&p(&[]), &h),
            Ok(Render {
                xml: true,
                human: false
            })
        );
        assert_eq!(
            render_from(&p(&[("format", "json"), ("human", "true")]), &h),
            Ok(Render {
                xml: false,
                human: true
            })
        );
        assert!(render_from(&p(&[("format", "yaml")]), &h).is_err());
        assert!(render_from(&p(&[("human", "maybe")]), &h).is_err());
    }

    #[test]
    fn xml_rendering() {
        let v = json!({ "a": "x<y", "b": { "c": 1 }, "d": null });
        assert_eq!(
            to_xml("upload", &v, false),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<upload><a>x&lt;y</a><b><c>1</c></b><d/></upload>"
        );
        assert!(to_xml("upload", &v, true).contains("\n  <b>\n    <c>1</c>\n  </b>\n"));
    }
}
