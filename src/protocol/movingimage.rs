//! movingimage's chunked upload at the URL `GET /v1/videos/{id}/url` hands out:
//! `POST /upload/{videoId}?__token__=…` with `Mi24-Upload-Total-Chunks` and
//! `Mi24-Upload-Current-Chunk` (from 1), the chunk as the body. `202` per chunk, `201` for
//! the request that completes the upload. Chunks arrive in any order; a repeat changes nothing;
//! a repeat with other bytes is `409`. The deprecated full-file form (`-F file=@…`) answers
//! `200`. Over the account's quota: `413` with movingimage's code 1101. `POST /v1/videos` with
//! a `url` opens the video here and fetches its file ([`crate::ingest::fetch`]); without one,
//! video creation is the origin's.

use super::Reply;
use crate::control::UploadInfo;
use crate::error::{MovingimageError, UploadsApiError};
use crate::ingest::chunk_spool::ChunkSpool;
use crate::ingest::chunked::{ChunkFailure, ChunkOutcome};
use crate::ingest::fetch::Fetcher;
use crate::ingest::Body;
use crate::ingest::{Ingest, IngestError};
use crate::token::{Claims, TokenError};
use crate::upload::chunk_set::MAX_CHUNKS;
use crate::upload::{Status, UploadId};
use http::HeaderMap;
use serde_json::{json, Value};
use std::sync::Arc;

/// The path prefix of upload URLs.
pub const PREFIX: &str = "/upload/";

/// What the adapter needs from its edge.
pub type Ctx<'a> = super::Ctx<'a, ChunkSpool>;

/// The video of an upload URL path, if it is one (a valid upload id).
#[must_use]
pub fn video_of(path: &str) -> Option<UploadId> {
    path.strip_prefix(PREFIX)?
        .trim_end_matches('/')
        .parse()
        .ok()
}

fn refuse(e: &MovingimageError) -> Reply {
    let (status, body) = e.render();
    Reply::json(status, &body)
}

/// The request's token, verified and scoped to `upload`.
///
/// # Errors
/// The reply for a missing, invalid, expired or out-of-scope token.
pub fn authorize(
    query: Option<&str>,
    headers: &HeaderMap,
    path: &str,
    upload: UploadId,
    ctx: &Ctx<'_>,
) -> Result<Claims, Reply> {
    let refuse = |e: TokenError| {
        let (status, body) = e.render();
        Reply::json(status, &body)
    };
    let claims = ctx.verify_token(query, headers).map_err(refuse)?;
    claims
        .permits(path, Some(&upload.to_string()), None)
        .map_err(|e| refuse(super::refused(e)))?;
    Ok(claims)
}

fn header_u32(headers: &HeaderMap, name: &str) -> Option<Result<u32, ()>> {
    headers.get(name).map(|v| {
        v.to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or(())
    })
}

/// Handles one request to an upload URL whose token [`authorize`] accepted.
pub async fn receive<S>(
    video: UploadId,
    claims: &Claims,
    headers: &HeaderMap,
    body: S,
    ctx: &Ctx<'_>,
) -> Reply
where
    S: Body,
{
    let info = match ctx.ingest.upload_info(video).await {
        Ok(Some(info)) => info,
        Ok(None) => return refuse(&MovingimageError::NotFound),
        Err(e) => return unavailable(&e),
    };
    if info.status != Status::Receiving.code() {
        return over(video, info.status);
    }
    match chunk_headers(headers) {
        Ok(Some((total, index))) => chunk(&info, total, index, body, claims, ctx).await,
        Ok(None) => full_file(&info, headers, body, claims, ctx).await,
        Err(e) => refuse(&e),
    }
}

/// The chunk a request carries, as (total chunks, index from 0), from its
/// `mi24-upload-total-chunks` and `mi24-upload-current-chunk` (from 1); `None` when it carries
/// the whole file (neither header). Pure: the fuzz target `chunk_headers` drives it.
///
/// # Errors
/// One header without the other, or numbers out of range.
pub(crate) fn chunk_headers(headers: &HeaderMap) -> Result<Option<(u32, u32)>, MovingimageError> {
    let total = header_u32(headers, "mi24-upload-total-chunks");
    let current = header_u32(headers, "mi24-upload-current-chunk");
    match (total, current) {
        (Some(Ok(total)), Some(Ok(current)))
            if (1..=MAX_CHUNKS).contains(&total) && (1..=total).contains(&current) =>
        {
            Ok(Some((total, current - 1)))
        }
        (None, None) => Ok(None),
        _ => Err(MovingimageError::ChunkHeaders),
    }
}

/// The answer for a request to an upload that is no longer receiving (its `status`): failed,
/// 410; else a retry after it was stored, which is complete, 201.
fn over(id: UploadId, status: i64) -> Reply {
    if status == Status::Failed.code() {
        return refuse(&MovingimageError::Failed);
    }
    Reply::json(201, &json!({ "videoId": id, "status": status }))
}

fn unavailable(e: &dyn std::error::Error) -> Reply {
    tracing::error!(error = %crate::error::chain(e), "Chunked upload failed at the edge.");
    refuse(&MovingimageError::Unavailable)
}

async fn chunk<S>(
    info: &UploadInfo,
    total: u32,
    index: u32,
    body: S,
    claims: &Claims,
    ctx: &Ctx<'_>,
) -> Reply
where
    S: Body,
{
    match ctx
        .ingest
        .put_chunk(ctx.spool, info, (index, total), body, claims.into(), false)
        .await
    {
        Ok(ChunkOutcome::Stored { received, total }) => Reply::json(
            202,
            &json!({ "videoId": info.id, "chunk": index + 1, "chunksReceived": received, "totalChunks": total }),
        ),
        Ok(ChunkOutcome::Complete(done)) => stored(201, &done),
        Err(ChunkFailure::Conflict(e)) => refuse(&MovingimageError::Conflict(e.to_string())),
        Err(ChunkFailure::QuotaExceeded) => refuse(&MovingimageError::QuotaExceeded),
        Err(ChunkFailure::TooLarge(limit)) => refuse(&MovingimageError::TooLarge { limit }),
        Err(ChunkFailure::BodyEnded) => refuse(&MovingimageError::BodyEnded),
        Err(ChunkFailure::HeldElsewhere(edge)) => {
            tracing::info!(upload_id = %info.id, holder = %edge, "A chunk came to this edge while another holds the upload's earlier chunks.");
            refuse(&MovingimageError::HeldElsewhere)
        }
        Err(ChunkFailure::NotReceiving(status)) => over(info.id, status),
        Err(ChunkFailure::Refused(refusal)) => refuse(&MovingimageError::Refused(refusal)),
        Err(e @ ChunkFailure::Unavailable(_)) => unavailable(&e),
    }
}

/// The path of movingimage's video creation (`POST`; the origin's unless it names a `url`).
pub const VIDEOS: &str = "/v1/videos";

/// `POST /v1/videos` naming a `url` to fetch the video from (`fileName` optional: the URL's
/// last segment).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FromUrl {
    url: String,
    file_name: Option<String>,
}

impl FromUrl {
    /// What a `POST /v1/videos` body asks, if it names a `url` (otherwise the request is the
    /// origin's).
    ///
    /// # Errors
    /// It names a `url` but is not such a request.
    pub fn of(body: &[u8]) -> Option<Result<Self, UploadsApiError>> {
        let value: Value = serde_json::from_slice(body).ok()?;
        value.get("url")?;
        Some(
            serde_json::from_value(value)
                .map_err(|e| UploadsApiError::Malformed(format!("the JSON body is invalid: {e}"))),
        )
    }
}

/// `POST /v1/videos` with a `url`: opens the video at this edge and fetches its file here;
/// `201` with its `videoId` and status 0 while it is fetched.
pub async fn video_from_url(
    headers: &HeaderMap,
    req: Result<FromUrl, UploadsApiError>,
    client: Option<std::net::IpAddr>,
    ingest: &Ingest,
    fetcher: &Arc<Fetcher>,
) -> Reply {
    let owner = super::uploads_api::owner(headers, ingest).await;
    let (owner, req) = match owner.and_then(|owner| req.map(|req| (owner, req))) {
        Ok(request) => request,
        Err(e) => return Reply::error(&e),
    };
    let what = ("movingimage", req.file_name.as_deref(), client);
    match fetcher.open(ingest, &owner, what, &req.url, None).await {
        Ok(id) => {
            let status = Status::Receiving;
            Reply::json(
                201,
                &json!({ "videoId": id, "status": status.code(), "status_text": status.text() }),
            )
        }
        Err(e) => Reply::error(&super::uploads_api::from_fetch(e)),
    }
}

/// The answer for a stored upload: its status, and the application's `pre-finish` answer.
fn stored(status: u16, done: &crate::ingest::Completed) -> Reply {
    let mut body = json!({
        "videoId": done.view.id,
        "status": done.view.status,
        "status_text": done.view.status_text,
    });
    if let Some(answer) = &done.view.hook_response {
        body["hook_response"] = answer.clone();
    }
    let mut reply = Reply::json(status, &body);
    reply.headers.extend(super::hook_response(Some(done)));
    reply
}

/// The deprecated full-file form: `multipart/form-data` with the video in `file`; `200`.
async fn full_file<S>(
    info: &UploadInfo,
    headers: &HeaderMap,
    body: S,
    claims: &Claims,
    ctx: &Ctx<'_>,
) -> Reply
where
    S: Body,
{
    let Some(boundary) = super::multipart_boundary(headers) else {
        return refuse(&MovingimageError::NotChunkNorForm);
    };
    let mut form = super::multipart::Form::new(body, &boundary);
    let mut upload = match ctx.ingest.resume(info, claims.into()).await {
        Ok(u) => u,
        Err(e) => return unavailable(&e),
    };
    let mut seen_file = false;
    let malformed = |e: super::multipart::FormError| MovingimageError::Malformed(e.to_string());
    let outcome: Result<(), Reply> = async {
        while let Some(field) = form.next_field().await.map_err(|e| refuse(&malformed(e)))? {
            if field.name.as_deref() != Some("file") {
                continue;
            }
            seen_file = true;
            while let Some(piece) = form.chunk().await.map_err(|e| refuse(&malformed(e)))? {
                upload.append(piece).await.map_err(|e| match e {
                    IngestError::QuotaExceeded => refuse(&MovingimageError::QuotaExceeded),
                    IngestError::Refused(refusal) => refuse(&MovingimageError::Refused(refusal)),
                    IngestError::TooLarge { limit } => {
                        refuse(&MovingimageError::TooLarge { limit })
                    }
                    other => unavailable(&other),
                })?;
            }
        }
        Ok(())
    }
    .await;
    drop(form);
    match outcome {
        Err(reply) => {
            ctx.ingest.cancel(upload).await;
            reply
        }
        Ok(()) if !seen_file || upload.size() == 0 => {
            ctx.ingest.cancel(upload).await;
            refuse(&MovingimageError::FileMissing)
        }
        Ok(()) => match ctx.ingest.complete(upload, None, None).await {
            Ok(done) => stored(200, &done),
            Err(IngestError::Refused(refusal)) => refuse(&MovingimageError::Refused(refusal)),
            Err(e) => unavailable(&e),
        },
    }
}
