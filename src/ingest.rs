//! The one ingest core every wire protocol calls: `create → append… → complete | cancel`.
//! It streams bytes into the store through a bounded path (a batch of at most half a MiB being
//! written while the next is read), computes MD5 on the way where a protocol answers with it
//! (S3 ETags; the SHA-256 of the status record is the origin's, which reads the source
//! anyway), enforces
//! the size limit and the account quota, and reports to the origin.
//!
//! Spooled protocols (tus, the IETF draft, numbered chunks) keep their bytes in the edge's
//! spool; a store that takes parts (S3) gets them while they arrive through [`forward`], the
//! local-file store links the finished spool file into place.
//!
//! Must not depend on any HTTP framework or wire protocol: adapters translate to and from it.

pub mod chunk_spool;
pub mod chunked;
pub mod control_plane;
pub mod durability;
pub mod fetch;
pub mod forward;
pub mod offset_spool;
pub mod progress;
pub mod resumable;

use crate::control::{
    AccessKeyOwner, CreateUpload, KeyOwner, ResumableState, StatusView, UploadInfo, UploadStored,
};
use crate::store::appender::Pipelined;
use crate::store::crc_ledger::CrcLedger;
use crate::store::{ObjectKey, ObjectWriter, Store, StoreError};
use crate::upload::{Offset, UploadId};
use bytes::Bytes;
use control_plane::{ControlError, ControlPlane};
use forward::{Forwarder, Spooled};
use md5::Digest;
use md5::Md5;
use std::sync::Arc;
use std::time::Duration;

/// A request body as the ingest core and its adapters read it: pieces as they arrive, an
/// error when the client goes away.
pub trait Body: futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {}

impl<T: futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send> Body for T {}

/// Why an ingest step failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The upload is larger than this node accepts.
    #[error("upload larger than {limit} bytes")]
    TooLarge {
        /// The node's limit.
        limit: u64,
    },
    /// The account's quota would be exceeded.
    #[error("account quota exceeded")]
    QuotaExceeded,
    /// Storage failed.
    #[error("storage failed")]
    Store(#[source] StoreError),
    /// The control plane (the origin) failed or refused.
    #[error("origin failed")]
    Origin(#[source] ControlError),
    /// The origin handed out an unusable object key.
    #[error("invalid object key from the origin: {0}")]
    BadKey(&'static str),
    /// The upload session a signed form names has finished or expired.
    #[error("the upload session is no longer receiving")]
    SessionClosed,
    /// Another edge took the upload over (the client continued it there): this edge may
    /// neither record its parts nor complete it.
    #[error("another edge now writes this upload")]
    Superseded,
    /// The account's application refused the upload (its hook): the status and message its
    /// client sees.
    #[error("the application refused the upload")]
    Refused(crate::hook::Refusal),
}

impl From<ControlError> for IngestError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::SessionClosed => Self::SessionClosed,
            ControlError::Superseded => Self::Superseded,
            ControlError::OverQuota => Self::QuotaExceeded,
            ControlError::Refused(r) => Self::Refused(r),
            e => Self::Origin(e),
        }
    }
}

/// What an adapter asks the origin for when it opens an upload record.
#[derive(Debug, Default, Clone, Copy)]
pub struct Record<'a> {
    /// The API flavour receiving it (`uploads_api`, `s3_post`, `resumable`…).
    pub flavour: &'a str,
    /// The client's file name.
    pub filename: &'a str,
    /// The object key relative to the pipeline root, when the client chooses it (S3 POST): an
    /// upload still receiving under it (an xvid session's) is continued.
    pub relative_key: Option<&'a str>,
    /// The session a signed form names: that upload only is continued.
    pub session: Option<&'a str>,
    /// The upload token (grant) creating it: only that grant's tokens reach it afterwards.
    pub grant: Option<&'a str>,
    /// Its length, when the client declared it at creation.
    pub length: Option<Offset>,
    /// A resumable upload's protocol state: this edge writes it, and another edge of its
    /// region may take it over.
    pub resumable: Option<&'a ResumableState>,
    /// The client's address (for the account's `pre-create` hook).
    pub client: Option<std::net::IpAddr>,
}

/// What one upload may hold: its size limit (the account's or token's; the node's always
/// applies too) and the account's remaining storage quota. Exceeding the quota is its own
/// refusal (movingimage's code 1101), distinct from a file that is too large.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Allowance {
    /// Largest upload, in bytes.
    pub max_size: Option<u64>,
    /// Bytes the account may still store.
    pub quota: Option<u64>,
}

impl From<&crate::token::Claims> for Allowance {
    fn from(c: &crate::token::Claims) -> Self {
        Self {
            max_size: c.max_size,
            quota: c.quota,
        }
    }
}

impl From<&KeyOwner> for Allowance {
    fn from(o: &KeyOwner) -> Self {
        Self {
            max_size: o.max_upload_size,
            quota: o.quota_remaining,
        }
    }
}

/// The ingest core of one edge.
#[derive(Debug, Clone)]
pub struct Ingest {
    store: Arc<dyn Store>,
    origin: Arc<dyn ControlPlane>,
    max_upload_size: u64,
    /// Sends spooled uploads to a store that takes parts while they arrive.
    forwarder: Option<Arc<Forwarder>>,
    /// This edge's name in the fleet (its heartbeats'), if it has one.
    name: Option<String>,
    /// Bytes arriving per upload, reported to the origin every couple of seconds.
    progress: Arc<progress::Progress>,
    /// Resumable uploads another edge took over while this one held them, as the control
    /// plane said when this edge recorded a part: let go of at their next request here.
    moved: Moved,
}

/// Uploads another edge took over (kept a day at most: an upload that never comes back here is
/// swept with its spool).
type Moved = moka::future::Cache<UploadId, ()>;

/// Reports the parts the forwarder stored to the control plane, as this edge (`name`).
struct OriginPartLog {
    origin: Arc<dyn ControlPlane>,
    name: Option<String>,
    moved: Moved,
}

#[async_trait::async_trait]
impl forward::PartLog for OriginPartLog {
    async fn stored(
        &self,
        upload: UploadId,
        multipart_id: &str,
        declared: Option<u64>,
        part: crate::store::SentPart,
    ) {
        let record = crate::control::RecordPart {
            multipart_id: multipart_id.to_owned(),
            declared,
            part,
            edge: self.name.clone(),
        };
        let mut pauses = PART_REPORT_PAUSES.iter();
        loop {
            let e = match self.origin.record_part(upload, &record).await {
                Ok(()) => return,
                Err(ControlError::Superseded) => {
                    tracing::info!(upload_id = %upload, "Another edge took over an upload this edge was forwarding; letting it go.");
                    self.moved.insert(upload.to_owned(), ()).await;
                    return;
                }
                Err(e) => e,
            };
            match pauses.next() {
                // The origin could not be asked: asked again a little later.
                Some(pause) if matches!(e, ControlError::Unavailable(_)) => {
                    tokio::time::sleep(*pause).await;
                }
                _ => {
                    tracing::warn!(upload_id = %upload, part = record.part.number, error = %crate::error::chain(&e),
                        "Could not record a stored part at the origin; if this edge is lost, the part is sent again.");
                    return;
                }
            }
        }
    }
}

/// How long an edge waits before it reports a stored part again to an origin it could not ask:
/// a report lost to a moment's overload would cost the part's bytes if the edge were lost.
const PART_REPORT_PAUSES: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(4),
    Duration::from_secs(15),
];

/// A stored upload.
#[derive(Debug, Clone)]
pub struct Completed {
    /// Its status as the origin recorded it.
    pub view: StatusView,
    /// Bytes stored.
    pub size: u64,
    /// Hex MD5 of the bytes (S3's ETag), when asked for with [`Receiving::with_md5`].
    pub md5: Option<String>,
}

/// The MD5 of an upload's bytes, for protocols that answer with it (S3 POST's ETag), computed a
/// batch at a time on a blocking thread so hashing overlaps reading and writing.
fn md5_pipelined() -> Pipelined<Md5> {
    Pipelined::new(Md5::new(), |md5, pieces| {
        for piece in pieces {
            md5.update(piece);
        }
        Ok(())
    })
}

/// An upload whose bytes are arriving.
pub struct Receiving {
    id: UploadId,
    key: ObjectKey,
    writer: Box<dyn ObjectWriter>,
    md5: Option<Pipelined<Md5>>,
    /// Counts its bytes for the progress the origin shows.
    counter: progress::Counter,
    /// Whether this edge opened the record (and so drops it when the upload is abandoned).
    opened_here: bool,
    /// No client waits for its answer (a fetch from a URL): a storage failure at its end
    /// fails it with a code instead of dropping its record.
    unattended: bool,
    size: u64,
    max_size: u64,
    quota: Option<u64>,
}

impl Ingest {
    /// An ingest core writing to `store` and reporting to `origin`.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, origin: Arc<dyn ControlPlane>, max_upload_size: u64) -> Self {
        Self {
            store,
            origin,
            max_upload_size,
            forwarder: None,
            name: None,
            progress: Arc::default(),
            moved: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(24 * 3600))
                .build(),
        }
    }

    /// This edge's name in the fleet: it then tells the origin which chunked uploads it holds.
    #[must_use]
    pub fn with_name(mut self, name: Option<String>) -> Self {
        self.name = name;
        self
    }

    /// Forwards spooled uploads while they arrive when the store takes parts, keeping the
    /// forwarding state under `dir`; parts are recorded at the origin as this edge's (call
    /// [`Self::with_name`] first).
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn with_forwarding(mut self, dir: &std::path::Path) -> Result<Self, StoreError> {
        let log = Arc::new(OriginPartLog {
            origin: self.origin.clone(),
            name: self.name.clone(),
            moved: self.moved.clone(),
        });
        self.forwarder =
            Forwarder::new(self.store.clone(), dir)?.map(|f| Arc::new(f.with_log(log)));
        Ok(self)
    }

    /// Takes over a resumable upload another edge was forwarding and lost: when parts of it
    /// reached storage (as the origin recorded them), its multipart upload continues here after
    /// them. Returns the offset the upload resumes from (0: from the start).
    ///
    /// # Errors
    /// The upload's key is unusable, or the forwarding state cannot be written.
    pub async fn adopt(&self, upload: &UploadInfo) -> Result<Offset, IngestError> {
        let (Some(forwarder), Some(parts)) = (&self.forwarder, &upload.parts) else {
            return Ok(Offset::ZERO);
        };
        let key = ObjectKey::new(upload.object_key.clone()).map_err(IngestError::BadKey)?;
        let adopted = forwarder
            .adopt(upload.id, &key, parts)
            .await
            .map_err(IngestError::Store)?
            .map_or(Offset::ZERO, Offset::new);
        tracing::info!(upload_id = %upload.id, offset = %adopted, parts = parts.parts.len(),
            "Adopted an upload another edge was forwarding; it continues after the parts in storage.");
        Ok(adopted)
    }

    /// Makes this edge the writer of a resumable upload it does not hold (in a fleet): from now
    /// on only its parts and its completion count. Returns the upload as it stands after the
    /// take-over; `None` when this edge is not in a fleet.
    ///
    /// # Errors
    /// The origin fails, does not know the upload, or it is no longer receiving.
    pub async fn become_writer(&self, id: UploadId) -> Result<Option<UploadInfo>, IngestError> {
        let Some(name) = &self.name else {
            return Ok(None);
        };
        let info = self.origin.adopt(id, name).await?;
        info.map(Some)
            .ok_or(IngestError::Origin(ControlError::NotFound))
    }

    /// Whether another edge took this resumable upload over since this edge last recorded a
    /// part of it (once: the answer is consumed).
    pub async fn moved_away(&self, id: UploadId) -> bool {
        self.moved.remove(&id).await.is_some()
    }

    /// Stops forwarding a spooled upload another edge took over, keeping what reached storage.
    pub async fn release_spooled(&self, id: UploadId) {
        if let Some(forwarder) = &self.forwarder {
            forwarder.release(id).await;
        }
    }

    /// `body`, counted as upload `id`'s bytes after the `base` it already holds, for the
    /// progress the origin shows and notifies.
    pub fn track<S: Body>(&self, id: UploadId, base: Offset, body: S) -> impl Body {
        self.progress.track(id, base.bytes(), body)
    }

    /// Reports the uploads whose bytes grew to the origin, every
    /// [`progress::REPORT_EVERY`], for ever.
    pub async fn report_progress(&self) {
        progress::report_loop(self.progress.clone(), |changes| async move {
            if let Err(e) = self.origin.progress(&changes).await {
                tracing::warn!(error = %crate::error::chain(&e), uploads = changes.len(), "Could not report upload progress; the next growth of these uploads is reported again.");
            }
        })
        .await;
    }

    /// Whether spooled uploads are forwarded while they arrive (the store takes parts).
    #[must_use]
    pub fn forwards_spooled(&self) -> bool {
        self.forwarder.is_some()
    }

    /// Where the CRC32C of a spooled upload's bytes is recorded as they are written, for the
    /// store's parts (`None` when the store does not take parts).
    #[must_use]
    pub fn crc_ledger(&self, upload: UploadId) -> Option<Arc<CrcLedger>> {
        self.forwarder.as_ref().map(|f| f.crc_ledger(upload))
    }

    /// More of a spooled upload is written (not necessarily synced): full parts go to a store
    /// that takes parts. `declared` is the upload's size if known.
    pub fn spooled(&self, upload: &UploadInfo, declared: Option<Offset>, spooled: Spooled) {
        let Some(forwarder) = &self.forwarder else {
            return;
        };
        match ObjectKey::new(upload.object_key.clone()) {
            Ok(key) => forwarder.grown(upload.id, &key, declared.map(Offset::bytes), spooled),
            Err(e) => {
                tracing::warn!(upload_id = %upload.id, error = e, "Not forwarding an upload with an unusable key.")
            }
        }
    }

    /// Drops the spool files of direct uploads a crash ended; how many.
    pub async fn sweep_direct(&self) -> usize {
        match &self.forwarder {
            Some(forwarder) => forwarder.sweep_direct().await,
            None => 0,
        }
    }

    /// Drops what was forwarded of a spooled upload that will not complete.
    pub async fn discard_spooled(&self, id: UploadId) {
        if let Some(forwarder) = &self.forwarder {
            forwarder.discard(id).await;
        }
    }

    /// The largest upload accepted.
    #[must_use]
    pub fn max_upload_size(&self) -> u64 {
        self.max_upload_size
    }

    /// The account behind an API key, `None` if the key is unknown.
    ///
    /// # Errors
    /// The origin cannot be asked.
    pub async fn authenticate(&self, api_key: &str) -> Result<Option<KeyOwner>, IngestError> {
        self.origin
            .resolve_key(api_key)
            .await
            .map_err(IngestError::Origin)
    }

    /// The account behind a form's access key, with its signing secret.
    ///
    /// # Errors
    /// The origin cannot be asked.
    pub async fn authenticate_access_key(
        &self,
        access_key: &str,
    ) -> Result<Option<AccessKeyOwner>, IngestError> {
        self.origin
            .resolve_access_key(access_key)
            .await
            .map_err(IngestError::Origin)
    }

    /// Opens an upload for `owner`, sent by `client`.
    ///
    /// # Errors
    /// The origin or the store fails.
    pub async fn create(
        &self,
        owner: &KeyOwner,
        flavour: &str,
        filename: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<Receiving, IngestError> {
        let record = Record {
            flavour,
            filename,
            client,
            ..Record::default()
        };
        self.create_at(owner, &record).await
    }

    /// Opens an upload as `record` says (under a client-chosen key, S3 POST: an upload already
    /// receiving under that key, an xvid session, is continued).
    ///
    /// # Errors
    /// The origin or the store fails.
    pub async fn create_at(
        &self,
        owner: &KeyOwner,
        record: &Record<'_>,
    ) -> Result<Receiving, IngestError> {
        let (info, reused) = self.open_record(owner, record).await?;
        match self.resume(&info, owner.into()).await {
            Ok(mut receiving) => {
                receiving.opened_here = !reused;
                Ok(receiving)
            }
            Err(e) => {
                if !reused {
                    self.forget(info.id).await;
                }
                Err(e)
            }
        }
    }

    /// The upload record `record` names for `owner` (an xvid session's, reused), or a new one;
    /// no writer is opened. Returns it and whether it was reused.
    ///
    /// # Errors
    /// The origin fails (404 for a pipeline that is not the owner's), or the session `record`
    /// names is no longer receiving.
    pub async fn open_record(
        &self,
        owner: &KeyOwner,
        record: &Record<'_>,
    ) -> Result<(UploadInfo, bool), IngestError> {
        let created = self
            .origin
            .create(&CreateUpload {
                account_id: owner.account_id.clone(),
                pipeline_id: owner.pipeline_id.clone(),
                flavour: record.flavour.to_owned(),
                filename: record.filename.to_owned(),
                relative_key: record.relative_key.map(str::to_owned),
                session: record.session.map(str::to_owned),
                grant: record.grant.map(str::to_owned),
                length: record.length,
                writer: self.name.clone().filter(|_| record.resumable.is_some()),
                resumable: record.resumable.cloned(),
                client: record.client,
            })
            .await?;
        let info = UploadInfo {
            id: created.id,
            account_id: owner.account_id.clone(),
            object_key: created.object_key,
            status: crate::upload::Status::Receiving.code(),
            grant: record.grant.map(str::to_owned),
            length: record.length,
            parts: None,
            resumable: record.resumable.cloned(),
        };
        Ok((info, created.reused))
    }

    /// Makes the bytes durable and tells the origin, which queues processing.
    ///
    /// # Errors
    /// The store or the origin fails; the upload is then cancelled.
    pub async fn complete(
        &self,
        upload: Receiving,
        folder: Option<String>,
        metadata: Option<String>,
    ) -> Result<Completed, IngestError> {
        let Receiving {
            id,
            key,
            writer,
            md5,
            unattended,
            ..
        } = upload;
        let md5 = async {
            match md5 {
                Some(md5) => md5.finish().await.map(|m| Some(hex::encode(m.finalize()))),
                None => Ok(None),
            }
        };
        let stored = match tokio::join!(writer.finish(), md5) {
            (Ok(size), Ok(md5)) => Ok((size, md5)),
            (Err(e), _) => Err(e),
            (_, Err(e)) => Err(StoreError::Write {
                key: key.to_string(),
                source: e,
            }),
        };
        let (size, md5) = match stored {
            Ok(stored) => stored,
            Err(e) if unattended => {
                self.record_failure(id, crate::upload::Failure::ProcessingError)
                    .await;
                return Err(IngestError::Store(e));
            }
            Err(e) => {
                self.forget(id).await;
                return Err(IngestError::Store(e));
            }
        };
        let stored = UploadStored {
            size,
            sha256: None,
            folder,
            metadata,
            edge: None,
        };
        let mut done = self.report(id, &key, stored).await?;
        done.md5 = md5;
        Ok(done)
    }

    /// Tells the origin an upload's object is stored; over the quota, the object goes.
    pub(crate) async fn report(
        &self,
        id: UploadId,
        key: &ObjectKey,
        stored: UploadStored,
    ) -> Result<Completed, IngestError> {
        let stored = UploadStored {
            edge: self.name.clone(),
            ..stored
        };
        let view = match self.origin.complete(id, &stored).await {
            Ok(view) => view,
            Err(ControlError::OverQuota) => {
                // The origin decides the quota; an upload over it keeps nothing.
                if let Err(e) = self.store.delete(key).await {
                    tracing::warn!(upload_id = %id, error = %e, "Could not delete an upload over quota.");
                }
                self.forget(id).await;
                return Err(IngestError::QuotaExceeded);
            }
            Err(ControlError::Refused(refusal)) => {
                // The application refused it when its last byte was in: it has failed, and
                // its bytes are not kept.
                if let Err(e) = self.store.delete(key).await {
                    tracing::warn!(upload_id = %id, error = %e, "Could not delete an upload its application refused.");
                }
                return Err(IngestError::Refused(refusal));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Completed {
            view,
            size: stored.size,
            md5: None,
        })
    }

    /// Abandons an upload: discards its bytes, and its record if this request opened it.
    pub async fn cancel(&self, upload: Receiving) {
        upload.writer.abort().await;
        if upload.opened_here {
            self.forget(upload.id).await;
        }
    }

    /// Whether a page from `origin` may upload for `account_id` (any account when `None`).
    ///
    /// # Errors
    /// The origin cannot be asked.
    pub async fn cors_allowed(
        &self,
        origin: &str,
        account_id: Option<&str>,
    ) -> Result<bool, IngestError> {
        self.origin
            .cors_allowed(origin, account_id)
            .await
            .map_err(IngestError::Origin)
    }

    /// What the origin knows of an upload, or `None`.
    ///
    /// # Errors
    /// The origin fails.
    pub async fn upload_info(&self, id: UploadId) -> Result<Option<UploadInfo>, IngestError> {
        self.origin.upload(id).await.map_err(IngestError::Origin)
    }

    /// Whether the origin answers (readiness).
    ///
    /// # Errors
    /// The origin is unreachable or unhealthy.
    pub async fn origin_ready(&self) -> Result<(), IngestError> {
        self.origin.ready().await.map_err(IngestError::Origin)
    }

    /// Drops an upload that is still receiving (a client's termination).
    pub async fn abandon(&self, id: UploadId) {
        self.forget(id).await;
    }

    /// Continues an upload the origin opened: a fresh writer for its object, within
    /// `allowance`. Abandoning it keeps the record (the client may try again).
    ///
    /// # Errors
    /// The key is unusable or the store fails.
    pub async fn resume(
        &self,
        info: &UploadInfo,
        allowance: Allowance,
    ) -> Result<Receiving, IngestError> {
        let key = ObjectKey::new(info.object_key.clone()).map_err(IngestError::BadKey)?;
        // Into a store that takes parts, through the spool: memory stays bounded.
        let writer = match &self.forwarder {
            Some(forwarder) => forwarder.writer(info.id, &key).await,
            None => self.store.writer(&key).await,
        }
        .map_err(IngestError::Store)?;
        Ok(Receiving {
            id: info.id,
            key,
            writer,
            md5: None,
            counter: self.progress.counter(info.id, 0),
            opened_here: false,
            unattended: false,
            size: 0,
            max_size: allowance
                .max_size
                .map_or(self.max_upload_size, |m| m.min(self.max_upload_size)),
            quota: allowance.quota,
        })
    }

    /// Before a resumable upload's object is completed in storage: whether this edge still
    /// writes it (no other edge of the fleet took it over).
    ///
    /// # Errors
    /// [`IngestError::Superseded`], or the origin fails.
    pub async fn still_writer(&self, id: UploadId) -> Result<(), IngestError> {
        match &self.name {
            Some(name) => Ok(self.origin.still_writer(id, name).await?),
            None => Ok(()),
        }
    }

    /// Tells the origin an upload still receiving failed with `failure`.
    async fn record_failure(&self, id: UploadId, failure: crate::upload::Failure) {
        if let Err(e) = self.origin.fail(id, failure).await {
            tracing::warn!(upload_id = %id, error = %crate::error::chain(&e), "Could not record a failed upload; the sweeper drops it.");
        }
    }

    async fn forget(&self, id: UploadId) {
        if let Err(e) = self.origin.cancel(id).await {
            tracing::warn!(upload_id = %id, error = %e, "Could not drop an unfinished upload record.");
        }
    }
}

impl Receiving {
    /// The upload's id.
    #[must_use]
    pub fn id(&self) -> UploadId {
        self.id
    }

    /// Bytes received so far.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The most bytes it may hold.
    #[must_use]
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// No client waits for this upload's answer (a fetch from a URL): if storage fails at its
    /// end it fails with a code, rather than its record being dropped for a client to retry.
    #[must_use]
    pub fn unattended(mut self) -> Self {
        self.unattended = true;
        self
    }

    /// Also computes the bytes' MD5 (for an S3 ETag); before the first byte.
    #[must_use]
    pub fn with_md5(mut self) -> Self {
        debug_assert_eq!(self.size, 0, "MD5 asked for after bytes arrived");
        self.md5 = Some(md5_pipelined());
        self
    }

    /// Lowers the largest size this upload may reach (a flavour's own limit).
    pub fn cap(&mut self, max: u64) {
        self.max_size = self.max_size.min(max);
    }

    /// Appends the next bytes.
    ///
    /// # Errors
    /// A limit is exceeded or the store fails.
    pub async fn append(&mut self, data: Bytes) -> Result<(), IngestError> {
        let size = self.size + data.len() as u64;
        if size > self.max_size {
            return Err(IngestError::TooLarge {
                limit: self.max_size,
            });
        }
        if self.quota.is_some_and(|q| size > q) {
            return Err(IngestError::QuotaExceeded);
        }
        if let Some(md5) = self.md5.as_mut() {
            md5.push(data.clone()).await.map_err(|source| {
                IngestError::Store(StoreError::Write {
                    key: self.key.to_string(),
                    source,
                })
            })?;
        }
        let n = data.len();
        self.writer.write(data).await.map_err(IngestError::Store)?;
        self.counter.add(n);
        self.size = size;
        Ok(())
    }
}
