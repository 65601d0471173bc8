//! The Uploads API seed's upload: `POST /api/client/v1/uploads`, `multipart/form-data` with
//! the file in `video` and the collection path in `folder`, `Authorization: Bearer <api_key>`;
//! `202` with the seed's body once the file is stored. Fields may come in either order; the
//! file streams into the ingest core as it arrives.
//!
//! Two steps so a listener can refuse before reading the body: [`authorize`] (headers only),
//! then [`receive`].

use super::multipart::{Form, FormError};
use super::Reply;
use crate::control::KeyOwner;
use crate::error::UploadsApiError;
use crate::ingest::Body;
use crate::ingest::{Ingest, IngestError, Receiving};
use crate::upload::Filename;
use http::HeaderMap;
use serde_json::json;

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
    boundary: String,
    client: Option<std::net::IpAddr>,
}

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

/// Checks the key, the content type and the declared length.
///
/// # Errors
/// The reply to send instead of reading the body.
pub async fn authorize(
    headers: &HeaderMap,
    client: Option<std::net::IpAddr>,
    ingest: &Ingest,
) -> Result<Authorized, Reply> {
    let key =
        super::bearer(headers).ok_or_else(|| Reply::error(&UploadsApiError::Unauthenticated))?;
    let owner = ingest
        .authenticate(key)
        .await
        .map_err(|e| Reply::error(&from_ingest(e)))?
        .ok_or_else(|| Reply::error(&UploadsApiError::Unauthenticated))?;
    let boundary = super::multipart_boundary(headers).ok_or_else(|| {
        Reply::error(&UploadsApiError::Malformed(
            "expected Content-Type: multipart/form-data with a boundary".into(),
        ))
    })?;
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

/// Reads the form and stores the video; the reply is the seed's `202` or an error.
pub async fn receive<S>(auth: Authorized, body: S, ingest: &Ingest) -> Reply
where
    S: Body,
{
    let mut form = Form::new(body, &auth.boundary);
    let mut upload: Option<Receiving> = None;
    let outcome = read_form(&mut form, &auth, ingest, &mut upload).await;
    drop(form);
    let result = match (outcome, upload) {
        (Ok(folder), Some(upload)) => finish(upload, folder, ingest).await,
        (Ok(_), None) => Err(invalid("video", "The video field is required.")),
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
/// cancel it on error); returns `folder`.
async fn read_form(
    form: &mut Form<'_>,
    auth: &Authorized,
    ingest: &Ingest,
    upload: &mut Option<Receiving>,
) -> Result<Option<String>, UploadsApiError> {
    let malformed = |e: FormError| UploadsApiError::Malformed(e.to_string());
    let mut folder = None;
    while let Some(field) = form.next_field().await.map_err(malformed)? {
        match field.name.as_deref() {
            // UTF-8 takes at most four bytes per character.
            Some("folder") => {
                folder = Some(form.text(MAX_FOLDER as u64 * 4).await.map_err(malformed)?)
            }
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
    Ok(folder)
}

async fn finish(
    upload: Receiving,
    folder: Option<String>,
    ingest: &Ingest,
) -> Result<crate::ingest::Completed, UploadsApiError> {
    let folder = folder.map(|f| f.trim().to_owned()).unwrap_or_default();
    let problem = if folder.is_empty() {
        Some(invalid("folder", "The folder field is required."))
    } else if folder.chars().count() > MAX_FOLDER || folder.chars().any(char::is_control) {
        Some(invalid(
            "folder",
            "The folder must be at most 1024 characters, without control characters.",
        ))
    } else if upload.size() == 0 {
        Some(invalid("video", "The video file is empty."))
    } else {
        None
    };
    if let Some(problem) = problem {
        ingest.cancel(upload).await;
        return Err(problem);
    }
    tracing::info!(upload_id = %upload.id(), bytes = upload.size(), "Upload received.");
    ingest
        .complete(upload, Some(folder), None)
        .await
        .map_err(from_ingest)
}
