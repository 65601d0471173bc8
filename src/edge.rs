//! The edge role: a Pingora server that terminates upload paths itself (through the protocol
//! adapters and the ingest core) and proxies the control API to the origin (`ProxyHttp`).
//!
//! Layout: `proxy` (the Pingora service: routing, body streaming, reply rendering),
//! `origin_client` (the internal API client), `spool_sweeper` (spool clean-up), `heartbeat`
//! (health reports to the origin's fleet), `outputs` (processed files by signed link, with
//! `range`), `ready` (readiness), `metered` (what the metrics see), `limits` (slow and greedy
//! clients), `exchange` (one request, whatever the HTTP version), `tls` (certificates), `h2`
//! (HTTP/2 windows sized for uploads) and `h3` (the QUIC listener beside Pingora, feeding the
//! same handlers). Must not depend on the origin's internals or the database.

mod drain;
mod exchange;
mod h2;
mod h3;
mod heartbeat;
pub(crate) mod limits;
mod metered;
pub mod origin_client;
pub mod origins;
mod outputs;
mod proxy;
pub(crate) mod range;
mod ready;
mod spool_sweeper;
pub mod tls;
mod to_origin;

/// The edge's QUIC endpoint, with its TLS and transport settings (the HTTP-version benchmark
/// measures a raw QUIC sink on it, the limit for the edge's HTTP/3).
pub use h3::endpoint as quic_endpoint;

use crate::config::EdgeSettings;
use crate::ingest::chunk_spool::ChunkSpool;
use crate::ingest::durability::Syncer;
use crate::ingest::offset_spool::OffsetSpool;
use crate::ingest::Ingest;
use crate::store::Store;
use origin_client::OriginClient;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use std::sync::Arc;

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An HTTP client (the origin's, or upload sources') could not be built.
    #[error("edge: cannot set up an HTTP client")]
    Client(#[source] reqwest::Error),
    /// Uploads from a URL could not be set up.
    #[error("edge: cannot set up uploads from a URL")]
    Fetch(#[source] crate::ingest::fetch::FetcherError),
    /// The chunk spool could not be opened.
    #[error("edge: cannot open the chunk spool")]
    Spool(#[source] crate::ingest::chunk_spool::SpoolError),
    /// The spool's syncing thread could not be started.
    #[error("edge: cannot start the spool's syncing thread")]
    Syncer(#[source] std::io::Error),
    /// The forwarding state directory could not be created.
    #[error("edge: cannot set up forwarding to storage")]
    Store(#[source] crate::store::StoreError),
    /// The TLS certificate could not be loaded.
    #[error("edge: cannot load the TLS certificate")]
    Tls(#[source] tls::TlsError),
    /// A listener could not be set up.
    #[error("edge: cannot {what}")]
    Listen {
        /// What we were doing.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The spools of chunked and resumable uploads under `spool_dir`, sharing one syncing thread.
fn open_spools(settings: &EdgeSettings) -> Result<proxy::Spools, StartError> {
    let syncer = Arc::new(Syncer::start(settings.durability).map_err(StartError::Syncer)?);
    Ok(proxy::Spools {
        chunks: ChunkSpool::open(&settings.spool_dir.join("chunks"), syncer.clone())
            .map_err(StartError::Spool)?,
        resumable: OffsetSpool::open(&settings.spool_dir.join("resumable"), syncer)
            .map_err(StartError::Spool)?,
    })
}

/// The ingest core over `store`, asking the origin through the client it returns too.
fn open_ingest(
    settings: &EdgeSettings,
    store: Arc<dyn Store>,
    origins: Arc<origins::Origins>,
) -> Result<(Ingest, OriginClient), StartError> {
    let origin = OriginClient::new(
        origins,
        settings.internal_secret.clone(),
        settings.auth_cache_ttl,
    )
    .map_err(StartError::Client)?;
    let ingest = Ingest::new(store, Arc::new(origin.clone()), settings.max_upload_size)
        .with_name(settings.name.clone())
        .with_forwarding(&settings.spool_dir.join("forward"))
        .map_err(StartError::Store)?;
    Ok((ingest, origin))
}

/// The edge's clients of other servers than the origin's internal API: the fetcher of upload
/// sources, and the forwarder of control-API requests the edge reads itself.
fn outbound_clients(
    settings: &EdgeSettings,
) -> Result<(Arc<crate::ingest::fetch::Fetcher>, reqwest::Client), StartError> {
    let fetcher =
        crate::ingest::fetch::Fetcher::new(settings.fetch, settings.spool_dir.join("fetch"))
            .map_err(StartError::Fetch)?;
    let forwarder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(StartError::Client)?;
    Ok((Arc::new(fetcher), forwarder))
}

/// Runs the edge until the process is told to stop; never returns on success.
///
/// # Errors
/// The edge cannot be set up.
pub fn run(
    settings: &EdgeSettings,
    store: Arc<dyn Store>,
    runtime: &tokio::runtime::Handle,
    upgrade: bool,
) -> Result<std::convert::Infallible, StartError> {
    let origins = Arc::new(origins::Origins::new(settings.origins.clone()));
    let (ingest, origin) = open_ingest(settings, store.clone(), origins.clone())?;
    let spools = Arc::new(open_spools(settings)?);
    crate::metrics::edge_started();
    crate::metrics::on_scrape(Arc::new(metered::Spool(settings.spool_dir.clone())));
    let sweeper = spool_sweeper::SpoolSweeper {
        ingest: ingest.clone(),
        spools: spools.clone(),
        root: settings.spool_dir.clone(),
        interval: settings.sweep_interval,
    };

    let mut server = server(settings, upgrade);
    let active = heartbeat::ActiveUploads::default();
    let progress = ProgressReports(ingest.clone());
    let (fetcher, forwarder) = outbound_clients(settings)?;
    let fetches = Fetches(fetcher.clone(), ingest.clone());
    let edge = proxy::EdgeProxy::new(
        ingest,
        store,
        spools,
        active.clone(),
        settings,
        origins.clone(),
        (fetcher, forwarder),
    );
    let mut proxy = pingora::proxy::http_proxy(&server.configuration, edge.clone());
    proxy.h2_options = Some(h2::options());
    let per_client = limits::PerClient::new(settings.limits.max_connections_per_client);
    let draining = Arc::new(drain::Draining::default());
    let mut service = pingora::services::listening::Service::new(
        "Uplink edge".into(),
        metered::Connections {
            app: Arc::new(proxy),
            per_client: per_client.clone(),
            header_timeout: settings.limits.header_timeout,
            draining: draining.clone(),
        },
    );
    service.add_tcp(&settings.listen.to_string());
    if let Some(tls) = &settings.tls {
        let quic = h3::Quic {
            edge,
            origins: origins.clone(),
            per_client,
            draining: draining.clone(),
            // A new process binds the UDP port once the old one has drained and let it go.
            wait_for_port: upgrade,
        };
        listen_tls(&mut service, tls, quic, runtime)?;
    }
    server.add_service(service);
    let drain = drain::Drain {
        state: draining,
        active: active.clone(),
        timeout: settings.drain_timeout,
    };
    let heartbeats = settings.name.as_ref().map(|name| heartbeat::Heartbeats {
        origin,
        name: name.clone(),
        region: settings.region.clone(),
        spool_dir: settings.spool_dir.clone(),
        active,
        interval: settings.heartbeat_interval,
    });
    add_background(&mut server, sweeper, drain, heartbeats, (progress, fetches));
    tracing::info!(listen = %settings.listen, origin = %origins.now().url, name = ?settings.name, region = ?settings.region, "Edge listening.");
    server.run_forever()
}

/// The Pingora server: its drain timeout, its upgrade socket and, with `upgrade`, the listening
/// sockets of the running edge (it waits for them).
fn server(settings: &EdgeSettings, upgrade: bool) -> Server {
    // The drain service ends the process once nothing is in flight, within the grace period.
    let conf = ServerConf {
        threads: settings.threads,
        grace_period_seconds: Some(settings.drain_timeout.as_secs() + 1),
        graceful_shutdown_timeout_seconds: Some(5),
        upgrade_sock: settings.upgrade_socket.display().to_string(),
        pid_file: settings.spool_dir.join("edge.pid").display().to_string(),
        ..ServerConf::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade,
        ..Default::default()
    };
    if upgrade {
        tracing::info!(socket = %settings.upgrade_socket.display(), "Waiting for the running edge's listening sockets (send it SIGQUIT).");
    }
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();
    server
}

/// Reports the progress of uploads in flight to the origin until the edge stops.
struct ProgressReports(Ingest);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for ProgressReports {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        tokio::select! {
            _ = shutdown.changed() => {}
            () = self.0.report_progress() => {}
        }
    }
}

/// Fetches again what the edge was fetching when it stopped.
struct Fetches(Arc<crate::ingest::fetch::Fetcher>, Ingest);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Fetches {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        tokio::select! {
            _ = shutdown.changed() => {}
            () = self.0.recover(&self.1) => {}
        }
    }
}

/// The edge's background services: the spool sweeper, the drain, progress reports, fetches
/// resumed after a restart and, for a named edge, its heartbeats.
fn add_background(
    server: &mut Server,
    sweeper: spool_sweeper::SpoolSweeper,
    drain: drain::Drain,
    heartbeats: Option<heartbeat::Heartbeats>,
    (progress, fetches): (ProgressReports, Fetches),
) {
    use pingora::services::background::background_service;
    server.add_service(background_service("spool sweeper", sweeper));
    server.add_service(background_service("progress reports", progress));
    server.add_service(background_service("fetches", fetches));
    server.add_service(background_service("drain", drain));
    if let Some(heartbeats) = heartbeats {
        server.add_service(background_service("heartbeat", heartbeats));
    }
}

/// Adds the TLS listener (HTTP/2 or HTTP/1.1 by ALPN, windows sized for uploads) to `service`
/// and starts the HTTP/3 listener on the same port over UDP, on `runtime`.
fn listen_tls(
    service: &mut pingora::services::listening::Service<
        metered::Connections<pingora::proxy::HttpProxy<proxy::EdgeProxy>>,
    >,
    tls: &crate::config::TlsSettings,
    quic: h3::Quic,
    runtime: &tokio::runtime::Handle,
) -> Result<(), StartError> {
    let certificate = Arc::new(
        tls::Certificate::open(&tls.certificate, &tls.private_key).map_err(StartError::Tls)?,
    );
    let listen = |what: &str, source| StartError::Listen {
        what: format!("{what} on {}", tls.listen),
        source,
    };
    // HTTPS: HTTP/2 or HTTP/1.1 by ALPN.
    let mut https = pingora::listeners::tls::TlsSettings::intermediate("", "")
        .map_err(|e| listen("set up TLS", std::io::Error::other(e.to_string())))?;
    https.set_cert_resolver(certificate.clone());
    https.enable_h2();
    service.add_tls_with_settings(&tls.listen.to_string(), None, https);
    // HTTP/3 on the same port over UDP, on the runtime that runs the background work.
    let _entered = runtime.enter();
    certificate.keep_fresh();
    if quic.wait_for_port {
        runtime.spawn(quic.serve_when_free(tls.listen, certificate));
    } else {
        let endpoint =
            h3::endpoint(tls.listen, &certificate).map_err(|e| listen("listen for QUIC", e))?;
        runtime.spawn(quic.serve(endpoint));
    }
    tracing::info!(listen = %tls.listen, "Edge listening for HTTPS (HTTP/1.1, HTTP/2) and HTTP/3.");
    Ok(())
}
