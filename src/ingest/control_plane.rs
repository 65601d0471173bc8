//! What the ingest core asks of the control plane (the origin): who owns a key, open an upload,
//! record a part that reached storage, take over or keep writing an upload, complete, cancel.
//! Outcomes are typed ([`ControlError`]), never HTTP status codes: the edge's client of the
//! origin's internal API implements this trait and does the translating.
//!
//! Must not depend on HTTP or on the edge.

use crate::control::{
    AccessKeyOwner, CreateUpload, CreatedUpload, KeyOwner, RecordPart, StatusView, UploadInfo,
    UploadStored,
};
use crate::upload::UploadId;

/// Why the control plane said no, or could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// It could not be asked, or failed; the request may be retried.
    #[error("the control plane is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// What the request names does not exist for its owner (an upload, a pipeline).
    #[error("not found")]
    NotFound,
    /// The upload session a signed form names is no longer receiving.
    #[error("the upload session is no longer receiving")]
    SessionClosed,
    /// Completing the upload would take its account over its storage quota.
    #[error("the account's storage quota is reached")]
    OverQuota,
    /// Another edge took the upload over: this one may no longer write it.
    #[error("another edge now writes this upload")]
    Superseded,
    /// The upload is no longer receiving (its status code).
    #[error("the upload is no longer receiving (status {0})")]
    NotReceiving(i64),
    /// The account's application refused the upload through its hook (before it was
    /// created, or when its last byte was in: it has then failed).
    #[error("the application refused the upload ({})", .0.status)]
    Refused(crate::hook::Refusal),
}

/// What the control plane answered an edge taking chunks of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// This edge holds them.
    Yes,
    /// Another edge, alive, holds the upload's earlier chunks.
    ByOther(String),
    /// The upload is no longer receiving (its status code): stored, or failed (its chunks
    /// were on an edge that was lost).
    Over(i64),
    /// No such upload.
    Unknown,
}

/// The control plane as the ingest core sees it.
#[async_trait::async_trait]
pub trait ControlPlane: std::fmt::Debug + Send + Sync {
    /// Whether it answers (readiness).
    async fn ready(&self) -> Result<(), ControlError>;

    /// The account behind an API key, `None` if the key is unknown.
    async fn resolve_key(&self, api_key: &str) -> Result<Option<KeyOwner>, ControlError>;

    /// The account behind a form's access key, with its signing secret.
    async fn resolve_access_key(
        &self,
        access_key: &str,
    ) -> Result<Option<AccessKeyOwner>, ControlError>;

    /// Whether a page from `origin` may upload for `account_id` (any account when `None`).
    async fn cors_allowed(
        &self,
        origin: &str,
        account_id: Option<&str>,
    ) -> Result<bool, ControlError>;

    /// What is known of an upload, `None` if nothing.
    async fn upload(&self, id: UploadId) -> Result<Option<UploadInfo>, ControlError>;

    /// Opens an upload record (or continues the session `req` names).
    ///
    /// # Errors
    /// [`ControlError::NotFound`] for a pipeline not the owner's,
    /// [`ControlError::SessionClosed`] for a session no longer receiving,
    /// [`ControlError::Refused`] when the account's `pre-create` hook refuses it.
    async fn create(&self, req: &CreateUpload) -> Result<CreatedUpload, ControlError>;

    /// Edge `edge` takes over writing a resumable upload (from an edge that was lost, or that
    /// the client left): from now on only its parts and its completion count. Returns the
    /// upload as it stands after the take-over (with the parts in storage), `None` if unknown.
    async fn adopt(&self, id: UploadId, edge: &str) -> Result<Option<UploadInfo>, ControlError>;

    /// Whether edge `edge` still writes a resumable upload, asked before it completes the
    /// object in storage.
    ///
    /// # Errors
    /// [`ControlError::Superseded`] when another edge took it over.
    async fn still_writer(&self, id: UploadId, edge: &str) -> Result<(), ControlError>;

    /// Edge `edge` takes chunks of an upload not yet in storage (numbered-chunk protocols).
    async fn hold(&self, id: UploadId, edge: &str) -> Result<Held, ControlError>;

    /// Records that a part of an upload reached storage.
    ///
    /// # Errors
    /// [`ControlError::Superseded`] when another edge writes the upload now.
    async fn record_part(&self, id: UploadId, part: &RecordPart) -> Result<(), ControlError>;

    /// Records that every byte of an upload is stored; processing is queued.
    ///
    /// # Errors
    /// [`ControlError::OverQuota`], [`ControlError::Superseded`] when another edge writes the
    /// upload now, or [`ControlError::Refused`] when the account's `pre-finish` hook refused it
    /// (the upload has failed).
    async fn complete(
        &self,
        id: UploadId,
        stored: &UploadStored,
    ) -> Result<StatusView, ControlError>;

    /// Bytes arrived so far of uploads still receiving (id, bytes).
    async fn progress(&self, uploads: &[(UploadId, u64)]) -> Result<(), ControlError>;

    /// Drops an upload that will never finish.
    async fn cancel(&self, id: UploadId) -> Result<(), ControlError>;

    /// Ends an upload still receiving as failed, with `failure` (an upload from a URL whose
    /// source could not be fetched): its record stays, saying why.
    async fn fail(&self, id: UploadId, failure: crate::upload::Failure)
        -> Result<(), ControlError>;
}
