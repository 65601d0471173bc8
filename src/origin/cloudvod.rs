//! Cloud VoD's `getUploadToken` (`POST` or `GET /vod/videoManage/getUploadToken`): signed with
//! `X-WS-AccessKey` (the account's access key), `X-WS-Timestamp` (Unix seconds, at most 5
//! minutes off) and `Authorization: base64(HMAC-SHA1(secret, timestamp))`. Answers an upload
//! URL (a tus resource at the edge) and its token; the same `fileId` resumes the same upload.
//! Transcoding parameters are kept with the upload for the origin's later stages.

use super::routing::ClientAddr;
use super::session::{self, Limits, Opening, SessionError};
use super::State;
use crate::control::KeyOwner;
use crate::db::{self, now_ms};
use crate::error::CloudVodError;
use crate::token::Scope;
use crate::upload::Status;
use axum::extract::{RawQuery, State as Ext};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::HashMap;

/// How far `X-WS-Timestamp` may be from the server's clock.
const MAX_CLOCK_OFFSET_SECS: u64 = 300;

/// The routes.
pub fn routes() -> Router<State> {
    Router::new().route("/vod/videoManage/getUploadToken", get(handle).post(handle))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Checks the request's signature headers; returns the account.
async fn authenticate(
    state: &State,
    headers: &HeaderMap,
    now_secs: u64,
) -> Result<KeyOwner, CloudVodError> {
    let timestamp = header(headers, "x-ws-timestamp").ok_or(CloudVodError::StaleTimestamp)?;
    let ts: u64 = timestamp
        .parse()
        .map_err(|_| CloudVodError::StaleTimestamp)?;
    if ts.abs_diff(now_secs) > MAX_CLOCK_OFFSET_SECS {
        return Err(CloudVodError::StaleTimestamp);
    }
    let access_key = header(headers, "x-ws-accesskey").ok_or(CloudVodError::Unauthorized)?;
    let signature = header(headers, "authorization").ok_or(CloudVodError::Unauthorized)?;
    let (owner, secret) = db::account::find_by_access_key(&state.db, access_key)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "Could not look up an access key.");
            CloudVodError::Internal
        })?
        .ok_or(CloudVodError::Unauthorized)?;
    // The same construction as an S3 V2 signature, over the timestamp string.
    if !crate::s3_policy::verify_v2(&secret.secret, timestamp, signature) {
        return Err(CloudVodError::Unauthorized);
    }
    Ok(owner)
}

/// The request's parameters, checked in the order of the seed's error codes.
#[derive(Debug, PartialEq, Eq)]
struct Params {
    name: String,
    file_id: Option<String>,
    overwrite: bool,
    size: Option<u64>,
    md5: Option<String>,
}

fn check(p: &HashMap<String, String>, max_size: u64) -> Result<Params, CloudVodError> {
    let name = p
        .get("originFileName")
        .map(|n| n.trim())
        .unwrap_or_default();
    if name.is_empty() {
        return Err(CloudVodError::NameEmpty);
    }
    if name.chars().count() > 40 {
        return Err(CloudVodError::NameTooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(CloudVodError::Source);
    }
    let md5 = match p.get("md5").map(|m| m.trim()) {
        Some("") => return Err(CloudVodError::Md5Empty),
        Some(m) if m.len() > 32 => return Err(CloudVodError::Md5TooLong),
        Some(m) if !m.bytes().all(|b| b.is_ascii_hexdigit()) => return Err(CloudVodError::Source),
        m => m.map(str::to_ascii_lowercase),
    };
    let overwrite = match p.get("overwrite").map(String::as_str) {
        None | Some("0") => false,
        Some("1") => true,
        Some(_) => return Err(CloudVodError::Overwrite),
    };
    let size = p
        .get("fileSize")
        .map(|s| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| CloudVodError::SizeInvalid)
        })
        .transpose()?;
    if size.is_some_and(|s| s > max_size) {
        return Err(CloudVodError::SizeTooLarge);
    }
    let file_id = p
        .get("fileId")
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty());
    if file_id
        .as_ref()
        .is_some_and(|f| f.len() > 32 || f.chars().any(char::is_control))
    {
        return Err(CloudVodError::Source);
    }
    Ok(Params {
        name: name.to_owned(),
        file_id,
        overwrite,
        size,
        md5,
    })
}

/// The settings kept for transcoding and notification.
fn metadata(p: &HashMap<String, String>, params: &Params) -> String {
    let mut kept = serde_json::Map::new();
    for key in [
        "workflowId",
        "transCodeCombineName",
        "waterMarkName",
        "subtitleId",
        "categoryNames",
        "domain",
    ] {
        if let Some(v) = p.get(key).filter(|v| !v.is_empty()) {
            kept.insert(key.to_owned(), Value::String(v.clone()));
        }
    }
    if let Some(md5) = &params.md5 {
        kept.insert("md5".into(), Value::String(md5.clone()));
    }
    if let Some(size) = params.size {
        kept.insert("fileSize".into(), json!(size));
    }
    Value::Object(kept).to_string()
}

fn reply(result: Result<Value, CloudVodError>) -> Response {
    match result {
        Ok(data) => Json(json!({ "code": 200, "data": data, "message": "Operation successfully" }))
            .into_response(),
        Err(e) => {
            let (status, body) = e.render();
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                Json(body),
            )
                .into_response()
        }
    }
}

async fn handle(
    Ext(state): Ext<State>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = super::api::params(query.as_deref(), &body);
    reply(upload_token(&state, client, &headers, &params).await)
}

/// An internal failure, logged; the client gets Cloud VoD's internal error.
fn internal(e: &dyn std::fmt::Display) -> CloudVodError {
    tracing::error!(error = %e, "Cloud VoD upload token failed.");
    CloudVodError::Internal
}

/// The upload a token is for: the one the same `fileId` opened (breakpoint resume, unless
/// `overwrite`), or a new one. Its id, pipeline and object key.
async fn the_upload(
    state: &State,
    owner: &KeyOwner,
    p: &HashMap<String, String>,
    params: &Params,
) -> Result<(String, String, String), CloudVodError> {
    let existing = match (&params.file_id, params.overwrite) {
        (Some(file_id), false) => db::upload::by_client_ref(&state.db, &owner.account_id, file_id)
            .await
            .map_err(|e| internal(&e))?,
        _ => None,
    };
    match existing {
        Some(upload) if upload.filename != params.name || upload.status == Status::Failed => {
            Err(CloudVodError::Source)
        }
        Some(upload) => Ok((upload.id, upload.pipeline_id, upload.object_key)),
        None => {
            let id_hint = uuid::Uuid::new_v4().simple().to_string();
            let ext = extension(&params.name);
            let date = crate::clock::now_utc().format("%Y%m%d");
            let relative = format!("video/{date}/{id_hint}/source{ext}");
            let opening = Opening {
                flavour: "cloudvod",
                filename: &params.name,
                relative_key: Some(&relative),
                metadata: Some(metadata(p, params)),
                client_ref: params.file_id.as_deref(),
                // The client gave the size: the upload is complete at its last byte, whether
                // or not the client also sends Upload-Length.
                declared_size: params.size,
                ..Opening::default()
            };
            let opened = session::open(state, owner, &opening, now_ms())
                .await
                .map_err(|e| match e {
                    SessionError::UnknownPipeline => CloudVodError::Source,
                    other => internal(&other),
                })?;
            Ok((
                opened.id.to_string(),
                opened.pipeline_id,
                opened.object_key.to_string(),
            ))
        }
    }
}

async fn upload_token(
    state: &State,
    client: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    p: &HashMap<String, String>,
) -> Result<Value, CloudVodError> {
    let now_secs = session::now_secs();
    let owner = authenticate(state, headers, now_secs).await?;
    let max = [owner.quota_remaining, owner.max_upload_size]
        .into_iter()
        .flatten()
        .fold(state.settings.max_upload_size, u64::min);
    let params = check(p, max)?;
    let (video_id, pipeline_id, object_key) = the_upload(state, &owner, p, &params).await?;
    // fileKey is the object key relative to the pipeline's root.
    let root = db::account::pipeline_root(&state.db, &owner.account_id, &pipeline_id)
        .await
        .map_err(|e| internal(&e))?
        .unwrap_or_default();
    let file_key = object_key
        .strip_prefix(root.as_str())
        .unwrap_or(&object_key);
    let ttl = session::validity(state, &owner, None);
    let edge = state.edges.target(state, client).await;
    let minted = session::mint(
        state,
        &owner,
        Scope::Upload(video_id.clone()),
        Limits {
            max_size: params.size,
            region: edge.region,
            ..Limits::default()
        },
        ttl,
        now_secs,
    )
    .map_err(|e| internal(&e))?;
    Ok(json!({
        "speedDomainlUrl": "",
        "bucketName": owner.pipeline_id,
        "uploadUrl": format!("{}{}{video_id}", edge.url, super::upload_tokens::TUS_PATH),
        "uploadToken": minted.token,
        "fileKey": file_key,
        "httpDnsServer": "",
        "videoId": video_id,
    }))
}

/// The file name's extension, if short and plain (`.mp4`), for the stored key.
fn extension(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((_, ext))
            if !ext.is_empty()
                && ext.len() <= 8
                && ext.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            format!(".{}", ext.to_ascii_lowercase())
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parameters_map_to_the_seeds_codes() {
        let n = ("originFileName", "uploadtest.mp4");
        let code = |pairs: &[(&str, &str)]| {
            check(&p(pairs), 1000)
                .map(|_| 0)
                .unwrap_or_else(|e| e.parts().1)
        };
        assert_eq!(code(&[n]), 0);
        assert_eq!(code(&[("originFileName", &"x".repeat(41))]), 1500);
        assert_eq!(code(&[("originFileName", &"x".repeat(40))]), 0);
        assert_eq!(code(&[n, ("md5", "")]), 1604);
        assert_eq!(code(&[n, ("md5", &"a".repeat(33))]), 1605);
        assert_eq!(code(&[]), 1606);
        assert_eq!(code(&[("originFileName", "  ")]), 1606);
        assert_eq!(code(&[n, ("md5", "xyz")]), 1607);
        assert_eq!(code(&[n, ("fileId", &"f".repeat(33))]), 1607);
        assert_eq!(code(&[n, ("overwrite", "2")]), 1608);
        assert_eq!(code(&[n, ("fileSize", "-1")]), 1609);
        assert_eq!(code(&[n, ("fileSize", "1.5")]), 1609);
        assert_eq!(code(&[n, ("fileSize", "1001")]), 1610);
        assert_eq!(
            code(&[
                n,
                ("fileSize", "1000"),
                ("overwrite", "1"),
                ("md5", "ABCDEF")
            ]),
            0
        );
    }

    #[test]
    fn extensions() {
        assert_eq!(extension("a.MP4"), ".mp4");
        assert_eq!(extension("noext"), "");
        assert_eq!(extension("weird.ext/../x"), "");
    }
}
