//! tus 1.0.0 at `/files/`: core (`OPTIONS`, `HEAD`, `PATCH`, 409 on an offset mismatch, 412
//! on a version mismatch) and the extensions creation, creation-with-upload,
//! creation-defer-length, termination, expiration (`Upload-Expires`), checksum (`sha1`,
//! `sha256`, `md5`; 460 on a mismatch, the chunk discarded) and concatenation (partial uploads
//! sent in parallel, then one final upload naming them). Every request is authorised by its
//! token: an upload token (`acl=/files/*`) creates and continues uploads of its account; a
//! per-upload token (Cloud VoD's `uploadToken`) continues its one upload, whose resource is
//! made on first use. `Upload-Metadata` is kept with the upload.

use super::resumable::{self, PREFIX};
use super::Reply;
use crate::error::TusError;
use crate::ingest::offset_spool::{Algorithm, Concat, Resource};
use crate::ingest::resumable::{self as core, Held, Refusal};
use crate::ingest::Body;
use crate::token::Claims;
use crate::upload::resumable::{parse_metadata, Append, Completion, Refused};
use crate::upload::{Offset, UploadId};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::{Map, Value};

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
        // Requests that write render the state machine's refusals themselves (`appended`).
        Refusal::Refused(_) => error(&TusError::LengthOutOfRange),
        Refusal::Moved => error(&TusError::Moved),
        Refusal::Hook(r) => error(&TusError::Refused(r)),
        Refusal::Unavailable => error(&TusError::Unavailable),
        Refusal::Full => error(&TusError::Full),
    }
}

/// The answer to a request that appended at `sent`: the new offset, or why not.
fn appended(
    result: Result<core::Appended, Refusal>,
    sent: Offset,
    status: u16,
    mut headers: Vec<(&'static str, String)>,
) -> Result<Reply, Refusal> {
    let offset = match result {
        Ok(a) => {
            headers.extend(super::hook_response(a.stored.as_ref()));
            a.offset
        }
        // A repeat of the request that completed the upload (its answer was lost).
        Err(Refusal::Refused(Refused::AlreadyComplete { offset })) if offset == sent => offset,
        Err(Refusal::Refused(
            Refused::AlreadyComplete { offset: current } | Refused::OffsetMismatch { current },
        )) => return Ok(error(&TusError::OffsetMismatch { current, sent })),
        Err(Refusal::Refused(Refused::InconsistentLength | Refused::TooLarge { .. })) => {
            return Ok(error(&TusError::LengthOutOfRange))
        }
        Err(refusal) => return Err(refusal),
    };
    headers.push(("upload-offset", offset.to_string()));
    Ok(reply(status, "", headers))
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
        let max = core::max_size(claims.as_ref(), ctx.core());
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
            match core::existing(&claims, id, ctx.core()).await {
                Err(refusal) => Err(refusal),
                Ok(held) => match m {
                    Method::HEAD => core::settle(held, &claims, ctx.core())
                        .await
                        .map(|held| head(&held, &claims)),
                    Method::PATCH => patch(held, headers, body, &claims, ctx).await,
                    _ => {
                        let Held { info, turn, .. } = held;
                        drop(turn);
                        core::drop_upload(info.id, ctx.core()).await;
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
    pub length: Option<Offset>,
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
            let parts: Option<Vec<UploadId>> = v["final;".len()..]
                .split_whitespace()
                .map(resumable::upload_of_url)
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
        (Some(l), None, _) => Some(l.parse::<Offset>().map_err(|_| TusError::BadLength)?),
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
    let info = core::create(claims, filename, &resource, ctx.core()).await?;
    let out = vec![
        ("location", format!("{PREFIX}{}", info.id)),
        ("upload-expires", http_date(claims.expires)),
    ];
    if matches!(resource.concat, Some(Concat::Final(_))) {
        // The partial uploads are all here: the final upload is stored at once.
        core::finish(&info, resource, claims, ctx.core()).await?;
    } else if header(headers, "content-type") == Some(OCTETS) {
        // creation-with-upload: the body is the first chunk.
        let held = core::hold_new(info, resource, ctx.core()).await;
        let start = at(Offset::ZERO, None);
        let result = core::append(held, &start, body, None, claims, ctx.core()).await;
        return appended(result, Offset::ZERO, 201, out);
    }
    Ok(reply(201, "", out))
}

/// An append at `offset` as tus asks for one: complete at the declared length.
fn at(offset: Offset, length: Option<Offset>) -> Append {
    Append {
        offset,
        length,
        completion: Completion::AtLength,
    }
}

/// The total length of the partial uploads a final upload names, or why they cannot be
/// concatenated.
async fn concatenation_length(
    parts: &[UploadId],
    claims: &Claims,
    ctx: &Ctx<'_>,
) -> Result<Result<Offset, String>, Refusal> {
    let mut total = Offset::ZERO;
    for &part in parts {
        let Held {
            resource, offset, ..
        } = core::existing(claims, part, ctx.core()).await?;
        if resource.concat != Some(Concat::Partial) {
            return Ok(Err(format!("{part} is not a partial upload.")));
        }
        if resource.length != Some(offset) {
            return Ok(Err(format!(
                "The partial upload {part} is not finished ({offset} bytes so far)."
            )));
        }
        total = total.after(offset.bytes());
    }
    Ok(Ok(total))
}

fn head(held: &Held, claims: &Claims) -> Reply {
    let r = &held.resource;
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
    h.push(("upload-offset", held.offset.to_string()));
    h.push(("cache-control", "no-store".into()));
    h.push(("upload-expires", http_date(claims.expires)));
    reply(200, "", h)
}

async fn patch<S>(
    held: Held,
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
    let Some(Ok(offset)) = header(headers, "upload-offset").map(str::parse::<Offset>) else {
        return Ok(error(&TusError::NoOffset));
    };
    let checksum = match checksum(headers) {
        Ok(c) => c,
        Err(e) => return Ok(error(&e)),
    };
    if matches!(held.resource.concat, Some(Concat::Final(_))) {
        return Ok(error(&TusError::FinalPatched));
    }
    // `Upload-Length` completes creation-defer-length; once the length is known it is ignored.
    let length = match header(headers, "upload-length").filter(|_| held.resource.length.is_none()) {
        Some(l) => match l.parse::<Offset>() {
            Ok(l) => Some(l),
            Err(_) => return Ok(error(&TusError::LengthOutOfRange)),
        },
        None => None,
    };
    let result = core::append(
        held,
        &at(offset, length),
        body,
        checksum,
        claims,
        ctx.core(),
    )
    .await;
    let expires = vec![("upload-expires", http_date(claims.expires))];
    appended(result, offset, 204, expires)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
