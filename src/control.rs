//! The internal API between an edge and its origin: paths, the shared-secret header and the
//! JSON messages. Both sides use these types, so they cannot drift apart.
//!
//! Pure data: depends on serde only.

use serde::{Deserialize, Serialize};

/// The header carrying the shared internal secret on every internal request.
pub const SECRET_HEADER: &str = "x-uplink-internal-secret";

/// Every internal path starts with this; the edge never proxies it from the public side.
pub const PREFIX: &str = "/internal/";

/// The S3 POST form field (covered by the signed policy) naming the region whose edges may take
/// the form; the origin adds it to xvid sessions when it chooses an edge by location.
pub const REGION_FORM_FIELD: &str = "x-uplink-region";

/// The S3 POST form field (covered by the signed policy) naming the upload an xvid session's
/// form completes: a client that opened several sessions for one key completes each its own.
pub const SESSION_FORM_FIELD: &str = "x-uplink-session";

/// `POST /internal/v1/api-keys/resolve`: which account owns an API key.
#[derive(Debug, Serialize, Deserialize)]
pub struct ResolveKey {
    /// The Bearer key as the client sent it.
    pub api_key: String,
}

/// The answer to [`ResolveKey`] (404 when the key is unknown).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyOwner {
    /// The account.
    pub account_id: String,
    /// Its default pipeline.
    pub pipeline_id: String,
    /// Bytes the account may still store, if it has a quota.
    pub quota_remaining: Option<u64>,
    /// The largest single upload the account may make, if limited.
    #[serde(default)]
    pub max_upload_size: Option<u64>,
    /// The account's own validity for upload tokens and URLs, in seconds.
    pub token_ttl_secs: Option<u64>,
}

/// `POST /internal/v1/cors/check`: may a page from `origin` upload for `account_id` (or, for
/// a preflight, whose account is not known yet, for any account)?
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CorsCheck {
    /// The `Origin` header as the browser sent it.
    pub origin: String,
    /// The request's account, when its credentials name one.
    pub account_id: Option<String>,
}

/// The answer to [`CorsCheck`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CorsAnswer {
    /// Whether the origin is allowed.
    pub allowed: bool,
}

/// `POST /internal/v1/access-keys/resolve`: which account owns an access key, and its
/// signing secret (the edge verifies form signatures itself).
#[derive(Debug, Serialize, Deserialize)]
pub struct ResolveAccessKey {
    /// The access key as the form sent it.
    pub access_key: String,
}

/// The answer to [`ResolveAccessKey`] (404 when unknown). `Debug` hides the secret.
#[derive(Clone, Serialize, Deserialize)]
pub struct AccessKeyOwner {
    /// The account.
    pub owner: KeyOwner,
    /// The account's HMAC secret.
    pub secret: String,
}

impl std::fmt::Debug for AccessKeyOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeyOwner")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// `POST /internal/v1/uploads`: a new upload is starting at the edge.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreateUpload {
    /// The owning account.
    pub account_id: String,
    /// Its pipeline.
    pub pipeline_id: String,
    /// The API flavour receiving it (`uploads_api`, …).
    pub flavour: String,
    /// The client's file name.
    pub filename: String,
    /// The object key relative to the pipeline root, when the client chooses it (S3 POST).
    /// An upload still receiving under that key (an xvid session) is reused.
    #[serde(default)]
    pub relative_key: Option<String>,
    /// The upload a signed form names ([`SESSION_FORM_FIELD`]): that one is continued, and only
    /// while it is still receiving under `relative_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The upload token (grant) creating it: only that grant's tokens reach it afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// Its length, when the client declared it at creation (tus `Upload-Length`): any edge
    /// that continues the upload then completes it at its last byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<crate::upload::Offset>,
    /// The edge that will write it (a resumable upload created by a named edge): only its part
    /// records and completion count until another edge adopts the upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
    /// A resumable upload's protocol state, for an edge that adopts the upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumable: Option<ResumableState>,
    /// The client's address, as the edge saw it (for the account's `pre-create` hook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<std::net::IpAddr>,
}

/// The answer of `POST /internal/v1/uploads` or `…/stored` (403) when the account's hook
/// refused the upload: what its client is to see.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HookRefused {
    /// The status and message.
    pub refused: crate::hook::Refusal,
}

/// What a resumable upload's protocol knows besides its length, kept at the origin so that
/// another edge of the fleet can continue the upload as the one that created it would.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumableState {
    /// tus `Upload-Metadata` as the client sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// A partial upload of a tus concatenation: stored only with its final upload.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// The answer to [`CreateUpload`]: where the edge writes the bytes.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreatedUpload {
    /// The upload's public id.
    pub id: crate::upload::UploadId,
    /// The object key for the source bytes.
    pub object_key: String,
    /// Whether an upload already receiving under the key was reused (the edge must not drop
    /// a record it did not open).
    #[serde(default)]
    pub reused: bool,
}

/// `POST /internal/v1/uploads/{id}/stored`: every byte is durably stored.
#[derive(Debug, Serialize, Deserialize)]
pub struct UploadStored {
    /// Bytes stored.
    pub size: u64,
    /// Their hex SHA-256, when the edge computed it; otherwise the origin's worker does when
    /// it reads the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The Uploads API `folder`.
    pub folder: Option<String>,
    /// Flavour settings learnt with the bytes (the HTML form's `custom_*` fields), JSON text.
    #[serde(default)]
    pub metadata: Option<String>,
    /// The edge completing it (a resumable upload's writer): refused (409, [`HoldRefused`]
    /// naming the writer) when another edge took the upload over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<String>,
}

/// `POST /internal/v1/uploads/{id}/hold`: edge `edge` takes chunks of the upload that are not
/// yet in storage (numbered-chunk protocols). 204 when it holds them, 404 for an unknown upload,
/// 409 with [`HoldRefused`] otherwise.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldUpload {
    /// The edge's name (its heartbeats').
    pub edge: String,
}

/// `POST /internal/v1/uploads/{id}/writer`: whether edge `edge` writes a resumable upload;
/// with `take`, it takes the upload over first (adoption). 200 with the [`UploadInfo`] when it
/// writes, 404 for an unknown upload, 409 with [`HoldRefused`] otherwise (another writer, or
/// the upload's status when it is no longer receiving).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteUpload {
    /// The edge's name (its heartbeats').
    pub edge: String,
    /// Take the upload over.
    pub take: bool,
}

/// Why an edge may not hold an upload's chunks, or write it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldRefused {
    /// Another edge holds them and has not been lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// The upload is no longer receiving (its status code): stored, or failed (when the edge
    /// that held its chunks was lost, just now or before: `edge_lost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
}

/// `GET /internal/v1/uploads/{id}`: what an edge needs to continue an upload the origin
/// opened (404 when unknown).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadInfo {
    /// The upload's id.
    pub id: crate::upload::UploadId,
    /// The owning account.
    pub account_id: String,
    /// Where its bytes go.
    pub object_key: String,
    /// Its status code.
    pub status: i64,
    /// The upload token (grant) that created it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// Its length, when declared before its bytes (tus `Upload-Length` at creation, Cloud VoD
    /// `fileSize`): whichever edge holds the last byte completes the upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<crate::upload::Offset>,
    /// The parts of it that reached storage (resumable uploads forwarded in parts): an edge
    /// that adopts it continues from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<StoredParts>,
    /// A resumable upload's protocol state, as it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumable: Option<ResumableState>,
}

/// Parts of an upload in the store's multipart upload `multipart_id`, as an edge forwarding
/// it recorded them (`POST /internal/v1/uploads/{id}/parts`, one [`RecordPart`] per part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredParts {
    /// The store's multipart upload.
    pub multipart_id: String,
    /// The size the part plan was made for, if it was known.
    pub declared: Option<u64>,
    /// The parts, by number.
    pub parts: Vec<crate::store::SentPart>,
}

/// `POST /internal/v1/uploads/{id}/parts`: one part of an upload reached storage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordPart {
    /// The store's multipart upload.
    pub multipart_id: String,
    /// The size the part plan was made for, if it was known.
    pub declared: Option<u64>,
    /// The part.
    pub part: crate::store::SentPart,
    /// The edge that stored it: refused (409, [`HoldRefused`] naming the writer) when another
    /// edge took the upload over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<String>,
}

/// `POST /internal/v1/uploads/{id}/failed`: an upload still receiving failed at the edge (its
/// [`crate::upload::Failure`] code). 204, or 404 for an upload not receiving.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadFailed {
    /// The failure's code.
    pub code: String,
}

/// `POST /internal/v1/progress`: bytes arrived so far of uploads still receiving, as one edge
/// reports them every couple of seconds (only those that grew). 204.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Upload id and bytes arrived.
    pub uploads: Vec<(crate::upload::UploadId, u64)>,
}

/// A status as both APIs show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    /// The upload's id.
    pub id: String,
    /// Numeric code.
    pub status: i64,
    /// Its text.
    pub status_text: String,
    /// The application's answer to its `pre-finish` hook, passed on to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_response: Option<serde_json::Value>,
}

/// `POST /internal/v1/edges/heartbeat`: an edge of the fleet says it is alive and how busy it
/// is (404 when the origin's fleet has no edge of that name, 409 when its region differs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The edge's configured `name`.
    pub name: String,
    /// The edge's configured `region`.
    pub region: Option<String>,
    /// Uploads in progress on it.
    pub active_uploads: u64,
    /// Free bytes on its spool disk.
    pub spool_free_bytes: u64,
    /// It is shutting down and takes no new uploads.
    pub draining: bool,
}
