//! The Ankoder seed's HTML form upload: `POST /files/upload`, `multipart/form-data` with
//! `access_key`, `success_redirect`, `failed_redirect`, any `custom_*` fields and `file`.
//! On success a `303` to `success_redirect` with `video_id` added (`200` JSON without one);
//! on any failure a `303` to `failed_redirect` with `error` and `error_code` added, or a 4xx
//! JSON answer when there is none. Redirect targets must be absolute http(s) URLs. The
//! `custom_*` fields are kept with the upload for its notification.

use super::multipart::{Form, FormError};
use super::Reply;
use crate::error::AnkoderError;
use crate::ingest::Body;
use crate::ingest::{Ingest, IngestError, Receiving};
use crate::upload::Filename;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{json, Map, Value};

/// The form's path.
pub const PATH: &str = "/files/upload";

/// The largest text field accepted.
const MAX_FIELD: u64 = 16 * 1024;

/// `url` with query parameters added.
fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        query.append_pair(k, v);
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{}", query.finish())
}

fn redirect(location: String) -> Reply {
    Reply {
        status: 303,
        content_type: "text/plain",
        body: Bytes::new(),
        headers: vec![("location", location)],
    }
}

/// Whether a redirect target is an absolute http(s) URL with a host.
fn valid_target(url: &str) -> bool {
    reqwest::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

/// Reads the form, stores the file; the reply is the form's redirect or JSON.
pub async fn receive<S>(
    headers: &HeaderMap,
    body: S,
    ingest: &Ingest,
    form_max: u64,
    client: Option<std::net::IpAddr>,
) -> Reply
where
    S: Body,
{
    let Some(boundary) = super::multipart_boundary(headers) else {
        let (status, body) = AnkoderError::NotMultipart.render();
        return Reply::json(status, &body);
    };
    let mut form = Form::new(body, &boundary);
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut upload = None;
    let result = read(
        &mut form,
        &mut fields,
        (ingest, client),
        form_max,
        &mut upload,
    )
    .await;
    drop(form);
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let failed_redirect = get("failed_redirect")
        .filter(|u| valid_target(u))
        .map(str::to_owned);
    let outcome = match (result, upload) {
        (Ok(()), Some(upload)) => finish(upload, &fields, ingest).await,
        (Ok(()), None) => Err(AnkoderError::FileMissing),
        (Err(e), upload) => {
            if let Some(upload) = upload {
                ingest.cancel(upload).await;
            }
            Err(e)
        }
    };
    match outcome {
        Ok(video_id) => match get("success_redirect") {
            Some(url) => redirect(with_query(url, &[("video_id", &video_id)])),
            None => Reply::json(200, &json!({ "result": "success", "video_id": video_id })),
        },
        Err(e) => match failed_redirect {
            Some(url) => {
                let (_, code, message) = e.parts();
                redirect(with_query(
                    &url,
                    &[("error", &message), ("error_code", code)],
                ))
            }
            None => {
                let (status, body) = e.render();
                Reply::json(status, &body)
            }
        },
    }
}

/// Reads the fields before the file, checks them, streams the file, then reads the rest.
async fn read(
    form: &mut Form<'_>,
    fields: &mut Vec<(String, String)>,
    (ingest, client): (&Ingest, Option<std::net::IpAddr>),
    form_max: u64,
    upload: &mut Option<Receiving>,
) -> Result<(), AnkoderError> {
    let malformed = |e: FormError| AnkoderError::Malformed(e.to_string());
    while let Some(field) = form.next_field().await.map_err(malformed)? {
        let name = field.name.unwrap_or_default();
        if name != "file" {
            fields.push((name, form.text(MAX_FIELD).await.map_err(malformed)?));
            continue;
        }
        if upload.is_some() {
            return Err(AnkoderError::FileTwice);
        }
        let opened = open(fields, field.file_name.as_deref(), (ingest, client)).await?;
        let receiving = upload.insert(opened);
        receiving.cap(form_max);
        while let Some(piece) = form.chunk().await.map_err(malformed)? {
            receiving.append(piece).await.map_err(from_ingest)?;
        }
    }
    Ok(())
}

fn from_ingest(e: IngestError) -> AnkoderError {
    match e {
        IngestError::TooLarge { limit } => AnkoderError::TooLarge { limit },
        IngestError::QuotaExceeded => AnkoderError::QuotaExceeded,
        IngestError::Refused(refusal) => AnkoderError::Refused(refusal),
        other => unavailable(&other),
    }
}

fn unavailable(e: &dyn std::error::Error) -> AnkoderError {
    tracing::error!(error = %crate::error::chain(e), "Form upload failed at the edge.");
    AnkoderError::Unavailable
}

/// Checks the fields that came before the file and opens the upload.
async fn open(
    fields: &[(String, String)],
    filename: Option<&str>,
    (ingest, client): (&Ingest, Option<std::net::IpAddr>),
) -> Result<Receiving, AnkoderError> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    for name in ["success_redirect", "failed_redirect"] {
        if get(name).is_some_and(|u| !valid_target(u)) {
            return Err(AnkoderError::BadRedirect(name));
        }
    }
    let access_key = get("access_key")
        .filter(|k| !k.is_empty())
        .ok_or(AnkoderError::AccessKeyMissing)?;
    let owner = ingest
        .authenticate_access_key(access_key)
        .await
        .map_err(|e| unavailable(&e))?
        .ok_or(AnkoderError::AccessKeyInvalid)?
        .owner;
    let filename = Filename::clean(filename);
    ingest
        .create(&owner, "ankoder_form", filename.as_str(), client)
        .await
        .map_err(from_ingest)
}

/// Stores the upload with its `custom_*` fields; returns its id.
async fn finish(
    upload: Receiving,
    fields: &[(String, String)],
    ingest: &Ingest,
) -> Result<String, AnkoderError> {
    if upload.size() == 0 {
        ingest.cancel(upload).await;
        return Err(AnkoderError::FileEmpty);
    }
    let custom: Map<String, Value> = fields
        .iter()
        .filter(|(k, _)| k.starts_with("custom_"))
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let metadata = json!({ "custom_fields": custom }).to_string();
    let id = upload.id().to_string();
    ingest
        .complete(upload, None, Some(metadata))
        .await
        .map(|_| id)
        .map_err(from_ingest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_targets_and_queries() {
        assert!(valid_target("http://www.myapp.com/videos/upload/success"));
        assert!(valid_target("https://x.example/done?a=1"));
        for bad in [
            "javascript:alert(1)",
            "/relative",
            "ftp://x/y",
            "http://",
            "not a url",
        ] {
            assert!(!valid_target(bad), "{bad}");
        }
        assert_eq!(
            with_query("https://a/b", &[("video_id", "v1")]),
            "https://a/b?video_id=v1"
        );
        assert_eq!(
            with_query("https://a/b?x=1", &[("error", "a b&c")]),
            "https://a/b?x=1&error=a+b%26c"
        );
    }
}
