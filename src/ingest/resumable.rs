//! The resumable upload core that tus 1.0 and the IETF draft share. Their upload resources
//! live in the edge's [`OffsetSpool`]; this module authorises a request against an upload
//! (taking it over when the fleet's other edge that wrote it was lost or left), opens new
//! uploads, appends bodies as the state machine ([`crate::upload::resumable`]) allows, and
//! stores an upload the moment the state machine says every byte is in. The adapters only
//! parse requests and render outcomes.
//!
//! Must not depend on HTTP or on a wire protocol.

use super::chunk_spool::{SpoolError, Turn};
use super::control_plane::ControlError;
use super::forward::Spooled;
use super::offset_spool::{
    Algorithm, Appended as Spool, Checks, Concat, OffsetSpool, Owner, Resource,
};
use super::{Body, Completed, Ingest, IngestError, Record};
use crate::control::{KeyOwner, ResumableState, UploadInfo};
use crate::token::{Claims, TokenError};
use crate::upload::resumable::{Append, Next, Refused, Upload};
use crate::upload::{Filename, Offset, Status, UploadId};

/// What the resumable core acts on: the edge's ingest core and its offset spool.
#[derive(Clone, Copy)]
pub struct Core<'a> {
    /// The ingest core.
    pub ingest: &'a Ingest,
    /// Where resumable uploads' bytes wait.
    pub spool: &'a OffsetSpool,
    /// The client's address, when known (for the account's `pre-create` hook).
    pub client: Option<std::net::IpAddr>,
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
    /// The state machine refused the append (nothing of the body was kept, except for an
    /// inconsistent length found at the end).
    Refused(Refused),
    /// Another edge took the upload over while this one held it; this edge let it go, and the
    /// client resumes from the offset a status request now reports.
    Moved,
    /// The account's application refused the upload (its hook): before it was created, or at
    /// its last byte (it has then failed and nothing of it is kept).
    Hook(crate::hook::Refusal),
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

/// A token out of scope for what its request asks, counted as a refusal.
fn out_of_scope(e: TokenError) -> Refusal {
    crate::metrics::token_refused(e.reason());
    Refusal::Token(e)
}

/// The largest upload a request under `claims` may make.
#[must_use]
pub fn max_size(claims: Option<&Claims>, core: Core<'_>) -> u64 {
    let node = core.ingest.max_upload_size();
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
    /// Bytes kept so far.
    pub offset: Offset,
}

impl Held {
    /// Where the upload stands, for the state machine.
    #[must_use]
    pub fn state(&self) -> Upload {
        Upload {
            offset: self.offset,
            length: self.resource.length,
            complete: self.resource.complete,
            partial: self.resource.concat == Some(Concat::Partial),
        }
    }
}

/// An upload this token may act on, held by this request (a stale request holding it is
/// ended). An upload this edge does not hold (a control API opened it, or another edge of the
/// fleet wrote it) is taken over: its resource is made here and continues after the parts
/// already in storage. An upload still receiving whose spool knows its owner is served without
/// asking the origin, unless another edge took it over since.
///
/// # Errors
/// Out of scope, unknown, another account's, or the edge fails.
pub async fn existing(claims: &Claims, id: UploadId, core: Core<'_>) -> Result<Held, Refusal> {
    claims
        .permits(&format!("/files/{id}"), Some(&id.to_string()), None)
        .map_err(out_of_scope)?;
    if core.ingest.moved_away(id).await {
        // Ends a request still appending to this edge's copy.
        let _turn = core.spool.take_over(id).await;
        let_go(id, core).await;
    }
    let spooled = core
        .spool
        .get(id)
        .await
        .map_err(|e| Refusal::unavailable(&e))?;
    let known = spooled
        .and_then(|(r, _)| r.owner.filter(|_| !r.complete).map(|o| (o, r.length)))
        .map(|(owner, length)| UploadInfo {
            id: id.to_owned(),
            account_id: owner.account_id,
            object_key: owner.object_key,
            status: Status::Receiving.code(),
            grant: owner.grant,
            length,
            parts: None,
            resumable: None,
        });
    let info = match known {
        Some(info) => info,
        None => match core.ingest.upload_info(id).await {
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
    let turn = core.spool.take_over(id).await;
    let found = core
        .spool
        .get(id)
        .await
        .map_err(|e| Refusal::unavailable(&e))?;
    let (info, resource, offset) = match found {
        Some((resource, offset)) => (info, resource, offset),
        None if info.status == Status::Receiving.code() => adopt(info, core).await?,
        None => return Err(Refusal::NotFound),
    };
    Ok(Held {
        info,
        turn,
        resource,
        offset,
    })
}

/// Makes the resource of an upload this edge does not hold: the writer from now on (in a
/// fleet), after the parts that reached storage (their bytes are not resent).
async fn adopt(
    info: UploadInfo,
    core: Core<'_>,
) -> Result<(UploadInfo, Resource, Offset), Refusal> {
    let info = match core.ingest.become_writer(info.id).await {
        Ok(Some(taken)) => taken,
        Ok(None) => info,
        Err(IngestError::Origin(ControlError::NotFound | ControlError::NotReceiving(_))) => {
            return Err(Refusal::NotFound)
        }
        Err(e) => return Err(Refusal::unavailable(&e)),
    };
    if info.status != Status::Receiving.code() {
        return Err(Refusal::NotFound);
    }
    let state = info.resumable.clone().unwrap_or_default();
    let resource = Resource {
        // The length declared when the upload was created (tus `Upload-Length` on another
        // edge, Cloud VoD `fileSize`): the last byte completes the upload here too, even if the
        // client never sends the length again.
        length: info.length,
        metadata: state.metadata,
        complete: false,
        concat: state.partial.then_some(Concat::Partial),
        owner: Some(owner_of(&info)),
    };
    let offset = core
        .ingest
        .adopt(&info)
        .await
        .map_err(|e| Refusal::unavailable(&e))?;
    core.spool
        .create_at(info.id, &resource, offset)
        .await
        .map_err(|e| Refusal::unavailable(&e))?;
    Ok((info, resource, offset))
}

/// Drops this edge's copy of an upload another edge took over: its spool and forwarding state,
/// not its record nor what reached storage (the new writer continues from there).
async fn let_go(id: UploadId, core: Core<'_>) {
    core.ingest.release_spooled(id).await;
    if let Err(e) = core.spool.remove(id).await {
        tracing::warn!(upload_id = %id, error = %e, "Could not remove the spool of an upload another edge took over.");
    }
    tracing::info!(upload_id = %id, "Let go of an upload another edge took over.");
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
pub async fn hold_new(info: UploadInfo, mut resource: Resource, core: Core<'_>) -> Held {
    resource.owner = Some(owner_of(&info));
    Held {
        turn: core.spool.take_over(info.id).await,
        info,
        resource,
        offset: Offset::ZERO,
    }
}

/// Opens a new upload of `filename` under an upload token, with its resource.
///
/// # Errors
/// Out of scope, over the size limit, or the origin or edge fails.
pub async fn create(
    claims: &Claims,
    filename: &str,
    resource: &Resource,
    core: Core<'_>,
) -> Result<UploadInfo, Refusal> {
    claims
        .permits("/files/", None, None)
        .map_err(out_of_scope)?;
    let pipeline = claims
        .pipeline
        .clone()
        .ok_or_else(|| out_of_scope(TokenError::WrongScope))?;
    let max = max_size(Some(claims), core);
    if resource.length.is_some_and(|l| l.bytes() > max) {
        return Err(Refusal::TooLarge(max));
    }
    if resource
        .length
        .is_some_and(|l| claims.quota.is_some_and(|q| l.bytes() > q))
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
    let state = ResumableState {
        metadata: resource.metadata.clone(),
        partial: resource.concat == Some(Concat::Partial),
    };
    let record = Record {
        flavour: "resumable",
        filename: filename.as_str(),
        grant: claims.token_id.as_deref(),
        // Recorded at the origin, so an edge that continues the upload after this one is
        // lost completes it at its last byte and answers HEAD as this one would.
        length: resource.length,
        resumable: Some(&state),
        client: core.client,
        ..Record::default()
    };
    let (info, _) = core
        .ingest
        .open_record(&owner, &record)
        .await
        .map_err(|e| match e {
            IngestError::Refused(refusal) => Refusal::Hook(refusal),
            e => Refusal::unavailable(&e),
        })?;
    let resource = Resource {
        owner: Some(owner_of(&info)),
        ..resource.clone()
    };
    core.spool
        .create(info.id, &resource)
        .await
        .map_err(|e| Refusal::unavailable(&e))?;
    Ok(info)
}

/// What an append did.
#[derive(Debug)]
pub struct Appended {
    /// The upload's offset now.
    pub offset: Offset,
    /// Whether the whole body arrived (not cut off, nor ended by a newer request).
    pub whole: bool,
    /// The stored upload, when this append brought its last byte.
    pub stored: Option<Completed>,
}

/// Appends a body to the held upload as `req` asks, when the state machine accepts it; records
/// a length the request declares; stores the upload when every byte is in.
///
/// # Errors
/// Refused by the state machine (nothing kept), too long, a checksum mismatch, or the disk,
/// store or origin fails.
pub async fn append<S>(
    held: Held,
    req: &Append,
    body: S,
    checksum: Option<(Algorithm, Vec<u8>)>,
    claims: &Claims,
    core: Core<'_>,
) -> Result<Appended, Refusal>
where
    S: Body,
{
    let mut state = held.state();
    let max = max_size(Some(claims), core);
    let accepted = state.accept(req, max).map_err(Refusal::Refused)?;
    let Held {
        info,
        turn,
        mut resource,
        offset,
    } = held;
    if let Some(length) = accepted.declare {
        resource.length = Some(length);
        core.spool
            .save(info.id, &resource)
            .await
            .map_err(|e| Refusal::unavailable(&e))?;
    }
    // A partial upload of a concatenation is forwarded with its final upload.
    let forwarded = resource.concat.is_none() && core.ingest.forwards_spooled();
    let path = core.spool.data_path(info.id);
    let mut grown = |end: Offset| {
        if forwarded {
            let spooled = Spooled::file(path.clone(), end.bytes());
            core.ingest.spooled(&info, resource.length, spooled);
        }
    };
    let checks = Checks {
        limit: accepted.limit,
        checksum,
        grown: forwarded.then(|| Box::new(&mut grown) as Box<dyn FnMut(Offset) + Send>),
        crcs: forwarded.then(|| core.ingest.crc_ledger(info.id)).flatten(),
    };
    let body = core.ingest.track(info.id, offset, body);
    let (new_offset, whole) = match core
        .spool
        .append(info.id, &turn, offset, body, checks)
        .await
    {
        Ok(Spool::Done(o)) => (o, true),
        Ok(Spool::Cut(o)) => (o, false),
        Ok(Spool::ChecksumMismatch) => return Err(Refusal::ChecksumMismatch),
        Err(SpoolError::TooLarge(_)) => return Err(Refusal::TooLarge(max)),
        Err(e) => return Err(Refusal::unavailable(&e)),
    };
    grown(new_offset);
    drop(turn);
    let next = state
        .appended(&accepted, new_offset, whole, req.completion)
        .map_err(Refusal::Refused)?;
    let stored = match next {
        Next::Continue => None,
        Next::Store(length) => {
            resource.length = Some(length);
            Some(finish(&info, resource, claims, core).await?)
        }
    };
    Ok(Appended {
        offset: new_offset,
        whole,
        stored,
    })
}

/// Before an upload's offset is reported: one whose every byte is in but not stored (its last
/// append could not store it) is stored first, as the state machine asks, since a client seeing
/// the whole offset stops.
///
/// # Errors
/// The store or the origin fails (the bytes stay spooled).
pub async fn settle(mut held: Held, claims: &Claims, core: Core<'_>) -> Result<Held, Refusal> {
    if let Next::Store(_) = held.state().settle() {
        finish(&held.info, held.resource.clone(), claims, core).await?;
        held.resource.complete = true;
    }
    Ok(held)
}

/// Stores a finished upload (a final concatenation: its partial uploads, in order) and
/// records it with the origin, with its tus metadata; its spooled bytes, and any partial
/// uploads, are then dropped. Over the quota, the upload is dropped entirely.
///
/// # Errors
/// Over the quota or a limit, another edge took it over, or the store, origin or edge fails
/// (the bytes stay spooled).
pub async fn finish(
    info: &UploadInfo,
    resource: Resource,
    claims: &Claims,
    core: Core<'_>,
) -> Result<Completed, Refusal> {
    let parts: Vec<UploadId> = match &resource.concat {
        Some(Concat::Final(parts)) => parts.clone(),
        _ => vec![info.id],
    };
    let files: Vec<_> = parts.iter().map(|p| core.spool.data_path(*p)).collect();
    let metadata = crate::upload::resumable::metadata_record(resource.metadata.as_deref());
    // Another edge may have taken the upload over: only its writer completes the object.
    let stored = async {
        core.ingest.still_writer(info.id).await?;
        core.ingest
            .store_files(info, &files, claims.into(), metadata, false)
            .await
    }
    .await;
    match stored {
        Ok(done) => {
            tracing::info!(upload_id = %info.id, bytes = done.size, "Resumable upload stored.");
            if let Err(e) = core.spool.complete(info.id, resource).await {
                tracing::warn!(upload_id = %info.id, error = %e, "Could not drop a stored upload's data.");
            }
            for part in parts.iter().filter(|p| **p != info.id) {
                drop_upload(*part, core).await;
            }
            Ok(done)
        }
        Err(IngestError::QuotaExceeded) => {
            drop_upload(info.id, core).await;
            Err(Refusal::Quota)
        }
        Err(IngestError::TooLarge { limit }) => Err(Refusal::TooLarge(limit)),
        Err(IngestError::Superseded) => {
            let_go(info.id, core).await;
            Err(Refusal::Moved)
        }
        Err(IngestError::Refused(refusal)) => {
            drop_upload(info.id, core).await;
            Err(Refusal::Hook(refusal))
        }
        Err(e) => Err(Refusal::unavailable(&e)),
    }
}

/// Drops an upload's spool and, while it is still receiving, its record (termination, a
/// refused upload, a partial upload once concatenated).
pub async fn drop_upload(id: UploadId, core: Core<'_>) {
    core.ingest.discard_spooled(id).await;
    if let Err(e) = core.spool.remove(id).await {
        tracing::warn!(upload_id = %id, error = %e, "Could not remove an upload's spool.");
    }
    core.ingest.abandon(id).await;
}
