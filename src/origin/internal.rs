//! The internal API the edges call (see [`crate::control`]): resolve an API key, open an
//! upload, record it stored, drop an unfinished one. Every request must carry the shared
//! secret; it is compared in constant time.

use super::session::{self, Opening, SessionError};
use super::State;
use crate::control::{
    self, AccessKeyOwner, CorsAnswer, CorsCheck, CreateUpload, CreatedUpload, Heartbeat,
    HoldRefused, HoldUpload, KeyOwner, Progress, RecordPart, ResolveAccessKey, ResolveKey,
    StatusView, UploadInfo, UploadStored, WriteUpload,
};
use crate::db::{self, now_ms};
use crate::upload::{Offset, Status};
use axum::extract::{Path, Request, State as Ext};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;

/// The internal routes, guarded by the shared secret.
pub fn routes(state: State) -> Router<State> {
    Router::new()
        .route("/internal/v1/api-keys/resolve", post(resolve))
        .route("/internal/v1/access-keys/resolve", post(resolve_access_key))
        .route("/internal/v1/cors/check", post(cors_check))
        .route("/internal/v1/edges/heartbeat", post(heartbeat))
        .route("/internal/v1/uploads", post(create))
        .route("/internal/v1/uploads/{id}/stored", post(stored))
        .route("/internal/v1/uploads/{id}/hold", post(hold))
        .route("/internal/v1/uploads/{id}/writer", post(writer))
        .route("/internal/v1/uploads/{id}/failed", post(failed))
        .route("/internal/v1/progress", post(progress))
        .route("/internal/v1/uploads/{id}/parts", post(record_part))
        .route("/internal/v1/uploads/{id}", delete(cancel).get(info))
        .route_layer(middleware::from_fn_with_state(state, require_secret))
}

fn reply(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

async fn require_secret(Ext(state): Ext<State>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(control::SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if bool::from(given.ct_eq(state.secret.expose().as_bytes())) {
        next.run(req).await
    } else {
        reply(StatusCode::UNAUTHORIZED, "missing or wrong internal secret")
    }
}

fn db_failure(e: &db::DbError) -> Response {
    tracing::error!(error = %crate::error::chain(e), "Database error in the internal API.");
    reply(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
}

async fn resolve(Ext(state): Ext<State>, Json(req): Json<ResolveKey>) -> Response {
    match db::account::find_by_api_key(&state.db, &req.api_key).await {
        Ok(Some(owner)) => Json(owner).into_response(),
        Ok(None) => reply(StatusCode::NOT_FOUND, "unknown API key"),
        Err(e) => db_failure(&e),
    }
}

async fn resolve_access_key(Ext(state): Ext<State>, Json(req): Json<ResolveAccessKey>) -> Response {
    match db::account::find_by_access_key(&state.db, &req.access_key).await {
        Ok(Some((owner, secret))) => Json(AccessKeyOwner {
            owner,
            secret: secret.secret,
        })
        .into_response(),
        Ok(None) => reply(StatusCode::NOT_FOUND, "unknown access key"),
        Err(e) => db_failure(&e),
    }
}

async fn heartbeat(Ext(state): Ext<State>, Json(beat): Json<Heartbeat>) -> Response {
    if let Err((status, message)) = state.edges.member(&beat.name, beat.region.as_deref()) {
        tracing::warn!(edge = %beat.name, %message, "Refused a heartbeat.");
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        return reply(status, &message);
    }
    let health = crate::geo::Health {
        seen_ms: now_ms(),
        active_uploads: beat.active_uploads,
        spool_free_bytes: beat.spool_free_bytes,
        draining: beat.draining,
    };
    match db::edge::beat(&state.db, &beat.name, beat.region.as_deref(), &health).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => db_failure(&e),
    }
}

async fn cors_check(Ext(state): Ext<State>, Json(req): Json<CorsCheck>) -> Response {
    match db::account::cors_allows(&state.db, &req.origin, req.account_id.as_deref()).await {
        Ok(allowed) => Json(CorsAnswer { allowed }).into_response(),
        Err(e) => db_failure(&e),
    }
}

async fn create(Ext(state): Ext<State>, Json(req): Json<CreateUpload>) -> Response {
    let owner = KeyOwner {
        account_id: req.account_id.clone(),
        pipeline_id: req.pipeline_id.clone(),
        quota_remaining: None,
        max_upload_size: None,
        token_ttl_secs: None,
    };
    if let Some(relative) = &req.relative_key {
        match session::receiving_at(&state, &owner, relative, req.session.as_deref()).await {
            Ok(Some(opened)) => return created(&opened, true),
            // A form of a session that finished or expired: no other upload takes its bytes.
            Ok(None) if req.session.is_some() => {
                return reply(
                    StatusCode::GONE,
                    "the upload session is no longer receiving",
                )
            }
            Ok(None) => {}
            Err(SessionError::UnknownPipeline) => {
                return reply(StatusCode::NOT_FOUND, "unknown pipeline for this account")
            }
            Err(e) => {
                tracing::error!(error = %e, "Could not look up an upload by key.");
                return reply(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
            }
        }
    }
    let changes = match pre_create(&state, &owner.account_id, &req).await {
        Ok(Ok(changes)) => changes,
        Ok(Err(refused)) => return hook_refused(refused),
        Err(e) => return db_failure(&e),
    };
    let opening = Opening {
        flavour: &req.flavour,
        filename: &req.filename,
        relative_key: req.relative_key.as_deref(),
        token_id: req.grant.as_deref(),
        declared_size: req.length.map(Offset::bytes),
        writer: req.writer.as_deref(),
        resumable_state: req.resumable.as_ref().map(|r| json!(r).to_string()),
        folder: changes.folder,
        app_metadata: changes.metadata,
        ..Opening::default()
    };
    match session::open(&state, &owner, &opening, now_ms()).await {
        Ok(opened) => created(&opened, false),
        Err(SessionError::UnknownPipeline) => {
            reply(StatusCode::NOT_FOUND, "unknown pipeline for this account")
        }
        Err(SessionError::Db(e)) => db_failure(&e),
        Err(e @ SessionError::Token(_)) => {
            tracing::error!(error = %e, "Unexpected session error.");
            reply(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

fn created(opened: &session::Opened, reused: bool) -> Response {
    let body = CreatedUpload {
        id: opened.id,
        object_key: opened.object_key.to_string(),
        reused,
    };
    (StatusCode::CREATED, Json(body)).into_response()
}

/// Asks the account's `pre-create` hook, if it has one, about an upload a client is starting
/// at an edge: the changes it makes, or its refusal. (Uploads the application's own server
/// opens through a control API, movingimage videos, Cloud VoD and xvid sessions, are its
/// decision already and are not asked about.)
async fn pre_create(
    state: &State,
    account_id: &str,
    req: &CreateUpload,
) -> Result<Result<crate::hook::Changes, crate::hook::Refusal>, db::DbError> {
    let metadata = req
        .resumable
        .as_ref()
        .and_then(|r| r.metadata.as_deref())
        .and_then(crate::upload::resumable::parse_metadata);
    let client = req.client.map(|c| c.to_string());
    let creating = crate::hook::Creating {
        account_id,
        flavour: &req.flavour,
        size: req.length.map(Offset::bytes),
        filename: &req.filename,
        metadata: metadata.as_ref(),
        client: client.as_deref(),
    };
    let data = crate::hook::pre_create_data(&creating);
    let kind = crate::hook::Kind::PreCreate;
    Ok(
        match super::hooks::ask(state, account_id, kind, data).await? {
            Some(crate::hook::Verdict::Refuse(refused)) => Err(refused),
            Some(crate::hook::Verdict::Accept(changes)) => Ok(changes),
            Some(crate::hook::Verdict::Finish(_)) | None => Ok(crate::hook::Changes::default()),
        },
    )
}

/// The answer when the account's hook refused an upload ([`control::HookRefused`]).
fn hook_refused(refused: crate::hook::Refusal) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(control::HookRefused { refused }),
    )
        .into_response()
}

async fn stored(
    Ext(state): Ext<State>,
    Path(id): Path<String>,
    Json(req): Json<UploadStored>,
) -> Response {
    let mut facts = db::upload::Stored {
        size: req.size,
        sha256: req.sha256,
        folder: req.folder,
        metadata: req.metadata,
        edge: req.edge,
        hook_response: None,
    };
    let answer = match pre_finish(&state, &id, &facts).await {
        Ok(Finish::Keep(answer)) => answer,
        Ok(Finish::Refused(refused)) => return hook_refused(refused),
        // Marking it stored says why not (not receiving, or another edge's).
        Ok(Finish::NotReceiving) => None,
        Err(e) => return db_failure(&e),
    };
    facts.hook_response = answer.as_ref().map(ToString::to_string);
    match db::upload::mark_stored(&state.db, &id, &facts, now_ms()).await {
        Ok(db::upload::Marked::Stored) => {
            crate::metrics::upload_stored();
            state.wake.notify_one();
            tracing::info!(upload_id = %id, size = facts.size, "Upload stored; job queued.");
            Json(StatusView {
                id,
                status: Status::Pending.code(),
                status_text: Status::Pending.text().into(),
                hook_response: answer,
            })
            .into_response()
        }
        Ok(db::upload::Marked::NotReceiving) => {
            reply(StatusCode::CONFLICT, "the upload is not receiving")
        }
        Ok(db::upload::Marked::Superseded(writer)) => held_by(writer),
        Ok(db::upload::Marked::OverQuota) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({ "code": 1101, "message": "the account's storage quota is reached" })),
        )
            .into_response(),
        Err(e) => db_failure(&e),
    }
}

/// What the `pre-finish` hook made of an upload whose last byte is in.
enum Finish {
    /// Keep it, with the application's answer for the client, if any.
    Keep(Option<serde_json::Value>),
    /// The application refused it; it has failed.
    Refused(crate::hook::Refusal),
    /// It is not receiving (or unknown): nothing was asked.
    NotReceiving,
}

/// Asks the account's `pre-finish` hook, if it has one, about an upload whose bytes are all
/// stored (`facts`); a refusal fails the upload (`refused_by_hook`) before it is answered.
async fn pre_finish(
    state: &State,
    id: &str,
    facts: &db::upload::Stored,
) -> Result<Finish, db::DbError> {
    let Some(upload) = db::upload::get(&state.db, id)
        .await?
        .filter(|u| u.status == Status::Receiving)
    else {
        return Ok(Finish::NotReceiving);
    };
    let finishing = crate::hook::Finishing {
        upload_id: id,
        account_id: &upload.account_id,
        flavour: &upload.flavour,
        size: facts.size,
        filename: &upload.filename,
        folder: upload.folder.as_deref().or(facts.folder.as_deref()),
        metadata: upload.app_metadata.as_deref(),
    };
    let data = crate::hook::pre_finish_data(&finishing);
    let kind = crate::hook::Kind::PreFinish;
    match super::hooks::ask(state, &upload.account_id, kind, data).await? {
        Some(crate::hook::Verdict::Refuse(refused)) => {
            let failure = crate::upload::Failure::RefusedByHook;
            if fail_upload(state, id, failure, now_ms()).await? {
                tracing::info!(upload_id = %id, status = refused.status, "The application refused an upload at its last byte; it failed.");
            }
            Ok(Finish::Refused(refused))
        }
        Some(crate::hook::Verdict::Finish(answer)) => Ok(Finish::Keep(answer)),
        Some(crate::hook::Verdict::Accept(_)) | None => Ok(Finish::Keep(None)),
    }
}

/// Fails an upload with `failure` where its status still allows it, counts it and wakes the
/// notifier; whether it failed now.
pub(super) async fn fail_upload(
    state: &State,
    id: &str,
    failure: crate::upload::Failure,
    now: i64,
) -> Result<bool, db::DbError> {
    let failed = db::upload::transition(&state.db, id, Status::Failed, Some(failure), now).await?;
    if failed {
        crate::metrics::upload_processed(Some(failure.code()));
        state.notify_wake.notify_waiters();
    }
    Ok(failed)
}

/// An upload still receiving failed at its edge (an upload from a URL whose source could not
/// be fetched).
async fn failed(
    Ext(state): Ext<State>,
    Path(id): Path<String>,
    Json(req): Json<control::UploadFailed>,
) -> Response {
    let Some(failure) = crate::upload::Failure::from_code(&req.code) else {
        return reply(StatusCode::BAD_REQUEST, "unknown failure code");
    };
    let receiving = match db::upload::get(&state.db, &id).await {
        Ok(upload) => upload.is_some_and(|u| u.status == Status::Receiving),
        Err(e) => return db_failure(&e),
    };
    if !receiving {
        return reply(StatusCode::NOT_FOUND, "no such upload receiving");
    }
    match fail_upload(&state, &id, failure, now_ms()).await {
        Ok(_) => {
            tracing::info!(upload_id = %id, code = failure.code(), "An upload failed at its edge.");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => db_failure(&e),
    }
}

/// An edge whose last heartbeat is before this (ms) is lost.
pub(super) fn lost_before(state: &State, now: i64) -> i64 {
    let after = state.settings.routing.edge_lost_after();
    now.saturating_sub(i64::try_from(after.as_millis()).unwrap_or(i64::MAX))
}

async fn hold(
    Ext(state): Ext<State>,
    Path(id): Path<String>,
    Json(req): Json<HoldUpload>,
) -> Response {
    let now = now_ms();
    match db::upload::hold(&state.db, &id, &req.edge, lost_before(&state, now)).await {
        Ok(db::upload::Hold::Held) => StatusCode::NO_CONTENT.into_response(),
        Ok(db::upload::Hold::HeldBy(holder)) => held_by(holder),
        Ok(db::upload::Hold::Lost(holder)) => {
            match super::upload_sweeper::fail_held_by_lost(&state, &id, &holder, now).await {
                Ok(()) => not_receiving(Status::Failed),
                Err(e) => db_failure(&e),
            }
        }
        Ok(db::upload::Hold::NotReceiving(Some(status))) => not_receiving(status),
        Ok(db::upload::Hold::NotReceiving(None)) => reply(StatusCode::NOT_FOUND, "unknown upload"),
        Err(e) => db_failure(&e),
    }
}

async fn info(Ext(state): Ext<State>, Path(id): Path<String>) -> Response {
    match upload_info(&state, &id).await {
        Ok(Some(info)) => Json(info).into_response(),
        Ok(None) => reply(StatusCode::NOT_FOUND, "unknown upload"),
        Err(e) => db_failure(&e),
    }
}

/// What an edge needs to continue an upload, with the parts in storage while it is receiving.
async fn upload_info(state: &State, id: &str) -> Result<Option<UploadInfo>, db::DbError> {
    let Some(u) = db::upload::get(&state.db, id).await? else {
        return Ok(None);
    };
    let parts = if u.status == Status::Receiving {
        db::upload::parts(&state.db, id).await?
    } else {
        None
    };
    let id =
        u.id.parse()
            .map_err(|_| db::DbError::Corrupt(format!("upload id {}", u.id)))?;
    Ok(Some(UploadInfo {
        id,
        account_id: u.account_id,
        object_key: u.object_key,
        status: u.status.code(),
        grant: u.token_id,
        length: u.declared_size.map(Offset::new),
        parts,
        resumable: u
            .resumable_state
            .and_then(|r| serde_json::from_str(&r).ok()),
    }))
}

/// Whether an edge writes a resumable upload; with `take`, it takes it over first.
async fn writer(
    Ext(state): Ext<State>,
    Path(id): Path<String>,
    Json(req): Json<WriteUpload>,
) -> Response {
    match db::upload::writer(&state.db, &id, &req.edge, req.take).await {
        Ok(db::upload::Writer::Asking) => {
            if req.take {
                tracing::info!(upload_id = %id, edge = %req.edge, "An edge took a resumable upload over.");
            }
            info(Ext(state), Path(id)).await
        }
        Ok(db::upload::Writer::Other(writer)) => held_by(writer),
        Ok(db::upload::Writer::NotReceiving(Some(status))) => not_receiving(status),
        Ok(db::upload::Writer::NotReceiving(None)) => {
            reply(StatusCode::NOT_FOUND, "unknown upload")
        }
        Err(e) => db_failure(&e),
    }
}

/// Bytes arrived of uploads still receiving; progress notifications where they are due.
async fn progress(Ext(state): Ext<State>, Json(req): Json<Progress>) -> Response {
    let now = now_ms();
    let mut notified = false;
    for (id, bytes) in &req.uploads {
        match db::outbox::record_progress(&state.db, &id.to_string(), *bytes, now).await {
            Ok(written) => notified |= written,
            Err(e) => return db_failure(&e),
        }
    }
    if notified {
        state.notify_wake.notify_waiters();
    }
    StatusCode::NO_CONTENT.into_response()
}

/// 409 naming the edge that holds or writes the upload.
fn held_by(edge: String) -> Response {
    let refusal = HoldRefused {
        holder: Some(edge),
        status: None,
    };
    (StatusCode::CONFLICT, Json(refusal)).into_response()
}

/// 409 with the status of an upload that is no longer receiving.
fn not_receiving(status: Status) -> Response {
    let refusal = HoldRefused {
        holder: None,
        status: Some(status.code()),
    };
    (StatusCode::CONFLICT, Json(refusal)).into_response()
}

async fn record_part(
    Ext(state): Ext<State>,
    Path(id): Path<String>,
    Json(req): Json<RecordPart>,
) -> Response {
    let edge = req.edge.as_deref();
    match db::upload::record_part(
        &state.db,
        &id,
        edge,
        &req.multipart_id,
        req.declared,
        &req.part,
    )
    .await
    {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => match edge {
            Some(edge) => match db::upload::writer(&state.db, &id, edge, false).await {
                Ok(db::upload::Writer::Other(writer)) => held_by(writer),
                Ok(_) => reply(StatusCode::CONFLICT, "the upload is not receiving"),
                Err(e) => db_failure(&e),
            },
            None => reply(StatusCode::CONFLICT, "the upload is not receiving"),
        },
        Err(e) => db_failure(&e),
    }
}

async fn cancel(Ext(state): Ext<State>, Path(id): Path<String>) -> Response {
    match db::upload::delete_receiving(&state.db, &id).await {
        Ok(true) => {
            crate::metrics::uploads_terminated("edge", 1);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => reply(StatusCode::CONFLICT, "the upload is not receiving"),
        Err(e) => db_failure(&e),
    }
}
