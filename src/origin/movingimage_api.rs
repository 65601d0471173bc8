//! movingimage-style upload URLs: `POST /v1/videos` (`{"fileName": …}`) opens a video and
//! answers `201 {"videoId": …}`; `GET /v1/videos/{videoId}/url` answers
//! `{"url": "<edge>/upload/<videoId>?__token__=…"}`, a URL for the seed's chunk protocol valid
//! for the account's token validity (4 hours by default). Bearer API-key auth.

use super::api::{check_filename, owner, parse_json, time, ApiError};
use super::routing::ClientAddr;
use super::session::{self, Limits, Opening};
use super::State;
use crate::db::{self, now_ms};
use crate::error::UploadsApiError;
use crate::token::Scope;
use crate::upload::{Status, UploadId};
use axum::extract::{Path, State as Ext};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

/// The routes.
pub fn routes() -> Router<State> {
    Router::new()
        .route("/v1/videos", post(create))
        .route("/v1/videos/{id}/url", get(url))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewVideo {
    file_name: String,
}

async fn create(
    Ext(state): Ext<State>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let owner = owner(&state, &headers).await?;
    let req: NewVideo = parse_json(&body)?;
    check_filename("fileName", &req.file_name)?;
    let opening = Opening {
        flavour: "movingimage",
        filename: &req.file_name,
        ..Opening::default()
    };
    let opened = session::open(&state, &owner, &opening, now_ms()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "videoId": opened.id.to_string() })),
    ))
}

async fn url(
    Ext(state): Ext<State>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let owner = owner(&state, &headers).await?;
    let not_found = || ApiError(UploadsApiError::NotFound);
    let id: UploadId = id.parse().map_err(|_| not_found())?;
    let upload = db::upload::get(&state.db, &id.to_string())
        .await?
        .filter(|u| u.account_id == owner.account_id)
        .ok_or_else(not_found)?;
    if upload.status != Status::Receiving {
        return Err(ApiError(UploadsApiError::Conflict(
            "The video's upload is already complete.",
        )));
    }
    let ttl = session::validity(&state, &owner, None);
    let edge = state.edges.target(&state, client).await;
    let minted = session::mint(
        &state,
        &owner,
        Scope::Upload(id.to_string()),
        Limits {
            region: edge.region,
            ..Limits::default()
        },
        ttl,
        session::now_secs(),
    )?;
    let expires_ms = i64::try_from(minted.expires.saturating_mul(1000)).unwrap_or(i64::MAX);
    Ok(Json(json!({
        "url": format!("{}/upload/{id}?__token__={}", edge.url, minted.token),
        "expiresAt": time(expires_ms),
    })))
}
