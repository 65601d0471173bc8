//! The public control API served by the origin (reached through an edge): the Uploads API's
//! reads, exactly as the seed (`GET /api/client/v1/uploads`, `GET …/uploads/{id}`), and
//! `/healthz`. Handlers parse → query → render; errors come from [`crate::error`].

use super::session::SessionError;
use super::State;
use crate::control::KeyOwner;
use crate::db;
use crate::db::upload::UploadRecord;
use crate::error::UploadsApiError;
use crate::upload::UploadId;
use axum::extract::{Path, State as Ext};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// How many uploads the list returns (the seed's "50 most recent").
pub const LIST_LIMIT: i64 = 50;

/// An Uploads API error as an axum response.
pub struct ApiError(pub UploadsApiError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.0.render();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(body)).into_response()
    }
}

impl From<db::DbError> for ApiError {
    fn from(e: db::DbError) -> Self {
        tracing::error!(error = %crate::error::chain(&e), "Database error in the Uploads API.");
        ApiError(UploadsApiError::Unavailable)
    }
}

/// The routes.
pub fn routes() -> Router<State> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/client/v1/uploads", get(list))
        .route("/api/client/v1/uploads/{id}", get(one))
        .merge(super::movingimage_api::routes())
        .merge(super::upload_tokens::routes())
        .merge(super::xvid::routes())
        .merge(super::cloudvod::routes())
        .fallback(|| async { ApiError(UploadsApiError::NoRoute) })
}

async fn healthz(Ext(state): Ext<State>) -> Response {
    match state.db.ping().await {
        Ok(()) => Json(json!({ "status": "ok", "role": "origin" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "Health check failed.");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "database unavailable" })),
            )
                .into_response()
        }
    }
}

/// Readiness ([`crate::health`]): the database and the object store answer.
async fn readyz(Ext(state): Ext<State>) -> Response {
    let outcomes = [
        crate::health::check("origin", "database", state.db.ping()).await,
        crate::health::check("origin", "storage", state.store.ready()).await,
    ];
    let (status, body) = crate::health::answer("origin", &outcomes);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    (status, Json(body)).into_response()
}

/// A client file name: 1 to 255 characters, none of them control characters.
pub(super) fn check_filename(field: &'static str, name: &str) -> Result<(), ApiError> {
    if crate::upload::Filename::exact(name).is_none() {
        return Err(ApiError(UploadsApiError::Invalid {
            field,
            message: format!(
                "The {field} must be 1 to 255 characters, without control characters."
            ),
        }));
    }
    Ok(())
}

/// The account behind the request's Bearer key.
/// The account behind the request's `Authorization: Bearer <api_key>`.
pub(super) async fn owner(state: &State, headers: &HeaderMap) -> Result<KeyOwner, ApiError> {
    let key = crate::protocol::bearer(headers).ok_or(ApiError(UploadsApiError::Unauthenticated))?;
    db::account::find_by_api_key(&state.db, key)
        .await?
        .ok_or(ApiError(UploadsApiError::Unauthenticated))
}

async fn account(state: &State, headers: &HeaderMap) -> Result<String, ApiError> {
    owner(state, headers).await.map(|o| o.account_id)
}

/// A JSON request body, or a 400 that says what is wrong with it. An empty body is `{}`.
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        ApiError(UploadsApiError::Malformed(format!(
            "the JSON body is invalid: {e}"
        )))
    })
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::UnknownPipeline => ApiError(UploadsApiError::NotFound),
            SessionError::Db(e) => e.into(),
            SessionError::Token(e) => {
                tracing::error!(error = %e, "Could not mint a token.");
                ApiError(UploadsApiError::Internal)
            }
        }
    }
}

/// Form-style parameters from the query string and an `application/x-www-form-urlencoded`
/// body; the query wins where both name a parameter.
pub(super) fn params(
    query: Option<&str>,
    body: &[u8],
) -> std::collections::HashMap<String, String> {
    let mut params: std::collections::HashMap<String, String> =
        form_urlencoded::parse(body).into_owned().collect();
    params.extend(form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned());
    params
}

pub(super) use crate::clock::rfc3339 as time;

/// An upload as the Uploads API shows it: the seed's fields, then `folder`, `size`, `sha256`,
/// `duration_ms`, `error` and `error_code` (null unless it failed), `bytes_received` (while it is
/// receiving, as its edge last reported; else null), `progress` (0–100 while processing, else
/// null), `outputs` (empty until processed), `metadata` (what the application's `pre-create`
/// hook set, else null) and `hook_response` (its `pre-finish` answer, else null).
#[must_use]
pub fn view(u: &UploadRecord) -> Value {
    json!({
        "id": u.id,
        "filename": u.filename,
        "status": u.status.code(),
        "status_text": u.status.text(),
        "created_at": time(u.created_at),
        "updated_at": time(u.updated_at),
        "folder": u.folder,
        "size": u.size,
        "sha256": u.sha256,
        "duration_ms": u.duration_ms,
        "error": u.error,
        "error_code": u.error_code,
        "bytes_received": u.bytes_received,
        "progress": u.progress,
        "outputs": u.outputs,
        "metadata": json_column(u.app_metadata.as_deref()),
        "hook_response": json_column(u.hook_response.as_deref()),
    })
}

/// A column holding JSON text, as JSON (null when empty or unreadable).
fn json_column(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

async fn list(Ext(state): Ext<State>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let account_id = account(&state, &headers).await?;
    let uploads = db::upload::list_recent(&state.db, &account_id, LIST_LIMIT).await?;
    Ok(Json(
        json!({ "data": uploads.iter().map(view).collect::<Vec<_>>() }),
    ))
}

async fn one(
    Ext(state): Ext<State>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let account_id = account(&state, &headers).await?;
    let not_found = || ApiError(UploadsApiError::NotFound);
    let id: UploadId = id.parse().map_err(|_| not_found())?;
    let upload = db::upload::get(&state.db, &id.to_string())
        .await?
        .filter(|u| u.account_id == account_id)
        .ok_or_else(not_found)?;
    Ok(Json(json!({ "data": view(&upload) })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_seconds() {
        assert_eq!(time(1_723_370_400_000), "2024-08-11T10:00:00Z");
    }
}
