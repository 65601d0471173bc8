//! Tokens for tus and IETF resumable-upload clients: `POST /v1/upload-tokens` (JSON, optional
//! `filename`, `max_size`, `ttl` in seconds, `max_uploads`) answers
//! `201 {"token", "tus_endpoint", "expires_at"}`. One token may create several uploads within
//! its validity, unless `max_uploads` limits it; each upload then belongs to that token's grant,
//! and no other token of the account reaches it. With `upload_id` (and optionally `ttl`,
//! `max_size`) it answers `201 {"token", "upload_url", "expires_at"}`: a fresh token scoped to
//! that one upload, so an upload outlives the token that created it. Bearer API-key auth.

use super::api::{check_filename, owner, parse_json, time, ApiError};
use super::routing::ClientAddr;
use super::session::{self, Limits};
use super::State;
use crate::db::{self, now_ms, upload_token::IssuedToken};
use crate::error::UploadsApiError;
use crate::token::Scope;
use crate::upload::Status;
use axum::extract::State as Ext;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

/// Where tus clients create uploads at the edge; the token's ACL covers everything under it.
pub const TUS_PATH: &str = "/files/";

/// The shortest and longest validity a client may ask for.
const TTL_RANGE: std::ops::RangeInclusive<u64> = 60..=7 * 24 * 3600;

/// The routes.
pub fn routes() -> Router<State> {
    Router::new().route("/v1/upload-tokens", post(create))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    filename: Option<String>,
    max_size: Option<u64>,
    ttl: Option<u64>,
    max_uploads: Option<u32>,
    upload_id: Option<String>,
}

fn invalid(field: &'static str, message: &str) -> ApiError {
    ApiError(UploadsApiError::Invalid {
        field,
        message: message.to_owned(),
    })
}

/// What a token request's answer is made of: who asks, the edge chosen, the validity.
struct Grant<'a> {
    state: &'a State,
    owner: &'a crate::control::KeyOwner,
    edge: super::routing::Target,
    ttl: Duration,
}

async fn create(
    Ext(state): Ext<State>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let owner = owner(&state, &headers).await?;
    let req: Request = parse_json(&body)?;
    check(&req)?;
    let grant = Grant {
        ttl: session::validity(&state, &owner, req.ttl.map(Duration::from_secs)),
        edge: state.edges.target(&state, client).await,
        state: &state,
        owner: &owner,
    };
    let answer = match &req.upload_id {
        Some(id) => for_upload(&grant, id, req.max_size).await?,
        None => for_new_uploads(grant, req).await?,
    };
    Ok((StatusCode::CREATED, Json(answer)))
}

/// The request's fields, each within its range.
fn check(req: &Request) -> Result<(), ApiError> {
    if let Some(name) = &req.filename {
        check_filename("filename", name)?;
    }
    if req.max_size == Some(0) {
        return Err(invalid(
            "max_size",
            "The max_size must be a positive number of bytes.",
        ));
    }
    if req.ttl.is_some_and(|t| !TTL_RANGE.contains(&t)) {
        return Err(invalid(
            "ttl",
            "The ttl must be between 60 and 604800 seconds.",
        ));
    }
    if req.max_uploads == Some(0) {
        return Err(invalid(
            "max_uploads",
            "The max_uploads must be at least 1.",
        ));
    }
    if req.upload_id.is_some() && (req.filename.is_some() || req.max_uploads.is_some()) {
        return Err(invalid(
            "upload_id",
            "A token for an existing upload takes no filename or max_uploads.",
        ));
    }
    Ok(())
}

/// A token scoped to one upload of this account that is still receiving (any other is
/// unknown): `{"token", "upload_url", "expires_at"}`.
async fn for_upload(grant: &Grant<'_>, id: &str, max_size: Option<u64>) -> Result<Value, ApiError> {
    let upload = db::upload::get(&grant.state.db, id)
        .await?
        .filter(|u| u.account_id == grant.owner.account_id && u.status == Status::Receiving)
        .ok_or(ApiError(UploadsApiError::NotFound))?;
    let limits = Limits {
        max_size,
        region: grant.edge.region.clone(),
        ..Limits::default()
    };
    let minted = session::mint(
        grant.state,
        grant.owner,
        Scope::Upload(upload.id.clone()),
        limits,
        grant.ttl,
        session::now_secs(),
    )?;
    Ok(json!({
        "token": minted.token,
        "upload_url": format!("{}{TUS_PATH}{}", grant.edge.url, upload.id),
        "expires_at": expires_at(minted.expires),
    }))
}

/// A token (a grant of its own) that creates uploads: `{"token", "tus_endpoint", "expires_at"}`.
async fn for_new_uploads(grant: Grant<'_>, req: Request) -> Result<Value, ApiError> {
    let token_id = uuid::Uuid::new_v4().simple().to_string();
    let limits = Limits {
        max_size: req.max_size,
        max_uploads: req.max_uploads,
        token_id: Some(token_id.clone()),
        region: grant.edge.region.clone(),
    };
    let minted = session::mint(
        grant.state,
        grant.owner,
        Scope::Acl(format!("{TUS_PATH}*")),
        limits,
        grant.ttl,
        session::now_secs(),
    )?;
    let issued = IssuedToken {
        id: token_id,
        account_id: grant.owner.account_id.clone(),
        filename: req.filename,
        max_uploads: req.max_uploads,
        expires_at: minted.expires,
    };
    db::upload_token::insert(&grant.state.db, &issued, now_ms()).await?;
    Ok(json!({
        "token": minted.token,
        "tus_endpoint": format!("{}{TUS_PATH}", grant.edge.url),
        "expires_at": expires_at(minted.expires),
    }))
}

/// A token's expiry (Unix seconds) as the API shows times.
fn expires_at(secs: u64) -> String {
    time(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
}
