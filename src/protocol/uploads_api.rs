//! The Uploads API seed's upload: `POST /api/client/v1/uploads`, `multipart/form-data` with
//! the file in `video` and the collection path in `folder`, `Authorization: Bearer <api_key>`;
//! `202` with the seed's body once the file is stored. Fields may come in either order; the
//! file streams into the ingest core as it arrives. Instead of `video`, a `url` (in the form, or
//! a JSON body `{"url": …, "folder": …}`) names a file this edge fetches
//! ([`crate::ingest::fetch`]): `202` at once, with status 0 while it is fetched.
//!
//! Two steps so a listener can refuse before reading the body: [`authorize`] (headers only),
//! then [`receive`].

use super::multipart::{Form, FormError};
use super::Reply;
use crate::control::KeyOwner;
use crate::error::UploadsApiError;
use crate::ingest::fetch::{Fetcher, NotOpened};
use crate::ingest::Body;
use crate::ingest::{Ingest, IngestError, Receiving};
use crate::upload::Filename;
use http::HeaderMap;
use serde_json::json;
use std::sync::Arc;

/// The path of the upload endpoint.
pub const PATH: &str = "/api/client/v1/uploads";

/// The flavour name stored with each upload.
const FLAVOUR: &str = "uploads_api";

/// The longest `folder` accepted.
const MAX_FOLDER: usize = 1024;

/// A request whose headers passed: who uploads and how the body is delimited.
#[derive(Debug)]
pub struct Authorized {
    owner: KeyOwner,
    /// The form's boundary; `None` for a JSON body.
    boundary: Option<String>,
    client: Option<std::net::IpAddr>,
}

/// The longest JSON body (a URL and a folder).
const MAX_JSON: usize = 16 * 1024;

/// The longest `url` accepted.
const MAX_URL: usize = 8 * 1024;

fn from_ingest(e: IngestError) -> UploadsApiError {
    match e {
        IngestError::TooLarge { limit } => UploadsApiError::TooLarge { limit },
        IngestError::QuotaExceeded => UploadsApiError::QuotaExceeded,
        IngestError::Refused(refusal) => UploadsApiError::Refused(refusal),
        other if crate::error::disk_full(&other) => {
            tracing::warn!(error = %crate::error::chain(&other), "The edge's disk is full; an upload was refused.");
            UploadsApiError::Full
        }
        other => {
            tracing::error!(error = %crate::error::chain(&other), "Upload failed at the edge.");
            UploadsApiError::Unavailable
        }
    }
}

/// The account behind the request's API key (`Authorization: Bearer`).
///
/// # Errors
/// No key or an unknown one (401), or the origin cannot be asked (503).
pub async fn owner(headers: &HeaderMap, ingest: &Ingest) -> Result<KeyOwner, UploadsApiError> {
    let key = super::bearer(headers).ok_or(UploadsApiError::Unauthenticated)?;
    ingest
        .authenticate(key)
        .await
        .map_err(from_ingest)?
        .ok_or(UploadsApiError::Unauthenticated)
}

/// Checks the key, the content type and the declared length.
///
/// # Errors
/// The reply to send instead of reading the body.
pub async fn authorize(
    headers: &HeaderMap,
    client: Option<std::net::IpAddr>,
    ingest: &Ingest,
) -> Result<Authorized, Reply> {
    let owner = owner(headers, ingest).await.map_err(|e| Reply::error(&e))?;
    let json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().starts_with("application/json"));
    let boundary = super::multipart_boundary(headers);
    if boundary.is_none() && !json {
        return Err(Reply::error(&UploadsApiError::Malformed(
            "expected Content-Type: multipart/form-data with a boundary, or application/json with a url".into(),
        )));
    }
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        // The body includes the form's framing, so allow a little over the file limit.
        let limit = ingest.max_upload_size();
        if len > limit.saturating_add(64 * 1024) {
            return Err(Reply::error(&UploadsApiError::TooLarge { limit }));
        }
    }
    Ok(Authorized {
        owner,
        boundary,
        client,
    })
}

/// Reads the form (or JSON body) and stores the video, or starts fetching it from its URL;
/// the reply is the seed's `202` or an error.
pub async fn receive<S>(auth: Authorized, body: S, ingest: &Ingest, fetcher: &Arc<Fetcher>) -> Reply
where
    S: Body,
{
    let Some(boundary) = &auth.boundary else {
        return match read_json(body).await {
            Ok((url, folder)) => fetch(&auth, &url, folder, ingest, fetcher).await,
            Err(e) => Reply::error(&e),
        };
    };
    let mut form = Form::new(body, boundary);
    let mut upload: Option<Receiving> = None;
    let outcome = read_form(&mut form, &auth, ingest, &mut upload).await;
    drop(form);
    let result = match (outcome, upload) {
        (Ok((folder, None)), Some(upload)) => finish(upload, folder, ingest).await,
        (Ok((folder, Some(url))), None) => {
            return fetch(&auth, &url, folder, ingest, fetcher).await
        }
        (Ok((_, Some(_))), Some(upload)) => {
            ingest.cancel(upload).await;
            Err(invalid("url", "Send either a video or a url, not both."))
        }
        (Ok((_, None)), None) => Err(invalid("video", "The video field is required.")),
        (Err(e), Some(upload)) => {
            ingest.cancel(upload).await;
            Err(e)
        }
        (Err(e), None) => Err(e),
    };
    match result {
        Ok(done) => {
            let mut body = json!({
                "message": "Upload accepted and is now being processed.",
                "data": { "id": done.view.id, "status": done.view.status, "status_text": done.view.status_text },
            });
            if let Some(answer) = &done.view.hook_response {
                body["data"]["hook_response"] = answer.clone();
            }
            let mut reply = Reply::json(202, &body);
            reply.headers.extend(super::hook_response(Some(&done)));
            reply
        }
        Err(e) => Reply::error(&e),
    }
}

fn invalid(field: &'static str, message: &str) -> UploadsApiError {
    UploadsApiError::Invalid {
        field,
        message: message.to_owned(),
    }
}

/// Reads every field; streams `video` into a new upload (left in `upload` so the caller can
/// cancel it on error); returns `folder` and `url`.
async fn read_form(
    form: &mut Form<'_>,
    auth: &Authorized,
    ingest: &Ingest,
    upload: &mut Option<Receiving>,
) -> Result<(Option<String>, Option<String>), UploadsApiError> {
    let malformed = |e: FormError| UploadsApiError::Malformed(e.to_string());
    let mut folder = None;
    let mut url = None;
    while let Some(field) = form.next_field().await.map_err(malformed)? {
        match field.name.as_deref() {
            // UTF-8 takes at most four bytes per character.
            Some("folder") => {
                folder = Some(form.text(MAX_FOLDER as u64 * 4).await.map_err(malformed)?)
            }
            Some("url") => url = Some(form.text(MAX_URL as u64).await.map_err(malformed)?),
            Some("video") => {
                if upload.is_some() {
                    return Err(invalid("video", "Send exactly one video field."));
                }
                let filename = Filename::clean(field.file_name.as_deref());
                let receiving = upload.insert(
                    ingest
                        .create(&auth.owner, FLAVOUR, filename.as_str(), auth.client)
                        .await
                        .map_err(from_ingest)?,
                );
                while let Some(chunk) = form.chunk().await.map_err(malformed)? {
                    receiving.append(chunk).await.map_err(from_ingest)?;
                }
            }
            // Other fields are skipped unread by the next `next_field`.
            _ => {}
        }
    }
    Ok((folder, url))
}

/// A JSON body's `url` and `folder`.
async fn read_json<S: Body>(body: S) -> Result<(String, Option<String>), UploadsApiError> {
    #[derive(serde::Deserialize)]
    struct FromUrl {
        url: Option<String>,
        folder: Option<String>,
    }
    let mut body = std::pin::pin!(body);
    let mut bytes = Vec::new();
    while let Some(piece) = futures_util::StreamExt::next(&mut body).await {
        let piece = piece.map_err(|e| UploadsApiError::Malformed(e.to_string()))?;
        bytes.extend_from_slice(&piece);
        if bytes.len() > MAX_JSON {
            return Err(UploadsApiError::Malformed(format!(
                "the JSON body is larger than {MAX_JSON} bytes"
            )));
        }
    }
    let parsed: FromUrl = serde_json::from_slice(&bytes)
        .map_err(|e| UploadsApiError::Malformed(format!("the JSON body is invalid: {e}")))?;
    let url = parsed.url.ok_or_else(|| {
        invalid(
            "url",
            "The url field is required (or send the video as a form).",
        )
    })?;
    Ok((url, parsed.folder))
}

/// The `folder` field, checked.
fn checked_folder(folder: Option<String>) -> Result<String, UploadsApiError> {
    let folder = folder.map(|f| f.trim().to_owned()).unwrap_or_default();
    if folder.is_empty() {
        Err(invalid("folder", "The folder field is required."))
    } else if folder.chars().count() > MAX_FOLDER || folder.chars().any(char::is_control) {
        Err(invalid(
            "folder",
            "The folder must be at most 1024 characters, without control characters.",
        ))
    } else {
        Ok(folder)
    }
}

/// Opens an upload for the file at `url` and starts fetching it: `202` with status 0.
async fn fetch(
    auth: &Authorized,
    url: &str,
    folder: Option<String>,
    ingest: &Ingest,
    fetcher: &Arc<Fetcher>,
) -> Reply {
    let folder = match checked_folder(folder) {
        Ok(folder) => folder,
        Err(e) => return Reply::error(&e),
    };
    let what = (FLAVOUR, None, auth.client);
    match fetcher
        .open(ingest, &auth.owner, what, url, Some(folder))
        .await
    {
        Ok(id) => {
            let status = crate::upload::Status::Receiving;
            Reply::json(
                202,
                &json!({
                    "message": "Upload accepted; the file is being fetched from its URL.",
                    "data": { "id": id, "status": status.code(), "status_text": status.text() },
                }),
            )
        }
        Err(e) => Reply::error(&from_fetch(e)),
    }
}

/// Why an upload from a URL was not opened, as the Uploads API says it.
pub(super) fn from_fetch(e: NotOpened) -> UploadsApiError {
    match e {
        NotOpened::Url(why) => invalid("url", &format!("The url cannot be fetched: {why}.")),
        NotOpened::Ingest(e) => from_ingest(e),
        NotOpened::NotWritten(e) if crate::error::disk_full(&e) => UploadsApiError::Full,
        NotOpened::NotWritten(e) => {
            tracing::error!(error = %e, "Could not write a fetch down; the upload was cancelled.");
            UploadsApiError::Unavailable
        }
    }
}

async fn finish(
    upload: Receiving,
    folder: Option<String>,
    ingest: &Ingest,
) -> Result<crate::ingest::Completed, UploadsApiError> {
    let checked = checked_folder(folder).and_then(|folder| match upload.size() {
        0 => Err(invalid("video", "The video file is empty.")),
        _ => Ok(folder),
    });
    let folder = match checked {
        Ok(folder) => folder,
        Err(problem) => {
            ingest.cancel(upload).await;
            return Err(problem);
        }
    };
    tracing::info!(upload_id = %upload.id(), bytes = upload.size(), "Upload received.");
    ingest
        .complete(upload, Some(folder), None)
        .await
        .map_err(from_ingest)
}
