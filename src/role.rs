//! Wires the roles: `uplink origin` (a Tokio runtime serving the origin), `uplink edge` (the
//! Pingora server) and `uplink dev` (both in one process, the origin on an ephemeral loopback
//! port that only the edge uses).
//!
//! Owns the process-level concerns (runtimes, signals); must not hold request logic.

use crate::config::{DevSettings, EdgeSettings, OriginSettings};
use crate::{edge, origin, store};
use rand::distr::{Alphanumeric, SampleString};

/// Why a role could not start.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// The Tokio runtime.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// The origin.
    #[error(transparent)]
    Origin(#[from] origin::StartError),
    /// The edge.
    #[error(transparent)]
    Edge(#[from] edge::StartError),
    /// The edge's store.
    #[error("edge: cannot open the object store")]
    Store(#[source] store::StoreError),
    /// The metrics address.
    #[error("cannot serve metrics on {addr}")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The token key file of `uplink dev`.
    #[error("token keys in {path}: {message}")]
    Keys {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime, RoleError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(RoleError::Runtime)
}

/// The token keyring of a data directory: `DATA_DIR/token-keys`, created (mode 0600) with one
/// random key on first use, so tokens handed out survive restarts.
///
/// # Errors
/// The file cannot be read or written, or holds no valid keys.
pub fn dev_keyring(data_dir: &std::path::Path) -> Result<crate::token::Keyring, RoleError> {
    let path = data_dir.join("token-keys");
    let keys_error = |message: String| RoleError::Keys {
        path: path.display().to_string(),
        message,
    };
    if !path.exists() {
        let line = crate::token::Keyring::generate_line("dev1", &mut rand::rng()) + "\n";
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
        if let Err(e) = written {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(keys_error(e.to_string()));
            }
        }
    }
    let text = std::fs::read_to_string(&path).map_err(|e| keys_error(e.to_string()))?;
    crate::token::Keyring::parse(&text).map_err(keys_error)
}

/// A random internal secret for a single-process deployment.
#[must_use]
pub fn generate_secret() -> crate::config::Secret {
    crate::config::Secret::new(Alphanumeric.sample_string(&mut rand::rng(), 40))
}

/// Serves Prometheus metrics on `addr`, if set, on the current runtime.
async fn serve_metrics(addr: Option<std::net::SocketAddr>) -> Result<(), RoleError> {
    if let Some(addr) = addr {
        crate::metrics::serve(addr)
            .await
            .map_err(|source| RoleError::Metrics { addr, source })?;
    }
    Ok(())
}

/// Runs the origin until SIGINT or SIGTERM.
///
/// # Errors
/// It cannot start.
pub fn run_origin(settings: OriginSettings) -> Result<(), RoleError> {
    let rt = runtime()?;
    rt.block_on(async {
        serve_metrics(settings.metrics_listen).await?;
        origin::start(settings).await?;
        shutdown_signal().await;
        tracing::info!("Origin stopping.");
        Ok(())
    })
}

/// Runs the edge; returns only if it cannot start. With `upgrade`, it takes over the listening
/// sockets of the edge running with the same config (send that one SIGQUIT).
///
/// # Errors
/// It cannot start.
pub fn run_edge(settings: &EdgeSettings, upgrade: bool) -> Result<(), RoleError> {
    let rt = runtime()?;
    rt.block_on(serve_metrics(settings.metrics_listen))?;
    let store = rt
        .block_on(store::open(&settings.storage))
        .map_err(RoleError::Store)?;
    edge::run(settings, store, rt.handle(), upgrade)?;
    Ok(())
}

/// Runs origin and edge in one process; returns only if they cannot start.
///
/// # Errors
/// Either cannot start.
pub fn run_dev(mut settings: DevSettings) -> Result<(), RoleError> {
    let rt = runtime()?;
    rt.block_on(serve_metrics(settings.metrics_listen))?;
    let origin_addr = rt.block_on(origin::start(settings.origin.clone()))?;
    settings.edge.origins = vec![crate::config::OriginAddr {
        url: format!("http://{origin_addr}"),
        addr: origin_addr.to_string(),
    }];
    let store = rt
        .block_on(store::open(&settings.edge.storage))
        .map_err(RoleError::Store)?;
    if let (true, Some(tls)) = (settings.self_signed, &settings.edge.tls) {
        edge::tls::ensure_self_signed(&tls.certificate, &tls.private_key)
            .map_err(|e| RoleError::Edge(edge::StartError::Tls(e)))?;
    }
    tracing::info!(data_dir = %settings.data_dir.display(), "Embedded default: origin and edge in one process.");
    // `rt` keeps running the origin while the edge's server owns this thread.
    edge::run(&settings.edge, store, rt.handle(), false)?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}
