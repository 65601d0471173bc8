//! What the offset-based resumable protocols share: tus 1.0 ([`super::tus`]) and the IETF
//! "Resumable Uploads for HTTP" draft ([`super::ietf`]) serve the same upload resources at
//! [`PREFIX`], kept in the edge's [`OffsetSpool`]. This module authorises a request against an
//! upload, opens new ones, appends bodies and stores finished uploads; each adapter renders
//! the outcome in its own protocol. Must not depend on an HTTP server.

use crate::control::{KeyOwner, UploadInfo};
use crate::ingest::chunk_spool::{SpoolError, Turn};
use crate::ingest::forward::Spooled;
use crate::ingest::offset_spool::{
    Algorithm, Appended, Checks, Concat, OffsetSpool, Owner, Resource,
};
use crate::ingest::Body;
use crate::ingest::{Completed, IngestError, Record};
use crate::token::{Claims, TokenError};
use crate::upload::{Filename, Status, UploadId};

/// Where resumable upload resources live: `/files/` creates, `/files/{id}` is one upload.
pub const PREFIX: &str = "/files/";

/// What a resumable protocol's adapter needs from its edge.
pub type Ctx<'a> = super::Ctx<'a, OffsetSpool>;

/// The target of a path under [`PREFIX`]: the endpoint (`None`) or one upload.
#[must_use]
pub fn route(path: &str) -> Option<Option<UploadId>> {
    let rest = path.strip_prefix("/files")?;
    match rest.trim_matches('/') {
        "" => Some(None),
        id => id.parse().ok().map(Some),
    }
}

/// The upload a URL or path (absolute or not, as tus `Upload-Concat` lists them) names.
#[must_use]
pub fn upload_of_url(url: &str) -> Option<UploadId> {
    let path = match url.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/')?..],
        None => url,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    route(path).flatten()
}

/// Why a resumable request was refused; each adapter renders it in its protocol.
#[derive(Debug)]
pub enum Refusal {
    /// The token is missing, invalid or out of scope.
    Token(TokenError),
    /// No such upload for this token's account.
    NotFound,
    /// Over the size limit (node, account or token), in bytes.
    TooLarge(u64),
    /// Over the account's storage quota; nothing was kept.
    Quota,
    /// The body's checksum did not match; the chunk was discarded.
    ChecksumMismatch,
    /// The edge or the origin failed; retry (the cause is logged).
    Unavailable,
    /// The edge's disk is full; nothing of the request was kept.
    Full,
}

impl Refusal {
    fn unavailable(e: &(dyn std::error::Error + 'static)) -> Self {
        if crate::error::disk_full(e) {
            tracing::warn!(error = %crate::error::chain(e), "The edge's disk is full; a resumable upload request was refused.");
            return Self::Full;
        }
        tracing::error!(error = %crate::error::chain(e), "Resumable upload request failed at the edge.");
        Self::Unavailable
    }
}

impl From<TokenError> for Refusal {
    fn from(e: TokenError) -> Self {
        Self::Token(e)
    }
}

/// The largest upload a request under `claims` may make.
#[must_use]
pub fn max_size(claims: Option<&Claims>, ctx: &Ctx<'_>) -> u64 {
    let node = ctx.ingest.max_upload_size();
    claims
        .and_then(|c| c.max_size)
        .map_or(node, |m| m.min(node))
}

/// An upload a request holds (no other request changes it meanwhile), with its resource and
/// offset.
pub struct Held {
    /// The upload.
    pub info: UploadInfo,
    /// The request's hold on it.
    pub turn: Turn,
    /// What the spool knows besides the bytes.
    pub resource: Resource,
    /// Bytes stored so far.
    pub offset: u64,
}

/// What an append kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The new offset.
    pub offset: u64,
    /// Whether the whole body arrived (not cut off, nor ended by a newer request).
    pub whole: bool,
}

/// An upload this token may act on, held by this request (a stale request holding it is
/// ended). Uploads a control API opened get their resource on first use. An upload still
/// receiving whose spool knows its owner is served without asking the origin.
///
/// # Errors
/// Out of scope, unknown, another account's, or the edge fails.
pub async fn existing(claims: &Claims, id: UploadId, ctx: &Ctx<'_>) -> Result<Held, Refusal> {
    let id = id.to_string();
    claims
        .permits(&format!("{PREFIX}{id}"), Some(&id), None)
        .map_err(super::refused)?;
    let spooled = ctx
        .spool
        .get(&id)
        .await
        .map_err(|e| Refusal::unavailable(&e))?;
    let known = spooled
        .and_then(|(r, _)| r.owner.filter(|_| !r.complete).map(|o| (o, r.length)))
        .map(|(owner, length)| UploadInfo {
            id: id.clone(),
            account_id: owner.account_id,
            object_key: owner.object_key,
            status: Status::Receiving.code(),
            grant: owner.grant,
            length,
            parts: None,
        });
    let info = match known {
        Some(info) => info,
        None => match ctx.ingest.upload_info(&id).await {
            Ok(Some(info)) => info,
            Ok(None) => return Err(Refusal::NotFound),
            Err(e) => return Err(Refusal::unavailable(&e)),
        },
    };
    // Checked before taking the upload over, so a stranger cannot end its request; another
    // grant's upload is as unknown as another account's.
    if !claims.reaches(&info.account_id, info.grant.as_deref()) {
        return Err(Refusal::NotFound);
    }
    let turn = ctx.spool.take_over(&id).await;
    let found = ctx
        .spool
        .get(&id)
        .await
        .map_err(|e| Refusal::unavailable(&e))?;
    let (resource, offset) = match found {
        Some(found) => found,
        None if info.status == Status::Receiving.code() => {
            let fresh = Resource {
                // The length declared when the upload was created (tus `Upload-Length` on
                // another edge, Cloud VoD `fileSize`): the last byte completes the upload
                // here too, even if the client never sends the length again.
                length: info.length,
                metadata: None,
                complete: false,
                concat: None,
                owner: Some(owner_of(&info)),
            };
            // Parts another edge sent before it was lost stay in storage; the upload continues
            // after them (their bytes are not resent).
            let offset = ctx
                .ingest
                .adopt(&info)
                .await
                .map_err(|e| Refusal::unavailable(&e))?;
            ctx.spool
                .create_at(&id, &fresh, offset)
                .await
                .map_err(|e| Refusal::unavailable(&e))?;
            (fresh, offset)
        }
        None => return Err(Refusal::NotFound),
    };
    Ok(Held {
        info,
        turn,
        resource,
        offset,
    })
}

/// The spool's copy of what the origin said of an upload.
fn owner_of(info: &UploadInfo) -> Owner {
    Owner {
        account_id: info.account_id.clone(),
        object_key: info.object_key.clone(),
        grant: info.grant.clone(),
    }
}

/// Holds an upload this request just created, to append its body.
pub async fn hold_new(info: UploadInfo, mut resource: Resource, ctx: &Ctx<'_>) -> Held {
    resource.owner = Some(owner_of(&info));
    Held {
        turn: ctx.spool.take_over(&info.id).await,
        info,
        resource,
        offset: 0,
    }
}

/// Records the length a request declared for an upload whose length was open.
///
/// # Errors
/// The spool cannot save it.
pub async fn record_length(held: &mut Held, length: u64, ctx: &Ctx<'_>) -> Result<(), Refusal> {
    held.resource.length = Some(length);
    ctx.spool
        .save(&held.info.id, &held.resource)
        .await
        .map_err(|e| Refusal::unavailable(&e))
}

/// Opens a new upload of `filename` under an upload token, with its resource.
///
/// # Errors
/// Out of scope, over the size limit, or the origin or edge fails.
pub async fn create(
    claims: &Claims,
    filename: &str,
    resource: &Resource,
    ctx: &Ctx<'_>,
) -> Result<UploadInfo, Refusal> {
    claims.permits(PREFIX, None, None).map_err(super::refused)?;
    let pipeline = claims
        .pipeline
        .clone()
        .ok_or(TokenError::WrongScope)
        .map_err(super::refused)?;
    let max = max_size(Some(claims), ctx);
    if resource.length.is_some_and(|l| l > max) {
        return Err(Refusal::TooLarge(max));
    }
    if resource
        .length
        .is_some_and(|l| claims.quota.is_some_and(|q| l > q))
    {
        return Err(Refusal::Quota);
    }
    let owner = KeyOwner {
        account_id: claims.account.clone(),
        pipeline_id: pipeline,
        quota_remaining: claims.quota,
        max_upload_size: claims.max_size,
        token_ttl_secs: None,
    };
    let filename = Filename::clean(Some(filename));
    let record = Record {
        flavour: "resumable",
        filename: filename.as_str(),
        grant: claims.token_id.as_deref(),
        // Recorded at the origin, so an edge that continues the upload after this one is
        // lost completes it at its last byte instead of acknowledging bytes forever.
        length: resource.length,
        ..Record::default()
    };
    let (info, _) = ctx
        .ingest
        .open_record(&owner, &record)
        .await
        .map_err(|e| Refusal::unavailable(&e))?;
    let resource = Resource {
        owner: Some(owner_of(&info)),
        ..resource.clone()
    };
    ctx.spool
        .create(&info.id, &resource)
        .await
        .map_err(|e| Refusal::unavailable(&e))?;
    Ok(info)
}

/// Appends a body at the held upload's offset (which the caller checked is the request's),
/// within the declared length and the size limit.
///
/// # Errors
/// Too long (nothing of the body is kept), a checksum mismatch, or the disk fails.
pub async fn append<S>(
    held: &Held,
    body: S,
    checksum: Option<(Algorithm, Vec<u8>)>,
    claims: &Claims,
    ctx: &Ctx<'_>,
) -> Result<Received, Refusal>
where
    S: Body,
{
    let max = max_size(Some(claims), ctx);
    let limit = held
        .resource
        .length
        .unwrap_or(max)
        .min(max)
        .saturating_sub(held.offset);
    // A partial upload of a concatenation is forwarded with its final upload.
    let forwarded = held.resource.concat.is_none() && ctx.ingest.forwards_spooled();
    let path = ctx.spool.data_path(&held.info.id);
    let mut grown = |len| {
        if forwarded {
            let spooled = Spooled::file(path.clone(), len);
            ctx.ingest
                .spooled(&held.info, held.resource.length, spooled);
        }
    };
    let appended = ctx
        .spool
        .append(
            &held.info.id,
            &held.turn,
            held.offset,
            body,
            Checks {
                limit,
                checksum,
                grown: forwarded.then(|| Box::new(&mut grown) as Box<dyn FnMut(u64) + Send>),
            },
        )
        .await;
    if let Ok(Appended::Done(offset) | Appended::Cut(offset)) = appended {
        grown(offset);
    }
    match appended {
        Ok(Appended::Done(offset)) => Ok(Received {
            offset,
            whole: true,
        }),
        Ok(Appended::Cut(offset)) => Ok(Received {
            offset,
            whole: false,
        }),
        Ok(Appended::ChecksumMismatch) => Err(Refusal::ChecksumMismatch),
        Err(SpoolError::TooLarge(_)) => Err(Refusal::TooLarge(max)),
        Err(e) => Err(Refusal::unavailable(&e)),
    }
}

/// Stores a finished upload (a final concatenation: its partial uploads, in order) and
/// records it with the origin; its spooled bytes, and any partial uploads, are then dropped.
/// Over the quota, the upload is dropped entirely.
///
/// # Errors
/// Over the quota or a limit, or the store, origin or edge fails (the bytes stay spooled).
pub async fn finish(
    info: &UploadInfo,
    resource: Resource,
    metadata: Option<String>,
    claims: &Claims,
    ctx: &Ctx<'_>,
) -> Result<Completed, Refusal> {
    let parts: Vec<String> = match &resource.concat {
        Some(Concat::Final(parts)) => parts.clone(),
        _ => vec![info.id.clone()],
    };
    let files: Vec<_> = parts.iter().map(|p| ctx.spool.data_path(p)).collect();
    match ctx
        .ingest
        .store_files(info, &files, claims.into(), metadata, false)
        .await
    {
        Ok(done) => {
            tracing::info!(upload_id = %info.id, bytes = done.size, "Resumable upload stored.");
            if let Err(e) = ctx.spool.complete(&info.id, resource).await {
                tracing::warn!(upload_id = %info.id, error = %e, "Could not drop a stored upload's data.");
            }
            for part in parts.iter().filter(|p| **p != info.id) {
                drop_upload(part, ctx).await;
            }
            Ok(done)
        }
        Err(IngestError::QuotaExceeded) => {
            drop_upload(&info.id, ctx).await;
            Err(Refusal::Quota)
        }
        Err(IngestError::TooLarge { limit }) => Err(Refusal::TooLarge(limit)),
        Err(e) => Err(Refusal::unavailable(&e)),
    }
}

/// Drops an upload's spool and, while it is still receiving, its record (termination, a
/// refused upload, a partial upload once concatenated).
pub async fn drop_upload(id: &str, ctx: &Ctx<'_>) {
    ctx.ingest.discard_spooled(id).await;
    if let Err(e) = ctx.spool.remove(id).await {
        tracing::warn!(upload_id = %id, error = %e, "Could not remove an upload's spool.");
    }
    ctx.ingest.abandon(id).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_urls() {
        assert_eq!(route("/files/"), Some(None));
        assert_eq!(route("/files"), Some(None));
        let id = UploadId::new();
        assert_eq!(route(&format!("/files/{id}")), Some(Some(id)));
        assert_eq!(route("/files/upload"), None);
        assert_eq!(route("/other"), None);
        assert_eq!(upload_of_url(&format!("/files/{id}")), Some(id));
        assert_eq!(
            upload_of_url(&format!("https://edge.example:8443/files/{id}?__token__=x")),
            Some(id)
        );
        assert_eq!(upload_of_url("https://edge.example"), None);
        assert_eq!(upload_of_url("/files/not-an-id"), None);
    }
}
