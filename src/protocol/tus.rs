//! tus 1.0.0 at `/files/`: core (`OPTIONS`, `HEAD`, `PATCH`, 409 on an offset mismatch, 412
//! on a version mismatch) and the extensions creation, creation-with-upload,
//! creation-defer-length, termination, expiration (`Upload-Expires`), checksum (`sha1`,
//! `sha256`, `md5`; 460 on a mismatch, the chunk discarded) and concatenation (partial uploads
//! sent in parallel, then one final upload naming them). Every request is authorised by its
//! token: an upload token (`acl=/files/*`) creates and continues uploads of its account; a
//! per-upload token (Cloud VoD's `uploadToken`) continues its one upload, whose resource is
//! made on first use. `Upload-Metadata` is kept with the upload.

use super::resumable::{self, Held, Refusal, PREFIX};
use super::Reply;
use crate::error::TusError;
use crate::ingest::offset_spool::{Algorithm, Concat, Resource};
use crate::ingest::Body;
use crate::token::Claims;
use crate::upload::UploadId;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::{json, Map, Value};

pub use resumable::{route, Ctx};

const VERSION: &str = "1.0.0";
const EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,termination,expiration,checksum,concatenation";
const OCTETS: &str = "application/offset+octet-stream";

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

/// An error of tus's table, as a reply.
fn error(e: &TusError) -> Reply {
    let (status, text, headers) = e.render();
    reply(status, &text, headers)
}

/// A refusal as tus renders it.
fn refused(refusal: Refusal) -> Reply {
    match refusal {
        Refusal::Token(e) => {
            let (status, body) = e.render();
            let mut r = Reply::json(status, &body);
            r.headers.push(("tus-resumable", VERSION.to_owned()));
            r
        }
        Refusal::NotFound => error(&TusError::NotFound),
        Refusal::TooLarge(max) => error(&TusError::TooLarge { max }),
        Refusal::Quota => {
            let mut r = super::quota_exceeded();
            r.headers.push(("tus-resumable", VERSION.to_owned()));
            r
        }
        Refusal::ChecksumMismatch => error(&TusError::ChecksumMismatch),
        Refusal::Unavailable => error(&TusError::Unavailable),
        Refusal::Full => error(&TusError::Full),
    }
}

pub(super) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn http_date(unix: u64) -> String {
    let at = std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(unix));
    httpdate::fmt_http_date(at.unwrap_or(std::time::UNIX_EPOCH))
}

/// `Upload-Metadata` (`key base64,key2 base64`) as a JSON object; `None` if malformed.
pub(crate) fn parse_metadata(raw: &str) -> Option<Map<String, Value>> {
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
    S: Body,
{
    if method == Method::OPTIONS {
        // Discovery needs no token; with one, the limit is the token's.
        let claims = ctx.verify_token(query, headers).ok();
        let max = resumable::max_size(claims.as_ref(), ctx);
        return reply(
            204,
            "",
            vec![
                ("tus-version", VERSION.into()),
                ("tus-extension", EXTENSIONS.into()),
                ("tus-max-size", max.to_string()),
                ("tus-checksum-algorithm", "sha1,sha256,md5".into()),
                ("upload-limit", format!("min-size=0,max-size={max}")),
                ("accept-patch", "application/partial-upload".into()),
            ],
        );
    }
    if header(headers, "tus-resumable") != Some(VERSION) {
        return error(&TusError::UnsupportedVersion);
    }
    let claims = match ctx.verify_token(query, headers) {
        Ok(claims) => claims,
        Err(e) => return refused(e.into()),
    };
    let result = match (method.clone(), target) {
        (Method::POST, None) => create(headers, body, &claims, ctx).await,
        (m, Some(id)) if m == Method::HEAD || m == Method::PATCH || m == Method::DELETE => {
            match resumable::existing(&claims, id, ctx).await {
                Err(refusal) => Err(refusal),
                Ok(held) => match m {
                    Method::HEAD => head_stored(held, &claims, ctx).await,
                    Method::PATCH => patch(held, headers, body, &claims, ctx).await,
                    _ => {
                        let Held { info, turn, .. } = held;
                        drop(turn);
                        resumable::drop_upload(&info.id, ctx).await;
                        Ok(reply(204, "", vec![]))
                    }
                },
            }
        }
        _ => Ok(error(&TusError::MethodNotAllowed)),
    };
    result.unwrap_or_else(refused)
}

/// What a creation request's headers ask for.
#[derive(Debug)]
pub(crate) struct Creation {
    /// `Upload-Concat`.
    pub concat: Option<Concat>,
    /// `Upload-Length`; `None` when deferred or for a final concatenation.
    pub length: Option<u64>,
    /// `Upload-Metadata` as sent.
    pub metadata: Option<String>,
    /// `Upload-Metadata` decoded.
    pub fields: Map<String, Value>,
}

/// Reads a creation request's headers (pure: the fuzz target `tus` drives it).
///
/// # Errors
/// The tus error for a malformed or contradictory header.
pub(crate) fn creation(headers: &HeaderMap) -> Result<Creation, TusError> {
    let concat = match header(headers, "upload-concat") {
        None => None,
        Some("partial") => Some(Concat::Partial),
        Some(v) if v.starts_with("final;") => {
            let parts: Option<Vec<String>> = v["final;".len()..]
                .split_whitespace()
                .map(|url| resumable::upload_of_url(url).map(|id| id.to_string()))
                .collect();
            match parts {
                Some(parts) if !parts.is_empty() => Some(Concat::Final(parts)),
                _ => return Err(TusError::FinalWithoutParts),
            }
        }
        Some(_) => return Err(TusError::BadConcat),
    };
    let length = match (
        header(headers, "upload-length"),
        header(headers, "upload-defer-length"),
        &concat,
    ) {
        (None, None, Some(Concat::Final(_))) => None,
        (_, _, Some(Concat::Final(_))) => return Err(TusError::FinalWithLength),
        (Some(l), None, _) => Some(l.parse::<u64>().map_err(|_| TusError::BadLength)?),
        (None, Some("1"), _) => None,
        _ => return Err(TusError::NoLength),
    };
    let metadata = header(headers, "upload-metadata").map(str::to_owned);
    let fields = match metadata.as_deref().map(parse_metadata) {
        Some(None) => return Err(TusError::BadMetadata),
        Some(Some(m)) => m,
        None => Map::new(),
    };
    Ok(Creation {
        concat,
        length,
        metadata,
        fields,
    })
}

/// `Upload-Checksum` (`ALGORITHM BASE64`), if sent (pure: the fuzz target `tus` drives it).
///
/// # Errors
/// An unknown algorithm or a digest that is not base64.
pub(crate) fn checksum(headers: &HeaderMap) -> Result<Option<(Algorithm, Vec<u8>)>, TusError> {
    let Some(raw) = header(headers, "upload-checksum") else {
        return Ok(None);
    };
    raw.split_once(' ')
        .and_then(|(name, b64)| {
            Some((
                Algorithm::from_name(name)?,
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()?,
            ))
        })
        .map(Some)
        .ok_or(TusError::BadChecksum)
}

/// The creation extension (with creation-with-upload, creation-defer-length and
/// concatenation).
async fn create<S>(
    headers: &HeaderMap,
    body: S,
    claims: &Claims,
    ctx: &Ctx<'_>,
) -> Result<Reply, Refusal>
where
    S: Body,
{
    let Creation {
        concat,
        length,
        metadata,
        fields,
    } = match creation(headers) {
        Ok(c) => c,
        Err(e) => return Ok(error(&e)),
    };
    let filename = fields
        .get("filename")
        .or_else(|| fields.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("video");
    let mut resource = Resource {
        length,
        metadata,
        complete: false,
        concat,
        owner: None,
    };
    if let Some(Concat::Final(parts)) = &resource.concat {
        match concatenation_length(parts, claims, ctx).await? {
            Ok(total) => resource.length = Some(total),
            Err(why) => return Ok(error(&TusError::NotConcatenable(why))),
        }
    }
    let info = resumable::create(claims, filename, &resource, ctx).await?;
    let mut out = vec![
        ("location", format!("{PREFIX}{}", info.id)),
        ("upload-expires", http_date(claims.expires)),
    ];
    if matches!(resource.concat, Some(Concat::Final(_))) {
        // The partial uploads are all here: the final upload is stored at once.
        let metadata = metadata_record(resource.metadata.as_deref());
        resumable::finish(&info, resource, metadata, claims, ctx).await?;
    } else if header(headers, "content-type") == Some(OCTETS) {
        // creation-with-upload: the body is the first chunk.
        let held = resumable::hold_new(info, resource, ctx).await;
        let offset = append(held, body, None, claims, ctx).await?;
        out.push(("upload-offset", offset.to_string()));
    }
    Ok(reply(201, "", out))
}

/// The total length of the partial uploads a final upload names, or why they cannot be
/// concatenated.
async fn concatenation_length(
    parts: &[String],
    claims: &Claims,
    ctx: &Ctx<'_>,
) -> Result<Result<u64, String>, Refusal> {
    let mut total = 0u64;
    for part in parts {
        let Ok(id) = part.parse() else {
            return Ok(Err(format!("{part} is not an upload.")));
        };
        let Held {
            resource, offset, ..
        } = resumable::existing(claims, id, ctx).await?;
        if resource.concat != Some(Concat::Partial) {
            return Ok(Err(format!("{part} is not a partial upload.")));
        }
        if resource.length != Some(offset) {
            return Ok(Err(format!(
                "The partial upload {part} is not finished ({offset} bytes so far)."
            )));
        }
        total += offset;
    }
    Ok(Ok(total))
}

/// `Upload-Metadata` as kept on the upload record.
fn metadata_record(raw: Option<&str>) -> Option<String> {
    raw.and_then(parse_metadata)
        .map(|m| json!({ "tus_metadata": m }).to_string())
}

fn head(r: &Resource, offset: u64, claims: &Claims) -> Reply {
    let mut h = match r.length {
        Some(l) => vec![("upload-length", l.to_string())],
        None => vec![("upload-defer-length", "1".into())],
    };
    if let Some(m) = &r.metadata {
        h.push(("upload-metadata", m.clone()));
    }
    match &r.concat {
        Some(Concat::Partial) => h.push(("upload-concat", "partial".into())),
        Some(Concat::Final(parts)) => {
            let urls: Vec<String> = parts.iter().map(|p| format!("{PREFIX}{p}")).collect();
            h.push(("upload-concat", format!("final;{}", urls.join(" "))));
        }
        None => {}
    }
    h.push(("upload-offset", offset.to_string()));
    h.push(("cache-control", "no-store".into()));
    h.push(("upload-expires", http_date(claims.expires)));
    reply(200, "", h)
}

/// `HEAD` of an upload. Every byte spooled but not stored (the final PATCH could not store it)
/// is stored first: a client seeing the whole offset stops, so the offset must mean stored.
async fn head_stored(held: Held, claims: &Claims, ctx: &Ctx<'_>) -> Result<Reply, Refusal> {
    let Held {
        info,
        mut resource,
        offset,
        ..
    } = held;
    if !resource.complete && resource.length == Some(offset) && resource.concat.is_none() {
        let metadata = metadata_record(resource.metadata.as_deref());
        resumable::finish(&info, resource.clone(), metadata, claims, ctx).await?;
        resource.complete = true;
    }
    Ok(head(&resource, offset, claims))
}

async fn patch<S>(
    mut held: Held,
    headers: &HeaderMap,
    body: S,
    claims: &Claims,
    ctx: &Ctx<'_>,
) -> Result<Reply, Refusal>
where
    S: Body,
{
    if header(headers, "content-type") != Some(OCTETS) {
        return Ok(error(&TusError::WrongContentType));
    }
    let Some(Ok(offset)) = header(headers, "upload-offset").map(str::parse::<u64>) else {
        return Ok(error(&TusError::NoOffset));
    };
    let checksum = match checksum(headers) {
        Ok(c) => c,
        Err(e) => return Ok(error(&e)),
    };
    if matches!(held.resource.concat, Some(Concat::Final(_))) {
        return Ok(error(&TusError::FinalPatched));
    }
    if offset != held.offset {
        return Ok(error(&TusError::OffsetMismatch {
            current: held.offset,
            sent: offset,
        }));
    }
    if held.resource.length.is_none() {
        if let Some(l) = header(headers, "upload-length") {
            let max = resumable::max_size(Some(claims), ctx);
            match l.parse::<u64>() {
                Ok(l) if l >= offset && l <= max => {
                    resumable::record_length(&mut held, l, ctx).await?;
                }
                _ => return Ok(error(&TusError::LengthOutOfRange)),
            }
        }
    }
    let new_offset = append(held, body, checksum, claims, ctx).await?;
    Ok(reply(
        204,
        "",
        vec![
            ("upload-offset", new_offset.to_string()),
            ("upload-expires", http_date(claims.expires)),
        ],
    ))
}

/// Appends a body at the upload's offset; stores the upload when its last byte is in (a
/// partial upload waits for its final upload). Returns the new offset.
async fn append<S>(
    held: Held,
    body: S,
    checksum: Option<(Algorithm, Vec<u8>)>,
    claims: &Claims,
    ctx: &Ctx<'_>,
) -> Result<u64, Refusal>
where
    S: Body,
{
    if held.resource.complete {
        return Ok(held.offset);
    }
    let new_offset = resumable::append(&held, body, checksum, claims, ctx)
        .await?
        .offset;
    let Held { info, resource, .. } = held;
    if resource.length == Some(new_offset) && resource.concat.is_none() {
        let metadata = metadata_record(resource.metadata.as_deref());
        resumable::finish(&info, resource, metadata, claims, ctx).await?;
    }
    Ok(new_offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_dates() {
        let m = parse_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential")
            .unwrap();
        assert_eq!(m["filename"], "world_domination_plan.pdf");
        assert_eq!(m["is_confidential"], "");
        assert!(parse_metadata("filename !!!").is_none());
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
