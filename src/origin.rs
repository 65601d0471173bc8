//! The origin role: the control API (the vendor flavours' reads and sessions), the internal
//! API the edges call, the state database and the processing workers.
//!
//! Layout: `api` (public Uploads API), the other flavours' control APIs (`movingimage_api`,
//! `cloudvod`, `xvid`, `upload_tokens`; `session` is what they share), `internal`
//! (edge ↔ origin), `routing` (which edge a client is sent to), `worker` (job loop), `media`
//! (FFmpeg), `notifier` (the outbox's sender), `upload_sweeper` (abandoned uploads and lost
//! edges), `gauges` (what a metrics scrape reads). Must not depend on the edge or on Pingora.

pub mod api;
pub mod cloudvod;
pub mod gauges;
pub mod hooks;
pub mod internal;
pub mod media;
pub mod movingimage_api;
pub mod notifier;
pub mod routing;
pub mod session;
pub mod upload_sweeper;
pub mod upload_tokens;
pub mod worker;
pub mod xvid;

use crate::config::{OriginSettings, Secret};
use crate::db::{Db, DbError};
use crate::store::{self, Store, StoreError};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Notify;

/// Why the origin could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database.
    #[error("origin: cannot open the state database")]
    Db(#[source] DbError),
    /// The store.
    #[error("origin: cannot open the object store")]
    Store(#[source] StoreError),
    /// The geoip database of the fleet.
    #[error("origin: cannot open the geoip database")]
    Geo(#[source] crate::geo::GeoError),
    /// The HTTP client for customers' applications (its TLS roots).
    #[error("origin: cannot build the HTTP client for notifications and hooks")]
    Web(#[source] reqwest::Error),
    /// The listening socket or scratch directory.
    #[error("origin: cannot {what}")]
    Io {
        /// What we were doing.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What every handler and worker shares.
#[derive(Debug, Clone)]
pub struct State {
    /// State database.
    pub db: Db,
    /// Object store.
    pub store: Arc<dyn Store>,
    /// The edges' shared secret.
    pub secret: Secret,
    /// Wakes idle workers when a job is queued.
    pub wake: Arc<Notify>,
    /// Wakes idle notification senders when a status change wrote a notification.
    pub notify_wake: Arc<Notify>,
    /// Which edge upload URLs name.
    pub edges: Arc<routing::Edges>,
    /// Settings.
    pub settings: Arc<OriginSettings>,
    /// The HTTP client for customers' applications (notifications, hooks).
    pub web: reqwest::Client,
}

/// Opens everything, binds the listener and spawns the API server and the workers on the
/// current Tokio runtime. Returns the bound address.
///
/// # Errors
/// Something could not be opened or bound.
pub async fn start(settings: OriginSettings) -> Result<SocketAddr, StartError> {
    let db = Db::open(&settings.database).await.map_err(StartError::Db)?;
    let store = store::open(&settings.storage)
        .await
        .map_err(StartError::Store)?;
    tokio::fs::create_dir_all(&settings.scratch_dir)
        .await
        .map_err(|source| StartError::Io {
            what: format!(
                "create the scratch directory {}",
                settings.scratch_dir.display()
            ),
            source,
        })?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| StartError::Io {
            what: format!("listen on {}", settings.listen),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Io {
        what: "read the bound address".into(),
        source,
    })?;
    let edges = routing::Edges::open(&settings.routing).map_err(StartError::Geo)?;
    let web = notifier::client(&settings.notify).map_err(StartError::Web)?;
    let state = State {
        db,
        store,
        secret: settings.internal_secret.clone(),
        wake: Arc::new(Notify::new()),
        notify_wake: Arc::new(Notify::new()),
        edges: Arc::new(edges),
        settings: Arc::new(settings),
        web,
    };
    for n in 0..state.settings.workers {
        tokio::spawn(worker::run(state.clone(), format!("{addr}/{n}")));
    }
    tokio::spawn(upload_sweeper::run(state.clone()));
    tokio::spawn(upload_sweeper::run_lost_edges(state.clone()));
    notifier::spawn(&state);
    crate::metrics::on_scrape(std::sync::Arc::new(gauges::Gauges(state.db.clone())));
    let app = api::routes()
        .merge(internal::routes(state.clone()))
        .with_state(state)
        .layer(axum::middleware::from_fn(counted))
        .layer(axum::middleware::from_fn(with_request_id));
    tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "The origin's API server stopped.");
        }
    });
    tracing::info!(%addr, "Origin listening.");
    Ok(addr)
}

/// Every request runs within its id ([`crate::request_id`]; the edge passes the client's on),
/// in a span its log lines carry; the answer says it, and a JSON error body quotes it as
/// `request_id`.
async fn with_request_id(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let id = crate::request_id::from_headers(request.headers());
    let span = tracing::info_span!("request", request_id = %id);
    let response = crate::request_id::scope(id.clone(), next.run(request).instrument(span)).await;
    let mut response = quote_request_id(response, &id).await;
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(crate::request_id::HEADER, value);
    }
    response
}

/// Counts every request ([`crate::metrics`]) by API, method and status.
async fn counted(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let api = if request.uri().path().starts_with(crate::control::PREFIX) {
        "internal"
    } else {
        "public"
    };
    let method = request.method().clone();
    let response = next.run(request).await;
    crate::metrics::origin_request(api, &method, response.status().as_u16());
    response
}

/// A JSON error answer with its body quoting the request id ([`crate::request_id::quoted`]);
/// any other answer as it is, unread.
async fn quote_request_id(
    response: axum::response::Response,
    id: &str,
) -> axum::response::Response {
    /// Error bodies are small; a larger one is passed on empty rather than held.
    const LIMIT: usize = 64 * 1024;
    let content_type = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !crate::request_id::quotable(response.status().as_u16(), &content_type) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, LIMIT).await.unwrap_or_default();
    let body = match crate::request_id::quoted(parts.status.as_u16(), &content_type, &bytes, id) {
        Some(quoted) => quoted.into(),
        None => bytes,
    };
    // The body's length is the new one's.
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    axum::response::Response::from_parts(parts, axum::body::Body::from(body))
}
