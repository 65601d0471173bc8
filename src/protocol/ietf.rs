//! The IETF "Resumable Uploads for HTTP" draft (draft-ietf-httpbis-resumable-upload), interop
//! versions 3 to 8 (`Upload-Draft-Interop-Version`; each iOS release speaks one), at the same
//! `/files/` resources as tus. Creation is any `POST` or `PUT` to `/files/` carrying
//! `Upload-Complete` (`Upload-Incomplete` in version 3); the edge announces the upload resource
//! with a `104 Upload Resumption Supported` interim response (`Location`, `Upload-Limit`) before
//! reading the body. Then `HEAD` retrieves the offset, `PATCH` appends
//! (`application/partial-upload` from version 6), `DELETE` cancels. Offset mismatches and
//! inconsistent lengths are answered with the draft's problem details.
//!
//! A client naming a version this edge does not know is served by the newest one, without the
//! interim response (which it could not read). Must not depend on an HTTP server: creation is
//! split in [`open`] and [`receive`] so the listener can send the interim response in between.

use super::resumable::PREFIX;
use super::tus::header;
use super::Reply;
use crate::control::UploadInfo;
use crate::error::IetfError;
use crate::ingest::offset_spool::Resource;
use crate::ingest::resumable::{self as core, Held, Refusal};
use crate::ingest::Body;
use crate::token::Claims;
use crate::upload::resumable::{Append, Completion, Refused};
use crate::upload::{Offset, UploadId};
use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::json;

/// The interop versions served.
const VERSIONS: std::ops::RangeInclusive<u8> = 3..=8;
const LATEST: u8 = 8;
const PROBLEM: &str = "application/problem+json";
const PARTIAL_UPLOAD: &str = "application/partial-upload";

/// The draft as a request speaks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draft {
    /// The interop version whose rules apply.
    version: u8,
    /// The client named this version, so it understands its interim responses and headers.
    named: bool,
}

/// The draft a request speaks, or `None` for a request that is not a draft request (tus, or
/// not a resumable upload at all).
#[must_use]
pub fn draft(headers: &HeaderMap) -> Option<Draft> {
    let interop = header(headers, "upload-draft-interop-version");
    let marked =
        headers.contains_key("upload-complete") || headers.contains_key("upload-incomplete");
    match interop.map(str::parse::<u8>) {
        Some(Ok(v)) if VERSIONS.contains(&v) => Some(Draft {
            version: v,
            named: true,
        }),
        Some(_) => Some(Draft {
            version: LATEST,
            named: false,
        }),
        None if marked => Some(Draft {
            version: LATEST,
            named: false,
        }),
        None => None,
    }
}

impl Draft {
    /// Whether the request says it completes the upload (`None`: it does not say). The
    /// header is a structured-field boolean item (RFC 9651; parameters after it are allowed).
    pub(crate) fn completes(self, headers: &HeaderMap) -> Option<bool> {
        let boolean = |name| {
            let item: sfv::Item = sfv::Parser::new(header(headers, name)?).parse_item().ok()?;
            item.bare_item.as_boolean()
        };
        if self.version == 3 {
            boolean("upload-incomplete").map(|incomplete| !incomplete)
        } else {
            boolean("upload-complete")
        }
    }

    /// The completeness header of a response.
    fn complete_header(self, complete: bool) -> (&'static str, String) {
        let flag = |b: bool| sfv::ItemSerializer::new().bare_item(b).finish();
        if self.version == 3 {
            ("upload-incomplete", flag(!complete))
        } else {
            ("upload-complete", flag(complete))
        }
    }

    /// A reply carrying the version header when the client named one.
    fn reply(self, status: u16, content_type: &'static str, body: String) -> Reply {
        let mut headers = vec![];
        if self.named {
            headers.push(("upload-draft-interop-version", self.version.to_string()));
        }
        Reply {
            status,
            content_type,
            body: Bytes::from(body),
            headers,
        }
    }

    /// An error of the draft's table as problem details.
    fn error(self, e: &IetfError) -> Reply {
        let (status, kind, title, extra) = e.problem();
        let mut body = json!({ "title": title });
        if let Some(kind) = kind {
            body["type"] = json!(format!(
                "https://iana.org/assignments/http-problem-types#{kind}"
            ));
        }
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.reply(status, PROBLEM, body.to_string())
    }

    fn refused(self, refusal: Refusal, claims: Option<&Claims>, ctx: &Ctx<'_>) -> Reply {
        match refusal {
            Refusal::Token(e) => {
                let (status, body) = e.render();
                self.reply(status, "application/json", body.to_string())
            }
            Refusal::NotFound => self.error(&IetfError::NotFound),
            Refusal::TooLarge(max) => {
                let mut r = self.error(&IetfError::TooLarge { max });
                r.headers.push(("upload-limit", limits(claims, ctx)));
                r
            }
            Refusal::Quota => {
                let mut r = super::quota_exceeded();
                r.headers.push(self.complete_header(true));
                r
            }
            Refusal::ChecksumMismatch => self.error(&IetfError::DigestMismatch),
            Refusal::Refused(Refused::AlreadyComplete { .. }) => {
                let mut r = self.error(&IetfError::AlreadyComplete);
                r.headers.push(self.complete_header(true));
                r
            }
            // Rendered with the request's offset where it is known ([`append`]).
            Refusal::Refused(Refused::OffsetMismatch { current }) => {
                self.offset_mismatch(current, current)
            }
            Refusal::Refused(Refused::InconsistentLength) => self.inconsistent_length(),
            Refusal::Refused(Refused::TooLarge { max }) => {
                let mut r = self.error(&IetfError::TooLarge { max });
                r.headers.push(("upload-limit", limits(claims, ctx)));
                r
            }
            Refusal::Moved => self.error(&IetfError::Moved),
            Refusal::Hook(r) => self.error(&IetfError::Refused(r)),
            Refusal::Unavailable => {
                let mut r = self.error(&IetfError::Unavailable);
                r.headers.push(("retry-after", "5".into()));
                r
            }
            Refusal::Full => {
                let mut r = self.error(&IetfError::Full);
                r.headers
                    .push(("retry-after", crate::error::FULL_RETRY_AFTER.into()));
                r
            }
        }
    }

    fn offset_mismatch(self, expected: Offset, provided: Offset) -> Reply {
        let mut r = self.error(&IetfError::OffsetMismatch { expected, provided });
        r.headers.push(("upload-offset", expected.to_string()));
        r.headers.push(self.complete_header(false));
        r
    }

    fn inconsistent_length(self) -> Reply {
        self.error(&IetfError::InconsistentLength)
    }
}

pub use super::resumable::Ctx;

/// `Upload-Limit` for requests under `claims`.
fn limits(claims: Option<&Claims>, ctx: &Ctx<'_>) -> String {
    // A structured-field dictionary of integers (at most 15 digits in that format).
    let integer = |n: u64| sfv::Integer::try_from(n).unwrap_or(sfv::Integer::MAX);
    let mut limit = sfv::DictSerializer::new();
    let max_size = integer(core::max_size(claims, ctx.core()));
    let _ = limit.bare_item(sfv::key_ref("max-size"), max_size);
    if let Some(c) = claims {
        let max_age = integer(c.expires.saturating_sub(ctx.now));
        let _ = limit.bare_item(sfv::key_ref("max-age"), max_age);
    }
    limit.finish().unwrap_or_default()
}

/// The length a request declares: `Upload-Length`, and the rest of the body when it
/// completes the upload with a `Content-Length`. `Err` when the two disagree.
pub(crate) fn declared_length(
    headers: &HeaderMap,
    offset: Offset,
    completes: bool,
) -> Result<Option<Offset>, ()> {
    let explicit = header(headers, "upload-length").and_then(|v| v.parse::<Offset>().ok());
    let implied = completes
        .then(|| header(headers, "content-length").and_then(|v| v.parse::<u64>().ok()))
        .flatten()
        .map(|l| offset.after(l));
    match (explicit, implied) {
        (Some(a), Some(b)) if a != b => Err(()),
        (a, b) => Ok(a.or(b)),
    }
}

/// An upload created by a request whose body is still to be read.
pub struct Opened {
    draft: Draft,
    claims: Claims,
    info: UploadInfo,
    resource: Resource,
    completes: bool,
    location: String,
}

/// Opens the upload a `POST`/`PUT` to `/files/` creates (phase one: no body read yet).
///
/// # Errors
/// The reply refusing it.
pub async fn open(
    draft: Draft,
    query: Option<&str>,
    headers: &HeaderMap,
    ctx: &Ctx<'_>,
) -> Result<Opened, Reply> {
    let claims = ctx
        .verify_token(query, headers)
        .map_err(|e| draft.refused(e.into(), None, ctx))?;
    let Some(completes) = draft.completes(headers) else {
        return Err(draft.error(&IetfError::NoCompleteness));
    };
    let Ok(length) = declared_length(headers, Offset::ZERO, completes) else {
        return Err(draft.inconsistent_length());
    };
    let filename = header(headers, "content-disposition")
        .and_then(|v| v.split("filename=").nth(1))
        .map_or("video", |f| {
            f.trim_matches(|c| c == '"' || c == ';' || c == ' ')
        });
    let resource = Resource {
        length,
        metadata: None,
        complete: false,
        concat: None,
        owner: None,
    };
    let info = core::create(&claims, filename, &resource, ctx.core())
        .await
        .map_err(|r| draft.refused(r, Some(&claims), ctx))?;
    // Resumption requests must be authorised too: a token that came in the query stays on the
    // resource's URL.
    let location = match query.filter(|_| crate::token::from_query(query).is_some()) {
        Some(q) => format!("{PREFIX}{}?{q}", info.id),
        None => format!("{PREFIX}{}", info.id),
    };
    Ok(Opened {
        draft,
        claims,
        info,
        resource,
        completes,
        location,
    })
}

/// The `104 Upload Resumption Supported` interim response announcing the upload, if the
/// client named a version it can be read in.
#[must_use]
pub fn interim(opened: &Opened, ctx: &Ctx<'_>) -> Option<Reply> {
    if !opened.draft.named {
        return None;
    }
    let mut r = opened.draft.reply(104, "", String::new());
    r.headers.push(("location", opened.location.clone()));
    r.headers
        .push(("upload-limit", limits(Some(&opened.claims), ctx)));
    Some(r)
}

/// Reads the creation request's body into the upload (phase two).
pub async fn receive<S>(opened: Opened, body: S, ctx: &Ctx<'_>) -> Reply
where
    S: Body,
{
    let Opened {
        draft,
        claims,
        info,
        resource,
        completes,
        location,
    } = opened;
    let held = core::hold_new(info, resource, ctx.core()).await;
    let req = Append {
        offset: Offset::ZERO,
        length: None,
        completion: Completion::Declared(completes),
    };
    let mut r = append(draft, held, &req, body, 201, &claims, ctx).await;
    r.headers.push(("location", location));
    r
}

/// `HEAD`, `PATCH` or `DELETE` on an upload resource.
pub async fn handle<S>(
    draft: Draft,
    method: &Method,
    id: UploadId,
    query: Option<&str>,
    headers: &HeaderMap,
    body: S,
    ctx: &Ctx<'_>,
) -> Reply
where
    S: Body,
{
    let claims = match ctx.verify_token(query, headers) {
        Ok(claims) => claims,
        Err(e) => return draft.refused(e.into(), None, ctx),
    };
    if *method == Method::PATCH && draft.version >= 6 {
        let content_type = header(headers, "content-type");
        if content_type.and_then(|c| c.split(';').next()) != Some(PARTIAL_UPLOAD) {
            return draft.error(&IetfError::WrongContentType);
        }
    }
    let held = match core::existing(&claims, id, ctx.core()).await {
        Ok(held) => held,
        Err(refusal) => return draft.refused(refusal, Some(&claims), ctx),
    };
    match *method {
        Method::HEAD => match core::settle(held, &claims, ctx.core()).await {
            Ok(held) => head(draft, &held, &claims, ctx),
            Err(refusal) => draft.refused(refusal, Some(&claims), ctx),
        },
        Method::PATCH => patch(draft, held, headers, body, &claims, ctx).await,
        Method::DELETE => {
            let Held { info, turn, .. } = held;
            drop(turn);
            core::drop_upload(info.id, ctx.core()).await;
            draft.reply(204, "", String::new())
        }
        _ => draft.error(&IetfError::MethodNotAllowed),
    }
}

/// `HEAD`: the offset, and whether the upload is complete.
fn head(draft: Draft, held: &Held, claims: &Claims, ctx: &Ctx<'_>) -> Reply {
    let mut r = draft.reply(204, "", String::new());
    r.headers.push(("upload-offset", held.offset.to_string()));
    r.headers
        .push(draft.complete_header(held.resource.complete));
    if let Some(l) = held.resource.length {
        r.headers.push(("upload-length", l.to_string()));
    }
    r.headers.push(("upload-limit", limits(Some(claims), ctx)));
    r.headers.push(("cache-control", "no-store".into()));
    r
}

/// `PATCH`: appends at `Upload-Offset`, with the lengths the request declares.
async fn patch<S>(
    draft: Draft,
    held: Held,
    headers: &HeaderMap,
    body: S,
    claims: &Claims,
    ctx: &Ctx<'_>,
) -> Reply
where
    S: Body,
{
    let Some(Ok(offset)) = header(headers, "upload-offset").map(str::parse::<Offset>) else {
        return draft.error(&IetfError::NoOffset);
    };
    let completes = draft.completes(headers).unwrap_or(false);
    let Ok(length) = declared_length(headers, offset, completes) else {
        return draft.inconsistent_length();
    };
    let req = Append {
        offset,
        length,
        completion: Completion::Declared(completes),
    };
    append(draft, held, &req, body, 204, claims, ctx).await
}

/// Appends a request's body as `req` asks; answers `status` (201 for creation, 204 for a
/// PATCH) while the upload continues, 201 with the upload's status once it is stored.
async fn append<S>(
    draft: Draft,
    held: Held,
    req: &Append,
    body: S,
    status: u16,
    claims: &Claims,
    ctx: &Ctx<'_>,
) -> Reply
where
    S: Body,
{
    let id = held.info.id;
    let appended = match core::append(held, req, body, None, claims, ctx.core()).await {
        Ok(appended) => appended,
        Err(Refusal::Refused(Refused::OffsetMismatch { current })) => {
            return draft.offset_mismatch(current, req.offset)
        }
        Err(refusal) => return draft.refused(refusal, Some(claims), ctx),
    };
    if let Some(done) = appended.stored {
        let mut body = json!({
            "id": id,
            "status": done.view.status,
            "status_text": done.view.status_text,
            "size": done.size,
        });
        if let Some(answer) = &done.view.hook_response {
            body["hook_response"] = answer.clone();
        }
        let mut r = draft.reply(201, "application/json", body.to_string());
        r.headers.push(draft.complete_header(true));
        r.headers.extend(super::hook_response(Some(&done)));
        r.headers
            .push(("upload-offset", appended.offset.to_string()));
        return r;
    }
    let mut r = draft.reply(status, "", String::new());
    r.headers.push(draft.complete_header(false));
    r.headers
        .push(("upload-offset", appended.offset.to_string()));
    r.headers.push(("upload-limit", limits(Some(claims), ctx)));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn versions_and_completeness() {
        assert_eq!(draft(&headers(&[("tus-resumable", "1.0.0")])), None);
        let v3 = draft(&headers(&[("upload-draft-interop-version", "3")])).unwrap();
        assert_eq!((v3.version, v3.named), (3, true));
        assert_eq!(
            v3.completes(&headers(&[("upload-incomplete", "?0")])),
            Some(true)
        );
        assert_eq!(
            v3.complete_header(false),
            ("upload-incomplete", "?1".into())
        );
        let v6 = draft(&headers(&[("upload-draft-interop-version", "6")])).unwrap();
        assert_eq!(
            v6.completes(&headers(&[("upload-complete", "?1")])),
            Some(true)
        );
        assert_eq!(v6.completes(&headers(&[("upload-complete", "yes")])), None);
        // A structured-field boolean may carry parameters; an integer is not a boolean.
        assert_eq!(
            v6.completes(&headers(&[("upload-complete", "?0;reason=pause")])),
            Some(false)
        );
        assert_eq!(v6.completes(&headers(&[("upload-complete", "1")])), None);
        assert_eq!(v6.complete_header(true), ("upload-complete", "?1".into()));
        // An unknown version, or none, gets the newest rules and no interim response.
        let v99 = draft(&headers(&[("upload-draft-interop-version", "99")])).unwrap();
        assert_eq!((v99.version, v99.named), (LATEST, false));
        let bare = draft(&headers(&[("upload-complete", "?1")])).unwrap();
        assert_eq!((bare.version, bare.named), (LATEST, false));
    }

    #[test]
    fn lengths_must_agree() {
        let h = headers(&[("upload-length", "100"), ("content-length", "40")]);
        assert_eq!(
            declared_length(&h, Offset::new(60), true),
            Ok(Some(Offset::new(100)))
        );
        assert_eq!(declared_length(&h, Offset::new(0), true), Err(()));
        // Content-Length says nothing of the whole unless the request completes the upload.
        assert_eq!(
            declared_length(&h, Offset::new(0), false),
            Ok(Some(Offset::new(100)))
        );
        let h = headers(&[("content-length", "40")]);
        assert_eq!(declared_length(&h, Offset::new(0), false), Ok(None));
        assert_eq!(
            declared_length(&h, Offset::new(10), true),
            Ok(Some(Offset::new(50)))
        );
    }
}
