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

async fn create(
    Ext(state): Ext<State>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let owner = owner(&state, &headers).await?;
    let req: Request = parse_json(&body)?;
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
    let ttl = session::validity(&state, &owner, req.ttl.map(Duration::from_secs));
    let edge = state.edges.target(&state, client).await;
    if let Some(id) = &req.upload_id {
        if req.filename.is_some() || req.max_uploads.is_some() {
            return Err(invalid(
                "upload_id",
                "A token for an existing upload takes no filename or max_uploads.",
            ));
        }
        // Only an upload of this account that is still receiving; any other is unknown.
        let upload = db::upload::get(&state.db, id)
            .await?
            .filter(|u| u.account_id == owner.account_id && u.status == Status::Receiving)
            .ok_or(ApiError(UploadsApiError::NotFound))?;
        let limits = Limits {
            max_size: req.max_size,
            region: edge.region,
            ..Limits::default()
        };
        let minted = session::mint(
            &state,
            &owner,
            Scope::Upload(upload.id.clone()),
            limits,
            ttl,
            session::now_secs(),
        )?;
        return Ok((
            StatusCode::CREATED,
            Json(json!({
                "token": minted.token,
                "upload_url": format!("{}{TUS_PATH}{}", edge.url, upload.id),
                "expires_at": expires_at(minted.expires),
            })),
        ));
    }
    let token_id = uuid::Uuid::new_v4().simple().to_string();
    let limits = Limits {
        max_size: req.max_size,
        max_uploads: req.max_uploads,
        token_id: Some(token_id.clone()),
        region: edge.region,
    };
    let minted = session::mint(
        &state,
        &owner,
        Scope::Acl(format!("{TUS_PATH}*")),
        limits,
        ttl,
        session::now_secs(),
    )?;
    let issued = IssuedToken {
        id: token_id,
        account_id: owner.account_id.clone(),
        filename: req.filename,
        max_uploads: req.max_uploads,
        expires_at: minted.expires,
    };
    db::upload_token::insert(&state.db, &issued, now_ms()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": minted.token,
            "tus_endpoint": format!("{}{TUS_PATH}", edge.url),
            "expires_at": expires_at(minted.expires),
        })),
    ))
}

/// A token's expiry (Unix seconds) as the API shows times.
fn expires_at(secs: u64) -> String {
    time(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
}
