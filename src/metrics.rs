//! Prometheus metrics: every metric's name, labels and help in one place, recorded through the
//! `metrics` facade and rendered by `metrics-exporter-prometheus` on the role's own address
//! (`metrics_listen`), never on the public upload port. Without `metrics_listen` no recorder is
//! installed and recording costs next to nothing.
//!
//! Counters and histograms are recorded where things happen, through the functions below (call
//! sites say what happened, never a metric's name). Gauges that are read rather than counted
//! (spool space, queue depths, heartbeat ages, pool use) are set by [`Scrape`] hooks the roles
//! register, just before each scrape renders.
//!
//! Must not depend on request handling, the database or storage: callers pass plain values.

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Requests the edge answered itself or proxied, by protocol flavour, method, HTTP version
/// and status.
const EDGE_REQUESTS: &str = "uplink_edge_requests_total";
const EDGE_RECEIVED: &str = "uplink_edge_received_bytes_total";
const EDGE_ACK: &str = "uplink_edge_ack_seconds";
const EDGE_CONNECTIONS: &str = "uplink_edge_connections_open";
const EDGE_CONNECTIONS_TOTAL: &str = "uplink_edge_connections_total";
const EDGE_IN_FLIGHT: &str = "uplink_edge_upload_requests_in_flight";
const LIMITS_HIT: &str = "uplink_edge_limits_hit_total";
const TOKEN_REFUSALS: &str = "uplink_edge_token_refusals_total";
const SPOOL_BYTES: &str = "uplink_edge_spool_bytes";
const SPOOL_FREE: &str = "uplink_edge_spool_free_bytes";
const SPOOL_SYNC_ROUNDS: &str = "uplink_edge_spool_sync_rounds_total";
const SPOOL_SYNCED_FILES: &str = "uplink_edge_spool_synced_files_total";
const PARTS_WAITING: &str = "uplink_edge_forward_parts_waiting";
const PARTS_IN_MEMORY: &str = "uplink_edge_forward_parts_in_memory";
const PARTS_IN_FLIGHT: &str = "uplink_edge_forward_parts_in_flight";
const STORAGE_SECONDS: &str = "uplink_storage_request_seconds";
const ORIGIN_REQUESTS: &str = "uplink_origin_requests_total";
const CREATED: &str = "uplink_uploads_created_total";
const STORED: &str = "uplink_uploads_stored_total";
const COMPLETED: &str = "uplink_uploads_completed_total";
const FAILED: &str = "uplink_uploads_failed_total";
const TERMINATED: &str = "uplink_uploads_terminated_total";
const UPLOADS: &str = "uplink_uploads";
const JOBS: &str = "uplink_jobs";
const JOB_AGE: &str = "uplink_job_queue_oldest_age_seconds";
const TRANSCODE_SECONDS: &str = "uplink_transcode_seconds";
const TRANSCODE_FPS: &str = "uplink_transcode_frames_per_second";
const NOTIFICATIONS: &str = "uplink_notifications_total";
const HOOKS: &str = "uplink_hooks_total";
const OUTBOX_DEPTH: &str = "uplink_outbox_depth";
const OUTBOX_AGE: &str = "uplink_outbox_oldest_age_seconds";
const HEARTBEAT_AGE: &str = "uplink_edge_heartbeat_age_seconds";
const DB_POOL: &str = "uplink_db_pool_connections";

/// What a metric is, for its `# TYPE` and `# HELP` lines.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric: its name, kind, unit and help text, as the scrape's `# HELP` lines give it.
const METRICS: &[(&str, Kind, Option<Unit>, &str)] = &[
    (EDGE_REQUESTS, Kind::Counter, None, "Requests answered by the edge, by flavour (upload protocol, or control for the proxied control API), method, HTTP version and status."),
    (EDGE_RECEIVED, Kind::Counter, None, "Request body bytes the edge received, by flavour."),
    (EDGE_ACK, Kind::Histogram, Some(Unit::Seconds), "From an upload request's last body byte to its answer: the time to make its bytes durable and acknowledge them, by flavour."),
    (EDGE_CONNECTIONS, Kind::Gauge, None, "Client connections open, by HTTP version (1.1 and 2 over TCP, 3 over QUIC)."),
    (EDGE_CONNECTIONS_TOTAL, Kind::Counter, None, "Client connections accepted, by HTTP version."),
    (EDGE_IN_FLIGHT, Kind::Gauge, None, "Upload requests being answered (what the heartbeat reports as the edge's load)."),
    (LIMITS_HIT, Kind::Counter, None, "Requests and connections cut by the edge's limits, by limit (header_timeout, header_size, ambiguous_framing, body_gap, min_body_rate, connections_per_client)."),
    (TOKEN_REFUSALS, Kind::Counter, None, "Upload tokens refused, by reason (missing, malformed, unknown_key, bad_signature, expired, wrong_scope, wrong_region)."),
    (SPOOL_BYTES, Kind::Gauge, Some(Unit::Bytes), "Bytes in the edge's spool (uploads received and not yet stored or swept)."),
    (SPOOL_FREE, Kind::Gauge, Some(Unit::Bytes), "Free bytes on the spool's file system."),
    (SPOOL_SYNC_ROUNDS, Kind::Counter, None, "Rounds of syncs that made spooled bytes durable (one fdatasync, or one syncfs shared by every file waiting)."),
    (SPOOL_SYNCED_FILES, Kind::Counter, None, "Spool files made durable by those rounds (divided by the rounds: how many acknowledgements shared a sync)."),
    (PARTS_WAITING, Kind::Gauge, None, "Storage parts full in the spool and waiting for the edge's memory budget."),
    (PARTS_IN_MEMORY, Kind::Gauge, None, "Storage parts read into memory and not yet stored, across all uploads."),
    (PARTS_IN_FLIGHT, Kind::Gauge, None, "Storage parts being sent to the store."),
    (STORAGE_SECONDS, Kind::Histogram, Some(Unit::Seconds), "Object storage requests, by operation (UploadPart, CompleteMultipartUpload, …) and outcome (ok, error), retries included."),
    (ORIGIN_REQUESTS, Kind::Counter, None, "Requests answered by the origin, by API (public, internal), method and status."),
    (CREATED, Kind::Counter, None, "Upload records opened, by flavour."),
    (STORED, Kind::Counter, None, "Uploads whose bytes are complete in storage (queued for processing)."),
    (COMPLETED, Kind::Counter, None, "Uploads processed and ready for playback."),
    (FAILED, Kind::Counter, None, "Uploads that failed, by error code (processing, or edge_lost: the edge holding unstored chunks was lost)."),
    (TERMINATED, Kind::Counter, None, "Upload records dropped while receiving, by whom (edge: the client or a failed write; sweeper: abandoned)."),
    (UPLOADS, Kind::Gauge, None, "Upload records, by status."),
    (JOBS, Kind::Gauge, None, "Processing jobs, by state (queued, running, done)."),
    (JOB_AGE, Kind::Gauge, Some(Unit::Seconds), "Age of the oldest queued processing job (0 when none is queued)."),
    (TRANSCODE_SECONDS, Kind::Histogram, Some(Unit::Seconds), "Time to render one rendition, by rendition."),
    (TRANSCODE_FPS, Kind::Histogram, None, "Frames rendered per second of one rendition, by rendition."),
    (NOTIFICATIONS, Kind::Counter, None, "Notification delivery attempts, by outcome (delivered, retry, gave_up)."),
    (HOOKS, Kind::Counter, None, "Blocking hooks sent to applications, by hook (pre-create, pre-finish) and outcome (accepted, refused, failed)."),
    (OUTBOX_DEPTH, Kind::Gauge, None, "Notifications not yet delivered or given up."),
    (OUTBOX_AGE, Kind::Gauge, Some(Unit::Seconds), "Age of the oldest notification not yet delivered (0 when none waits)."),
    (HEARTBEAT_AGE, Kind::Gauge, Some(Unit::Seconds), "Time since each edge's last heartbeat, by edge and region."),
    (DB_POOL, Kind::Gauge, None, "State database connections, by state (busy, idle, max)."),
];

fn describe() {
    for &(name, kind, unit, help) in METRICS {
        match (kind, unit) {
            (Kind::Counter, _) => describe_counter!(name, help),
            (Kind::Gauge, Some(unit)) => describe_gauge!(name, unit, help),
            (Kind::Gauge, None) => describe_gauge!(name, help),
            (Kind::Histogram, Some(unit)) => describe_histogram!(name, unit, help),
            (Kind::Histogram, None) => describe_histogram!(name, help),
        }
    }
}

/// Latency buckets, in seconds, for requests to storage and acknowledgements.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Transcode time buckets, in seconds.
const TRANSCODE_BUCKETS: [f64; 10] = [0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];
/// Transcode speed buckets, in frames per second.
const FPS_BUCKETS: [f64; 10] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0,
];

/// Something that sets gauges from what it reads, before each scrape.
#[async_trait::async_trait]
pub trait Scrape: Send + Sync {
    /// Reads and sets this hook's gauges.
    async fn scrape(&self);
}

fn hooks() -> &'static Mutex<Vec<Arc<dyn Scrape>>> {
    static HOOKS: OnceLock<Mutex<Vec<Arc<dyn Scrape>>>> = OnceLock::new();
    HOOKS.get_or_init(Mutex::default)
}

/// Runs `hook` before every scrape of this process's metrics.
pub fn on_scrape(hook: Arc<dyn Scrape>) {
    hooks()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(hook);
}

/// The process's recorder, installed on first use.
fn recorder() -> Result<&'static PrometheusHandle, String> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(STORAGE_SECONDS.into()), &LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(EDGE_ACK.into()), &LATENCY_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(TRANSCODE_SECONDS.into()),
                        &TRANSCODE_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(TRANSCODE_FPS.into()), &FPS_BUCKETS)
                })
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|e| e.to_string())?;
            describe();
            Ok(handle)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// How long the scrape hooks together may take before the scrape renders without them.
const SCRAPE_TIME: Duration = Duration::from_secs(5);

/// The text a scrape answers: the hooks' gauges refreshed, then everything rendered.
async fn render(handle: &PrometheusHandle) -> String {
    let hooks: Vec<Arc<dyn Scrape>> = hooks()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let refresh = futures_util::future::join_all(hooks.iter().map(|h| h.scrape()));
    if tokio::time::timeout(SCRAPE_TIME, refresh).await.is_err() {
        tracing::warn!("Metrics scrape hooks took too long; rendering without them.");
    }
    handle.run_upkeep();
    handle.render()
}

/// Installs the recorder and serves `GET /metrics` on `addr`, on the current runtime.
///
/// # Errors
/// The recorder cannot be installed or the address cannot be bound.
pub async fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let handle = recorder().map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                render(handle).await,
            )
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "The metrics server stopped.");
        }
    });
    tracing::info!(listen = %bound, "Metrics listening.");
    Ok(bound)
}

/// A gauge raised while this lives.
#[must_use = "the gauge falls when this is dropped"]
pub struct Raised(metrics::Gauge);

impl Raised {
    fn new(gauge: metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

// The edge.

/// The edge's gauges at zero, so they are scraped before anything moves them.
pub fn edge_started() {
    for name in [
        EDGE_IN_FLIGHT,
        PARTS_WAITING,
        PARTS_IN_MEMORY,
        PARTS_IN_FLIGHT,
    ] {
        gauge!(name).set(0.0);
    }
}

/// One request the edge answered: `received` body bytes; `ack` from its last body byte to its
/// answer, for a request that sent upload bytes.
pub fn edge_request(
    flavour: &'static str,
    method: &http::Method,
    version: &'static str,
    status: u16,
    received: u64,
    ack: Option<Duration>,
) {
    counter!(EDGE_REQUESTS, "flavour" => flavour, "method" => method_label(method), "version" => version, "status" => status.to_string()).increment(1);
    if received > 0 {
        counter!(EDGE_RECEIVED, "flavour" => flavour).increment(received);
    }
    if let Some(ack) = ack {
        histogram!(EDGE_ACK, "flavour" => flavour).record(ack.as_secs_f64());
    }
}

/// A method as a label: the standard ones by name, anything else as `other` (a client must not
/// be able to make new series).
fn method_label(method: &http::Method) -> &'static str {
    use http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A client connection over `version`, open while this lives.
pub fn edge_connection(version: &'static str) -> Raised {
    counter!(EDGE_CONNECTIONS_TOTAL, "version" => version).increment(1);
    Raised::new(gauge!(EDGE_CONNECTIONS, "version" => version))
}

/// An upload request being answered, while this lives.
pub fn upload_request() -> Raised {
    Raised::new(gauge!(EDGE_IN_FLIGHT))
}

/// A request or connection cut by one of the edge's limits.
pub fn limit_hit(limit: &'static str) {
    counter!(LIMITS_HIT, "limit" => limit).increment(1);
}

/// An upload token refused, for `reason`.
pub fn token_refused(reason: &'static str) {
    counter!(TOKEN_REFUSALS, "reason" => reason).increment(1);
}

/// The spool's bytes and its file system's free bytes, as read now.
pub fn spool(bytes: u64, free: u64) {
    gauge!(SPOOL_BYTES).set(bytes as f64);
    gauge!(SPOOL_FREE).set(free as f64);
}

/// A round of syncs that made `files` spool files durable.
pub fn spool_sync_round(files: usize) {
    counter!(SPOOL_SYNC_ROUNDS).increment(1);
    counter!(SPOOL_SYNCED_FILES).increment(files as u64);
}

/// A part waiting for memory, while this lives.
pub fn part_waiting() -> Raised {
    Raised::new(gauge!(PARTS_WAITING))
}

/// A part held in memory, while this lives.
pub fn part_in_memory() -> Raised {
    Raised::new(gauge!(PARTS_IN_MEMORY))
}

/// A part being sent, while this lives.
pub fn part_in_flight() -> Raised {
    Raised::new(gauge!(PARTS_IN_FLIGHT))
}

/// A storage request by `operation` that took `took`.
pub fn storage_request(operation: &str, ok: bool, took: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    histogram!(STORAGE_SECONDS, "operation" => operation.to_owned(), "outcome" => outcome)
        .record(took.as_secs_f64());
}

// The origin.

/// One request the origin answered on `api` (`public` or `internal`).
pub fn origin_request(api: &'static str, method: &http::Method, status: u16) {
    counter!(ORIGIN_REQUESTS, "api" => api, "method" => method_label(method), "status" => status.to_string()).increment(1);
}

/// An upload record opened for `flavour`.
pub fn upload_created(flavour: &str) {
    counter!(CREATED, "flavour" => flavour.to_owned()).increment(1);
}

/// An upload's bytes complete in storage.
pub fn upload_stored() {
    counter!(STORED).increment(1);
}

/// An upload processed: ready, or failed with `code`.
pub fn upload_processed(failed: Option<&'static str>) {
    match failed {
        None => counter!(COMPLETED).increment(1),
        Some(code) => counter!(FAILED, "code" => code).increment(1),
    }
}

/// Upload records dropped while receiving, `by` the edge or the sweeper.
pub fn uploads_terminated(by: &'static str, count: u64) {
    counter!(TERMINATED, "by" => by).increment(count);
}

/// Upload records by status name, as read now.
pub fn uploads_by_status(counts: &[(&'static str, u64)]) {
    for (status, n) in counts {
        gauge!(UPLOADS, "status" => *status).set(*n as f64);
    }
}

/// Jobs by state and the oldest queued one's age, as read now.
pub fn jobs(by_state: &[(&'static str, u64)], oldest_queued: Duration) {
    for (state, n) in by_state {
        gauge!(JOBS, "state" => *state).set(*n as f64);
    }
    gauge!(JOB_AGE).set(oldest_queued.as_secs_f64());
}

/// One rendition rendered: `frames` in `took`.
pub fn transcoded(rendition: &str, frames: u64, took: Duration) {
    let secs = took.as_secs_f64();
    histogram!(TRANSCODE_SECONDS, "rendition" => rendition.to_owned()).record(secs);
    if secs > 0.0 {
        histogram!(TRANSCODE_FPS, "rendition" => rendition.to_owned()).record(frames as f64 / secs);
    }
}

/// A notification delivery attempt's outcome (`delivered`, `retry`, `gave_up`).
pub fn notification(outcome: &'static str) {
    counter!(NOTIFICATIONS, "outcome" => outcome).increment(1);
}

/// A blocking hook's outcome (`accepted`, `refused`, `failed`: no usable answer in time).
pub fn hook_answered(hook: &'static str, outcome: &'static str) {
    counter!(HOOKS, "hook" => hook, "outcome" => outcome).increment(1);
}

/// The outbox's depth and its oldest waiting notification's age, as read now.
pub fn outbox(depth: u64, oldest: Duration) {
    gauge!(OUTBOX_DEPTH).set(depth as f64);
    gauge!(OUTBOX_AGE).set(oldest.as_secs_f64());
}

/// How long ago edge `name` of `region` sent its last heartbeat.
pub fn heartbeat_age(name: &str, region: Option<&str>, age: Duration) {
    gauge!(HEARTBEAT_AGE, "edge" => name.to_owned(), "region" => region.unwrap_or("").to_owned())
        .set(age.as_secs_f64());
}

/// The state database pool's connections: busy, idle and its maximum.
pub fn db_pool(busy: u32, idle: u32, max: u32) {
    for (state, n) in [("busy", busy), ("idle", idle), ("max", max)] {
        gauge!(DB_POOL, "state" => state).set(f64::from(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_described_once_and_named_as_prometheus_asks() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len(), "a metric described twice");
        for &(name, kind, unit, help) in METRICS {
            assert!(name.starts_with("uplink_") && !help.is_empty(), "{name}");
            assert_eq!(
                name.ends_with("_total"),
                matches!(kind, Kind::Counter),
                "{name}: counters, and only they, end in _total"
            );
            match unit {
                Some(Unit::Seconds) => assert!(name.ends_with("_seconds"), "{name}"),
                Some(Unit::Bytes) => assert!(name.ends_with("_bytes"), "{name}"),
                _ => {}
            }
        }
    }

    #[test]
    fn unknown_methods_make_no_new_series() {
        let odd = http::Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(method_label(&odd), "other");
        assert_eq!(method_label(&http::Method::PATCH), "PATCH");
    }
}
