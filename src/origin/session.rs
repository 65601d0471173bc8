//! Upload sessions, the part every control-API flavour shares: open an upload record for a
//! pipeline (its object key under the pipeline's root) and mint the edge token that lets a
//! client send its bytes.

use super::State;
use crate::control::KeyOwner;
use crate::db::{self, upload::NewUpload, DbError};
use crate::store::ObjectKey;
use crate::token::{Claims, Scope, TokenError};
use crate::upload::UploadId;
use std::time::Duration;

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The pipeline does not exist or is another account's.
    #[error("unknown pipeline")]
    UnknownPipeline,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A token could not be minted (a claim the format cannot carry).
    #[error("cannot mint a token")]
    Token(#[source] TokenError),
}

/// What a flavour asks for when it opens an upload.
#[derive(Debug, Default)]
pub struct Opening<'a> {
    /// `uploads_api`, `movingimage`, `xvid`, `cloudvod`, `tus`…
    pub flavour: &'a str,
    /// The client's file name.
    pub filename: &'a str,
    /// The pipeline; the account's default when `None`.
    pub pipeline_id: Option<&'a str>,
    /// Object key relative to the pipeline root; `uploads/ID/source` when `None`.
    pub relative_key: Option<&'a str>,
    /// The upload token that creates it.
    pub token_id: Option<&'a str>,
    /// When an unused upload may be deleted (ms).
    pub expires_at: Option<i64>,
    /// Flavour settings for later stages (JSON text).
    pub metadata: Option<String>,
    /// The client's own key for the upload.
    pub client_ref: Option<&'a str>,
    /// Its length, when the client gave it before any byte.
    pub declared_size: Option<u64>,
    /// The edge writing it (a resumable upload a named edge creates).
    pub writer: Option<&'a str>,
    /// A resumable upload's protocol state (JSON text).
    pub resumable_state: Option<String>,
    /// Its folder, when the application's `pre-create` hook set one.
    pub folder: Option<String>,
    /// The application's metadata its `pre-create` hook set (a JSON object, as text).
    pub app_metadata: Option<String>,
}

/// An opened upload.
#[derive(Debug, Clone)]
pub struct Opened {
    /// Its id.
    pub id: UploadId,
    /// Its pipeline.
    pub pipeline_id: String,
    /// Where its bytes go.
    pub object_key: ObjectKey,
}

/// Creates an upload record in status `receiving`.
///
/// # Errors
/// Unknown pipeline, an unusable key, or a database failure.
pub async fn open(
    state: &State,
    owner: &KeyOwner,
    o: &Opening<'_>,
    now: i64,
) -> Result<Opened, SessionError> {
    let pipeline_id = o.pipeline_id.unwrap_or(&owner.pipeline_id);
    let root = db::account::pipeline_root(&state.db, &owner.account_id, pipeline_id)
        .await?
        .ok_or(SessionError::UnknownPipeline)?;
    let id = UploadId::new();
    let relative = o
        .relative_key
        .map_or_else(|| format!("uploads/{id}/source"), str::to_owned);
    let object_key = ObjectKey::new(format!("{root}{relative}"))
        .map_err(|e| DbError::Corrupt(format!("object key under pipeline {pipeline_id}: {e}")))?;
    let new = NewUpload {
        id,
        account_id: owner.account_id.clone(),
        pipeline_id: pipeline_id.to_owned(),
        flavour: o.flavour.to_owned(),
        filename: o.filename.to_owned(),
        object_key: object_key.to_string(),
        token_id: o.token_id.map(str::to_owned),
        expires_at: o.expires_at,
        metadata: o.metadata.clone(),
        client_ref: o.client_ref.map(str::to_owned),
        declared_size: o.declared_size,
        writer: o.writer.map(str::to_owned),
        resumable_state: o.resumable_state.clone(),
        folder: o.folder.clone(),
        app_metadata: o.app_metadata.clone(),
    };
    db::upload::insert(&state.db, &new, now).await?;
    crate::metrics::upload_created(o.flavour);
    Ok(Opened {
        id,
        pipeline_id: pipeline_id.to_owned(),
        object_key,
    })
}

/// The upload still receiving under a pipeline-relative key (an xvid session's), if any: the
/// newest, or the one `session` names.
///
/// # Errors
/// Unknown pipeline, or a database failure.
pub async fn receiving_at(
    state: &State,
    owner: &KeyOwner,
    relative: &str,
    session: Option<&str>,
) -> Result<Option<Opened>, SessionError> {
    let root = db::account::pipeline_root(&state.db, &owner.account_id, &owner.pipeline_id)
        .await?
        .ok_or(SessionError::UnknownPipeline)?;
    let key = format!("{root}{relative}");
    let Some(upload) =
        db::upload::receiving_by_key(&state.db, &owner.account_id, &key, session).await?
    else {
        return Ok(None);
    };
    let id = upload
        .id
        .parse()
        .map_err(|_| DbError::Corrupt(format!("upload id {}", upload.id)))?;
    let object_key =
        ObjectKey::new(upload.object_key).map_err(|e| DbError::Corrupt(e.to_owned()))?;
    Ok(Some(Opened {
        id,
        pipeline_id: upload.pipeline_id,
        object_key,
    }))
}

/// A minted edge token and when it expires (Unix seconds).
#[derive(Debug, Clone)]
pub struct Minted {
    /// The token, for `__token__=` or `Authorization: Bearer`.
    pub token: String,
    /// Its expiry.
    pub expires: u64,
}

/// How long the account's tokens are valid, unless the request asks for less.
#[must_use]
pub fn validity(state: &State, owner: &KeyOwner, requested: Option<Duration>) -> Duration {
    let account = owner
        .token_ttl_secs
        .map_or(state.settings.token_ttl, Duration::from_secs);
    requested.map_or(account, |r| r.min(account))
}

/// What a token limits besides its scope.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Largest upload, in bytes (capped further by the account's own limit).
    pub max_size: Option<u64>,
    /// How many uploads the token may create.
    pub max_uploads: Option<u32>,
    /// The token's id, for counting its uploads.
    pub token_id: Option<String>,
    /// The edge region it is for (geo routing).
    pub region: Option<String>,
}

/// Signs a token for `owner` with the given scope and limits, valid for `ttl` from `now_secs`.
///
/// # Errors
/// A claim the format cannot carry.
pub fn mint(
    state: &State,
    owner: &KeyOwner,
    scope: Scope,
    limits: Limits,
    ttl: Duration,
    now_secs: u64,
) -> Result<Minted, SessionError> {
    let Limits {
        max_size,
        max_uploads,
        token_id,
        region,
    } = limits;
    let max_size = match (max_size, owner.max_upload_size) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let expires = now_secs.saturating_add(ttl.as_secs());
    let claims = Claims {
        key_id: String::new(),
        expires,
        account: owner.account_id.clone(),
        pipeline: Some(owner.pipeline_id.clone()),
        scope,
        max_size,
        quota: owner.quota_remaining,
        max_uploads,
        token_id,
        region,
    };
    let token = state
        .settings
        .keyring
        .sign(&claims)
        .map_err(SessionError::Token)?;
    Ok(Minted { token, expires })
}

pub use crate::clock::now_secs;
