//! S3's POST Object (browser form uploads) at `POST /s3/{bucket}`, where the bucket is a
//! pipeline id: Signature V2 (`AWSAccessKeyId`, `policy`, `signature`, as in the xvid seed's
//! `form_post_params`) and V4 (`x-amz-algorithm`, `x-amz-credential`, `x-amz-date`,
//! `x-amz-signature`), with the account's `access_key` and `secret`. The policy's conditions
//! are enforced, every field must be covered, the file is the last field (later fields are
//! ignored, as S3 does), and the answer is S3's: 204, `success_action_status`, or a 303 to
//! `success_action_redirect`, with `ETag` the MD5 of the object. Keys under `tmp/{bucket}/`
//! (xvid's staging names) land at the rest of the key, continuing that xvid session.

use super::multipart::Form;
use super::Reply;
use crate::control::KeyOwner;
use crate::error::S3Error;
use crate::ingest::chunk_spool::ChunkSpool;
use crate::ingest::chunked::{ChunkFailure, ChunkOutcome};
use crate::ingest::control_plane::ControlError;
use crate::ingest::Body;
use crate::ingest::{Allowance, Ingest, IngestError, Receiving, Record};
use crate::s3_policy::{self, PolicyError};
use crate::store::ObjectKey;
use crate::upload::chunk_set::MAX_CHUNKS;
use bytes::Bytes;
use http::HeaderMap;

/// The path prefix of the endpoint.
pub const PREFIX: &str = "/s3/";

/// The largest text field accepted (S3 allows 20 KB of policy).
const MAX_FIELD: u64 = 20 * 1024;

/// The bucket named by a request path `/s3/{bucket}` (a trailing slash is allowed).
#[must_use]
pub fn bucket_of(path: &str) -> Option<&str> {
    let bucket = path.strip_prefix(PREFIX)?.trim_end_matches('/');
    (!bucket.is_empty() && !bucket.contains('/')).then_some(bucket)
}

fn error_reply(e: &S3Error) -> Reply {
    let (status, body) = e.render();
    Reply {
        status,
        content_type: "application/xml",
        body: Bytes::from(body),
        headers: Vec::new(),
    }
}

fn from_ingest(e: IngestError) -> S3Error {
    match e {
        IngestError::TooLarge { .. } => S3Error::EntityTooLarge,
        IngestError::QuotaExceeded => S3Error::QuotaExceeded,
        IngestError::Origin(ControlError::NotFound) => S3Error::NoSuchBucket,
        IngestError::SessionClosed => S3Error::AccessDenied(
            "The upload session this form belongs to has finished or expired; open a new session."
                .into(),
        ),
        // S3 has one status for a refusal; the application's message says why.
        IngestError::Refused(refusal) => S3Error::AccessDenied(refusal.message),
        other => {
            tracing::error!(error = %crate::error::chain(&other), "S3 POST failed at the edge.");
            S3Error::ServiceUnavailable
        }
    }
}

/// The form fields that came before the file.
pub(crate) struct Fields(pub(crate) Vec<(String, String)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn require(&self, name: &str) -> Result<&str, S3Error> {
        self.get(name).ok_or_else(|| {
            S3Error::InvalidArgument(format!("Bucket POST must contain a field named '{name}'."))
        })
    }
}

/// A V4 credential scope: `AKID/YYYYMMDD/REGION/SERVICE/aws4_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Credential<'a> {
    pub access_key: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

/// How a form is signed, as its fields say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signature<'a> {
    /// `AWSAccessKeyId` and `signature`.
    V2 {
        access_key: &'a str,
        signature: &'a str,
    },
    /// `x-amz-algorithm`, `x-amz-credential` and `x-amz-signature`.
    V4 {
        credential: Credential<'a>,
        signature: &'a str,
    },
}

/// The form's signature fields, read (pure: the fuzz target `s3_post` drives it).
///
/// # Errors
/// A field missing, an algorithm other than AWS4-HMAC-SHA256, or a malformed credential.
pub(crate) fn signature(fields: &Fields) -> Result<Signature<'_>, S3Error> {
    let Some(algorithm) = fields.get("x-amz-algorithm") else {
        return Ok(Signature::V2 {
            access_key: fields.require("AWSAccessKeyId")?,
            signature: fields.require("signature")?,
        });
    };
    if algorithm != "AWS4-HMAC-SHA256" {
        return Err(S3Error::InvalidArgument(
            "x-amz-algorithm must be AWS4-HMAC-SHA256.".into(),
        ));
    }
    let scope: Vec<&str> = fields.require("x-amz-credential")?.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(S3Error::InvalidArgument(
            "x-amz-credential is not AKID/DATE/REGION/SERVICE/aws4_request.".into(),
        ));
    };
    Ok(Signature::V4 {
        credential: Credential {
            access_key,
            date,
            region,
            service,
        },
        signature: fields.require("x-amz-signature")?,
    })
}

/// Checks the form's signature and policy; returns the account and the size range allowed.
async fn authorize(
    fields: &Fields,
    (bucket, region): (&str, Option<&str>),
    ingest: &Ingest,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(KeyOwner, Option<(u64, u64)>), S3Error> {
    let policy = fields.require("policy")?;
    let signature = signature(fields)?;
    let access_key = match &signature {
        Signature::V2 { access_key, .. } => access_key,
        Signature::V4 { credential, .. } => credential.access_key,
    };
    let found = ingest
        .authenticate_access_key(access_key)
        .await
        .map_err(from_ingest)?
        .ok_or(S3Error::InvalidAccessKeyId)?;
    let signed = match signature {
        Signature::V2 { signature, .. } => s3_policy::verify_v2(&found.secret, policy, signature),
        Signature::V4 {
            credential,
            signature,
        } => s3_policy::verify_v4(
            &found.secret,
            credential.date,
            credential.region,
            credential.service,
            policy,
            signature,
        ),
    };
    if !signed {
        return Err(S3Error::SignatureDoesNotMatch);
    }
    let accepted = s3_policy::check(policy, &fields.0, bucket, now).map_err(|e| match e {
        PolicyError::Malformed(_) => S3Error::InvalidArgument(e.to_string()),
        other => S3Error::AccessDenied(other.to_string()),
    })?;
    if let Some(wanted) = fields.get(crate::control::REGION_FORM_FIELD) {
        if region != Some(wanted) {
            return Err(S3Error::AccessDenied(format!(
                "This form is for the upload edges of region {wanted}; post it to the form_post_url the API returned."
            )));
        }
    }
    let owner = KeyOwner {
        pipeline_id: bucket.to_owned(),
        ..found.owner
    };
    Ok((owner, accepted.length_range))
}

/// Reads the form, checks it, streams the file into an upload; the reply is S3's.
pub async fn receive<S>(
    (bucket, region, client): (&str, Option<&str>, Option<std::net::IpAddr>),
    headers: &HeaderMap,
    body: S,
    ingest: &Ingest,
    spool: &ChunkSpool,
    now: chrono::DateTime<chrono::Utc>,
) -> Reply
where
    S: Body,
{
    let Some(boundary) = super::multipart_boundary(headers) else {
        return error_reply(&S3Error::MalformedPostRequest);
    };
    let mut form = Form::new(body, &boundary);
    let mut upload = None;
    match post(
        &mut form,
        (bucket, region, client),
        (ingest, spool),
        now,
        &mut upload,
    )
    .await
    {
        Ok(reply) => {
            // Fields after the file are ignored, as S3 does; reading them keeps the
            // connection usable. After an error nothing more is read (the edge closes the
            // connection rather than receive a refused file).
            while let Ok(Some(_)) = form.next_field().await {}
            reply
        }
        Err(e) => {
            drop(form);
            if let Some(upload) = upload {
                ingest.cancel(upload).await;
            }
            error_reply(&e)
        }
    }
}

/// The text fields before the file (S3 ignores what follows it), and the file's name.
async fn fields_before_file(form: &mut Form<'_>) -> Result<(Fields, Option<String>), S3Error> {
    let mut fields = Fields(Vec::new());
    loop {
        let Some(field) = form
            .next_field()
            .await
            .map_err(|_| S3Error::MalformedPostRequest)?
        else {
            return Err(S3Error::InvalidArgument(
                "POST requires exactly one file upload per request.".into(),
            ));
        };
        let name = field.name.clone().unwrap_or_default();
        if name.eq_ignore_ascii_case("file") {
            return Ok((fields, field.file_name));
        }
        let value = form
            .text(MAX_FIELD)
            .await
            .map_err(|_| S3Error::MalformedPostRequest)?;
        fields.0.push((name, value));
    }
}

async fn post(
    form: &mut Form<'_>,
    (bucket, region, client): (&str, Option<&str>, Option<std::net::IpAddr>),
    (ingest, spool): (&Ingest, &ChunkSpool),
    now: chrono::DateTime<chrono::Utc>,
    upload: &mut Option<Receiving>,
) -> Result<Reply, S3Error> {
    let (fields, file_name) = fields_before_file(form).await?;
    let (owner, length_range) = authorize(&fields, (bucket, region), ingest, now).await?;
    let chunking = plupload_chunk(&fields)?;
    let filename = file_name.unwrap_or_else(|| "file".to_owned());
    let key = fields.require("key")?.replace("${filename}", &filename);
    let relative = key
        .strip_prefix(&format!("tmp/{bucket}/"))
        .unwrap_or(&key)
        .to_owned();
    ObjectKey::new(relative.clone())
        .map_err(|e| S3Error::InvalidArgument(format!("Invalid key: {e}.")))?;
    let name = relative.rsplit('/').next().unwrap_or(&relative).to_owned();
    let record = Record {
        flavour: "s3_post",
        filename: &name,
        relative_key: Some(&relative),
        session: fields.get(crate::control::SESSION_FORM_FIELD),
        client,
        ..Record::default()
    };
    if let Some(chunk) = chunking {
        let md5 = post_chunk(
            form,
            (&owner, &record),
            length_range,
            chunk,
            (ingest, spool),
        )
        .await?;
        return Ok(success(&fields, bucket, &key, md5.as_deref()));
    }
    let receiving = upload.insert(
        ingest
            .create_at(&owner, &record)
            .await
            .map_err(from_ingest)?
            .with_md5(),
    );
    let max = length_range.map_or(u64::MAX, |(_, max)| max);
    while let Some(chunk) = form
        .chunk()
        .await
        .map_err(|_| S3Error::MalformedPostRequest)?
    {
        if receiving.size() + chunk.len() as u64 > max {
            return Err(S3Error::EntityTooLarge);
        }
        receiving.append(chunk).await.map_err(from_ingest)?;
    }
    if length_range.is_some_and(|(min, _)| receiving.size() < min) {
        return Err(S3Error::EntityTooSmall);
    }
    let Some(receiving) = upload.take() else {
        return Err(S3Error::InternalError);
    };
    tracing::info!(upload_id = %receiving.id(), bytes = receiving.size(), "S3 POST received.");
    let done = ingest
        .complete(receiving, None, None)
        .await
        .map_err(from_ingest)?;
    Ok(success(&fields, bucket, &key, done.md5.as_deref()))
}

/// One plupload chunk of several, spooled until all are in (the policy's
/// `content-length-range` capping the whole file); the object's MD5 once the last one is in.
async fn post_chunk(
    form: &mut Form<'_>,
    (owner, record): (&KeyOwner, &Record<'_>),
    length_range: Option<(u64, u64)>,
    chunk: (u32, u32),
    (ingest, spool): (&Ingest, &ChunkSpool),
) -> Result<Option<String>, S3Error> {
    let (info, _) = ingest
        .open_record(owner, record)
        .await
        .map_err(from_ingest)?;
    let mut allowance = Allowance::from(owner);
    if let Some((_, max)) = length_range {
        allowance.max_size = Some(allowance.max_size.map_or(max, |m| m.min(max)));
    }
    match ingest
        .put_chunk(spool, &info, chunk, form.data(), allowance, true)
        .await
    {
        Ok(ChunkOutcome::Stored { .. }) => Ok(None),
        Ok(ChunkOutcome::Complete(done)) => Ok(done.md5),
        Err(ChunkFailure::Conflict(e)) => Err(S3Error::InvalidArgument(format!("{e}."))),
        Err(ChunkFailure::TooLarge(_)) => Err(S3Error::EntityTooLarge),
        Err(ChunkFailure::QuotaExceeded) => Err(S3Error::QuotaExceeded),
        Err(ChunkFailure::BodyEnded) => Err(S3Error::MalformedPostRequest),
        Err(ChunkFailure::HeldElsewhere(_)) => Err(S3Error::OperationAborted),
        Err(ChunkFailure::NotReceiving(_)) => Err(S3Error::NoSuchUpload),
        Err(ChunkFailure::Refused(refusal)) => Err(S3Error::AccessDenied(refusal.message)),
        Err(e @ ChunkFailure::Unavailable(_)) => {
            tracing::error!(error = %crate::error::chain(&e), "S3 POST chunk failed at the edge.");
            Err(S3Error::ServiceUnavailable)
        }
    }
}

/// plupload's `chunk` (from 0) of `chunks`, when the form is one chunk of several.
pub(crate) fn plupload_chunk(fields: &Fields) -> Result<Option<(u32, u32)>, S3Error> {
    let number = |name: &str| {
        fields
            .get(name)
            .map(|v| {
                v.trim().parse::<u32>().map_err(|_| {
                    S3Error::InvalidArgument(format!("{name} must be a whole number."))
                })
            })
            .transpose()
    };
    match (number("chunk")?, number("chunks")?) {
        (_, None | Some(0 | 1)) => Ok(None),
        (Some(chunk), Some(chunks)) if chunk < chunks && chunks <= MAX_CHUNKS => {
            Ok(Some((chunk, chunks)))
        }
        (_, Some(chunks)) => Err(S3Error::InvalidArgument(format!(
            "chunk must be a number from 0 to {} (chunks is {chunks}, at most {MAX_CHUNKS}).",
            chunks.saturating_sub(1)
        ))),
    }
}

/// S3's success answer for the form's `success_action_redirect` / `success_action_status`;
/// `md5` is the whole object's (absent after an intermediate chunk).
fn success(fields: &Fields, bucket: &str, key: &str, md5: Option<&str>) -> Reply {
    let etag = md5.map(|m| format!("\"{m}\"")).unwrap_or_default();
    let location = format!("{PREFIX}{bucket}/{key}");
    let mut reply = Reply {
        status: 204,
        content_type: "application/xml",
        body: Bytes::new(),
        headers: vec![("location", location.clone())],
    };
    if md5.is_some() {
        reply.headers.push(("etag", etag.clone()));
    }
    let redirect = fields
        .get("success_action_redirect")
        .or_else(|| fields.get("redirect"));
    if let Some(url) = redirect.filter(|u| u.starts_with("http://") || u.starts_with("https://")) {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("bucket", bucket)
            .append_pair("key", key)
            .append_pair("etag", &etag)
            .finish();
        let sep = if url.contains('?') { '&' } else { '?' };
        reply.status = 303;
        reply.headers[0] = ("location", format!("{url}{sep}{query}"));
        return reply;
    }
    match fields.get("success_action_status") {
        Some("200") => reply.status = 200,
        Some("201") => {
            let esc = |s: &str| {
                s.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
            };
            reply.status = 201;
            reply.body = Bytes::from(format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>{}</Location><Bucket>{}</Bucket>\
                 <Key>{}</Key><ETag>{}</ETag></PostResponse>",
                esc(&location),
                esc(bucket),
                esc(key),
                esc(&etag)
            ));
        }
        _ => {}
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_come_from_the_path() {
        assert_eq!(
            bucket_of("/s3/53a1ac4914eaa8ffa4fce91b"),
            Some("53a1ac4914eaa8ffa4fce91b")
        );
        assert_eq!(bucket_of("/s3/p1/"), Some("p1"));
        assert_eq!(bucket_of("/s3/"), None);
        assert_eq!(bucket_of("/s3/p1/key"), None);
        assert_eq!(bucket_of("/other"), None);
    }

    #[test]
    fn success_answers_follow_the_form() {
        let f = |pairs: &[(&str, &str)]| {
            Fields(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        let r = success(&f(&[]), "b", "k", Some("abc"));
        assert_eq!((r.status, r.body.len()), (204, 0));
        assert!(r.headers.contains(&("etag", "\"abc\"".into())));
        let r = success(
            &f(&[("success_action_status", "201")]),
            "b",
            "a&b",
            Some("abc"),
        );
        assert_eq!(r.status, 201);
        let body = String::from_utf8(r.body.to_vec()).unwrap();
        assert!(
            body.contains("<Key>a&amp;b</Key>") && body.contains("<ETag>&quot;abc&quot;</ETag>")
                || body.contains("<ETag>\"abc\"</ETag>"),
            "{body}"
        );
        let r = success(
            &f(&[("success_action_redirect", "https://app.example/done?x=1")]),
            "b",
            "k",
            Some("abc"),
        );
        assert_eq!(r.status, 303);
        assert!(r.headers.iter().any(|(n, v)| *n == "location"
            && v.starts_with("https://app.example/done?x=1&bucket=b&key=k&etag=")));
        let r = success(
            &f(&[("success_action_redirect", "javascript:alert(1)")]),
            "b",
            "k",
            Some("abc"),
        );
        assert_eq!(r.status, 204);
    }
}
