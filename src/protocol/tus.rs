//! tus 1.0.0 at `/files/`: core (`OPTIONS`, `HEAD`, `PATCH`, 409 on an offset mismatch, 412
//! on a version mismatch) and the extensions creation, creation-with-upload,
//! creation-defer-length, termination, expiration (`Upload-Expires`) and checksum (`sha1`,
//! `sha256`, `md5`; 460 on a mismatch, the chunk discarded). Every request is authorised by its
//! token: an upload token (`acl=/files/*`) creates and continues uploads of its account; a
//! per-upload token (Cloud VoD's `uploadToken`) continues its one upload, whose resource is
//! made on first use. `Upload-Metadata` is kept with the upload.

use super::Reply;
use crate::control::{KeyOwner, UploadInfo};
use crate::ingest::chunk_spool::SpoolError;
use crate::ingest::offset_spool::{Algorithm, Appended, OffsetSpool, Resource};
use crate::ingest::IngestError;
use crate::token::{Claims, TokenError};
use crate::upload::UploadId;
use base64::Engine;
use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, Method};
use serde_json::{Map, Value};

/// The tus endpoint.
pub const PREFIX: &str = "/files/";
const VERSION: &str = "1.0.0";
const EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,termination,expiration,checksum";
const OCTETS: &str = "application/offset+octet-stream";

/// What the adapter needs from its edge.
pub type Ctx<'a> = super::Ctx<'a, OffsetSpool>;

/// The target of a tus path: the endpoint (`None`) or one upload.
#[must_use]
pub fn route(path: &str) -> Option<Option<UploadId>> {
    let rest = path.strip_prefix("/files")?;
    match rest.trim_matches('/') {
        "" => Some(None),
        id => id.parse().ok().map(Some),
    }
}

/// A tus reply: `Tus-Resumable` always, a short text body for errors.
fn reply(status: u16, text: &str, headers: Vec<(&'static str, String)>) -> Reply {
    let mut headers = headers;
    headers.push(("tus-resumable", VERSION.to_owned()));
    Reply {
        status,
        content_type: "text/plain; charset=utf-8",
        body: Bytes::from(text.to_owned()),
        headers,
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn http_date(unix: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(unix).unwrap_or(i64::MAX), 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

fn refused(e: &TokenError) -> Reply {
    let (status, body) = e.render();
    let mut r = Reply::json(status, &body);
    r.headers.push(("tus-resumable", VERSION.to_owned()));
    r
}

fn unavailable(e: &dyn std::error::Error) -> Reply {
    tracing::error!(error = %e, source = ?e.source(), "tus request failed at the edge.");
    reply(
        503,
        "The service is temporarily unavailable; retry.",
        vec![("retry-after", "5".into())],
    )
}

/// `Upload-Metadata` (`key base64,key2 base64`) as a JSON object; `None` if malformed.
fn parse_metadata(raw: &str) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut parts = pair.splitn(2, ' ');
        let key = parts.next()?;
        let value = match parts.next() {
            Some(b64) => String::from_utf8_lossy(
                &base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()?,
            )
            .into_owned(),
            None => String::new(),
        };
        if key.is_empty() || key.contains(' ') {
            return None;
        }
        out.insert(key.to_owned(), Value::String(value));
    }
    Some(out)
}

/// Handles one tus request for `target` (from [`route`]).
pub async fn handle<S>(
    method: &Method,
    target: Option<UploadId>,
    query: Option<&str>,
    headers: &HeaderMap,
    body: S,
    ctx: &Ctx<'_>,
) -> Reply
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send,
{
    let max = ctx.ingest.max_upload_size();
    if method == Method::OPTIONS {
        return reply(
            204,
            "",
            vec![
                ("tus-version", VERSION.into()),
                ("tus-extension", EXTENSIONS.into()),
                ("tus-max-size", max.to_string()),
                ("tus-checksum-algorithm", "sha1,sha256,md5".into()),
            ],
        );
    }
    if header(headers, "tus-resumable") != Some(VERSION) {
        return reply(
            412,
            "This server speaks tus 1.0.0 (send Tus-Resumable: 1.0.0).",
            vec![("tus-version", VERSION.into())],
        );
    }
    let claims = match ctx.verify_token(query, headers) {
        Ok(claims) => claims,
        Err(e) => return refused(&e),
    };
    match (method.clone(), target) {
        (Method::POST, None) => create(headers, body, &claims, ctx).await,
        (m, Some(id)) if m == Method::HEAD || m == Method::PATCH || m == Method::DELETE => {
            let id = id.to_string();
            if let Err(e) = claims.permits(&format!("{PREFIX}{id}"), Some(&id), None) {
                return refused(&e);
            }
            let info = match ctx.ingest.upload_info(&id).await {
                Ok(Some(info)) if info.account_id == claims.account => info,
                Ok(_) => return reply(404, "No such upload.", vec![]),
                Err(e) => return unavailable(&e),
            };
            let _guard = ctx.spool.lock(&id).await;
            match m {
                Method::HEAD => head(&info, &claims, ctx).await,
                Method::PATCH => patch(&info, headers, body, &claims, ctx).await,
                _ => terminate(&info, ctx).await,
            }
        }
        _ => reply(405, "Method not allowed here.", vec![]),
    }
}

/// The creation extension (with creation-with-upload and creation-defer-length).
async fn create<S>(headers: &HeaderMap, body: S, claims: &Claims, ctx: &Ctx<'_>) -> Reply
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send,
{
    if let Err(e) = claims.permits(PREFIX, None, None) {
        return refused(&e);
    }
    let Some(pipeline) = claims.pipeline.clone() else {
        return refused(&TokenError::WrongScope);
    };
    let length = match (
        header(headers, "upload-length"),
        header(headers, "upload-defer-length"),
    ) {
        (Some(l), None) => match l.parse::<u64>() {
            Ok(l) => Some(l),
            Err(_) => return reply(400, "Upload-Length must be a non-negative integer.", vec![]),
        },
        (None, Some("1")) => None,
        _ => {
            return reply(
                400,
                "Send Upload-Length, or Upload-Defer-Length: 1.",
                vec![],
            )
        }
    };
    if let Some(l) = length {
        if l > ctx.ingest.max_upload_size() {
            return reply(413, "Upload-Length is over Tus-Max-Size.", vec![]);
        }
        if claims.max_size.is_some_and(|m| l > m) {
            return Reply::json(
                413,
                &serde_json::json!({ "code": 1101, "message": "Upload denied: the booked storage capacity is reached." }),
            );
        }
    }
    let metadata = header(headers, "upload-metadata").map(str::to_owned);
    let fields = match metadata.as_deref().map(parse_metadata) {
        Some(None) => {
            return reply(
                400,
                "Upload-Metadata must be `key base64value` pairs separated by commas.",
                vec![],
            )
        }
        Some(Some(m)) => m,
        None => Map::new(),
    };
    let filename: String = fields
        .get("filename")
        .or_else(|| fields.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("video")
        .chars()
        .filter(|c| !c.is_control())
        .take(255)
        .collect();
    let owner = KeyOwner {
        account_id: claims.account.clone(),
        pipeline_id: pipeline,
        quota_remaining: claims.max_size,
        token_ttl_secs: None,
    };
    let info = match ctx.ingest.open_record(&owner, "tus", &filename, None).await {
        Ok((info, _)) => info,
        Err(e) => return unavailable(&e),
    };
    let resource = Resource {
        length,
        metadata,
        complete: false,
    };
    if let Err(e) = ctx.spool.create(&info.id, &resource).await {
        return unavailable(&e);
    }
    let mut out = vec![
        ("location", format!("{PREFIX}{}", info.id)),
        ("upload-expires", http_date(claims.expires)),
    ];
    if header(headers, "content-type") == Some(OCTETS) {
        // creation-with-upload: the body is the first chunk.
        let _guard = ctx.spool.lock(&info.id).await;
        let r = append(&info, resource, 0, body, None, claims, ctx).await;
        if r.status != 204 {
            return r;
        }
        out.extend(r.headers.into_iter().filter(|(k, _)| *k == "upload-offset"));
    }
    reply(201, "", out)
}

/// The resource of an upload, made on first use for uploads a control API opened.
async fn resource(info: &UploadInfo, ctx: &Ctx<'_>) -> Result<Option<(Resource, u64)>, SpoolError> {
    if let Some(found) = ctx.spool.get(&info.id).await? {
        return Ok(Some(found));
    }
    if info.status != crate::upload::Status::Receiving.code() {
        return Ok(None);
    }
    let fresh = Resource {
        length: None,
        metadata: None,
        complete: false,
    };
    ctx.spool.create(&info.id, &fresh).await?;
    Ok(Some((fresh, 0)))
}

fn length_headers(r: &Resource) -> Vec<(&'static str, String)> {
    let mut h = match r.length {
        Some(l) => vec![("upload-length", l.to_string())],
        None => vec![("upload-defer-length", "1".into())],
    };
    if let Some(m) = &r.metadata {
        h.push(("upload-metadata", m.clone()));
    }
    h
}

async fn head(info: &UploadInfo, claims: &Claims, ctx: &Ctx<'_>) -> Reply {
    match resource(info, ctx).await {
        Ok(Some((r, offset))) => {
            let mut h = length_headers(&r);
            h.push(("upload-offset", offset.to_string()));
            h.push(("cache-control", "no-store".into()));
            h.push(("upload-expires", http_date(claims.expires)));
            reply(200, "", h)
        }
        Ok(None) => reply(404, "No such upload.", vec![]),
        Err(e) => unavailable(&e),
    }
}

async fn patch<S>(
    info: &UploadInfo,
    headers: &HeaderMap,
    body: S,
    claims: &Claims,
    ctx: &Ctx<'_>,
) -> Reply
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send,
{
    if header(headers, "content-type") != Some(OCTETS) {
        return reply(
            415,
            "PATCH needs Content-Type: application/offset+octet-stream.",
            vec![],
        );
    }
    let Some(Ok(offset)) = header(headers, "upload-offset").map(str::parse::<u64>) else {
        return reply(400, "PATCH needs Upload-Offset.", vec![]);
    };
    let checksum = match header(headers, "upload-checksum") {
        None => None,
        Some(raw) => {
            let parsed = raw.split_once(' ').and_then(|(name, b64)| {
                Some((
                    Algorithm::from_name(name)?,
                    base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .ok()?,
                ))
            });
            match parsed {
                Some(c) => Some(c),
                None => {
                    return reply(
                        400,
                        "Upload-Checksum must be `sha1|sha256|md5 base64digest`.",
                        vec![],
                    )
                }
            }
        }
    };
    let (mut r, current) = match resource(info, ctx).await {
        Ok(Some(found)) => found,
        Ok(None) => return reply(404, "No such upload.", vec![]),
        Err(e) => return unavailable(&e),
    };
    if offset != current {
        return reply(
            409,
            &format!("Upload-Offset is {current}, not {offset}."),
            vec![("upload-offset", current.to_string())],
        );
    }
    if r.length.is_none() {
        if let Some(l) = header(headers, "upload-length") {
            match l.parse::<u64>() {
                Ok(l) if l >= current && l <= ctx.ingest.max_upload_size() => {
                    r.length = Some(l);
                    if let Err(e) = ctx.spool.save(&info.id, &r).await {
                        return unavailable(&e);
                    }
                }
                _ => {
                    return reply(
                        400,
                        "Upload-Length must be at least the offset and at most Tus-Max-Size.",
                        vec![],
                    )
                }
            }
        }
    }
    append(info, r, offset, body, checksum, claims, ctx).await
}

/// Appends a body at `offset` (the lock held); completes the upload when the last byte is in.
async fn append<S>(
    info: &UploadInfo,
    r: Resource,
    offset: u64,
    body: S,
    checksum: Option<(Algorithm, Vec<u8>)>,
    claims: &Claims,
    ctx: &Ctx<'_>,
) -> Reply
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send,
{
    if r.complete {
        return reply(204, "", vec![("upload-offset", offset.to_string())]);
    }
    let node = ctx.ingest.max_upload_size();
    let limit = r
        .length
        .unwrap_or(node)
        .min(node)
        .min(claims.max_size.unwrap_or(u64::MAX))
        .saturating_sub(offset);
    let new_offset = match ctx
        .spool
        .append(&info.id, offset, body, limit, checksum)
        .await
    {
        Ok(Appended::Done(o) | Appended::Cut(o)) => o,
        Ok(Appended::ChecksumMismatch) => {
            return reply(460, "Checksum mismatch: the chunk was discarded.", vec![])
        }
        Err(SpoolError::TooLarge(_)) => {
            return reply(
                413,
                "The body goes past Upload-Length or the size limit.",
                vec![],
            )
        }
        Err(e) => return unavailable(&e),
    };
    if r.length == Some(new_offset) {
        let metadata = r
            .metadata
            .as_deref()
            .and_then(parse_metadata)
            .map(|m| serde_json::json!({ "tus_metadata": m }).to_string());
        match ctx
            .ingest
            .store_files(
                info,
                &[ctx.spool.data_path(&info.id)],
                claims.max_size,
                metadata,
            )
            .await
        {
            Ok(done) => {
                tracing::info!(upload_id = %info.id, bytes = done.size, "tus upload complete.");
                if let Err(e) = ctx.spool.complete(&info.id, r).await {
                    tracing::warn!(upload_id = %info.id, error = %e, "Could not drop a completed upload's data.");
                }
            }
            Err(IngestError::QuotaExceeded) => {
                return reply(413, "The account's storage quota is reached.", vec![])
            }
            Err(e) => return unavailable(&e),
        }
    }
    reply(
        204,
        "",
        vec![
            ("upload-offset", new_offset.to_string()),
            ("upload-expires", http_date(claims.expires)),
        ],
    )
}

/// The termination extension.
async fn terminate(info: &UploadInfo, ctx: &Ctx<'_>) -> Reply {
    if let Err(e) = ctx.spool.remove(&info.id).await {
        return unavailable(&e);
    }
    if info.status == crate::upload::Status::Receiving.code() {
        ctx.ingest.abandon(&info.id).await;
    }
    reply(204, "", vec![])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_metadata() {
        assert_eq!(route("/files/"), Some(None));
        assert_eq!(route("/files"), Some(None));
        let id = UploadId::new();
        assert_eq!(route(&format!("/files/{id}")), Some(Some(id)));
        assert_eq!(route("/files/upload"), None);
        assert_eq!(route("/other"), None);
        let m = parse_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential")
            .unwrap();
        assert_eq!(m["filename"], "world_domination_plan.pdf");
        assert_eq!(m["is_confidential"], "");
        assert!(parse_metadata("filename !!!").is_none());
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
