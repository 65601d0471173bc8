//! The edge's config file (`config/edge.toml`) with its `[tls]`, validated into
//! [`EdgeSettings`]. Pure but for secret references and named files.

use super::defaults::*;
use super::value::{
    existing_file, nonzero, optional_addr, optional_id, parse_addr, parse_duration, parse_size,
};
use super::{invalid, ConfigError, Secret, SecretRef, StorageUrl};
use crate::ingest::durability::Durability;
use crate::token::Keyring;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The edge's config file (`config/edge.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEdge {
    /// Public HTTP address, e.g. `"0.0.0.0:8080"`.
    pub listen: String,
    /// Log lines as `"text"` (the default) or `"json"` (one object per line).
    #[serde(default)]
    pub log_format: super::LogFormat,
    /// Address for Prometheus metrics (`GET /metrics`), e.g. `"127.0.0.1:9101"`; off unless
    /// set, and never the public port.
    pub metrics_listen: Option<String>,
    /// Base URL of the origin's API, e.g. `"http://10.0.0.5:8081"`, or several origins in
    /// the order to try them: the edge uses the first that answers and moves on to the next
    /// when it cannot connect.
    pub origin_url: OneOrMany,
    /// Shared secret presented on the origin's internal API.
    pub internal_secret: SecretRef,
    /// Object storage the edge writes uploads to: `file:///path`.
    pub storage: String,
    /// Largest single upload accepted, e.g. `"50GiB"`.
    #[serde(default = "default_max_upload")]
    pub max_upload_size: String,
    /// Largest file the HTML form upload (`POST /files/upload`) accepts, e.g. `"2GiB"`.
    #[serde(default = "default_form_max")]
    pub form_max_size: String,
    /// Worker threads of the HTTP server.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// How long an API key's account lookup is cached, e.g. `"60s"`.
    #[serde(default = "default_auth_cache_ttl")]
    pub auth_cache_ttl: String,
    /// Keys that verify upload tokens: the origin's `token_keys`, by reference.
    pub token_keys: SecretRef,
    /// Directory for chunks that have arrived but are not yet assembled (keep it on the same
    /// durable disk across restarts: acknowledged chunks live here).
    pub spool_dir: PathBuf,
    /// When an acknowledged byte is on the spool's disk: `"sync"` (the default: before the
    /// answer), `"batched"` (in the round of syncs right after it) or `"none"` (when the
    /// kernel writes it back). Chunks are synced before their answer whatever this says.
    #[serde(default)]
    pub durability: Durability,
    /// How long past its expiry a token is still accepted (clock skew), e.g. `"30s"`.
    #[serde(default = "default_token_skew")]
    pub token_skew: String,
    /// How often spooled uploads that are no longer receiving are removed, e.g. `"5m"`.
    #[serde(default = "default_sweep_interval")]
    pub sweep_interval: String,
    /// This edge's name in the origin's `[fleet]`; heartbeats are sent only when it is set.
    pub name: Option<String>,
    /// This edge's region in the origin's `[fleet]`; upload URLs of other regions are refused.
    pub region: Option<String>,
    /// How often a heartbeat is sent, e.g. `"10s"`.
    #[serde(default = "default_heartbeat_interval")]
    pub heartbeat_interval: String,
    /// HTTPS and HTTP/3: a TLS listener (HTTP/1.1 and HTTP/2 by ALPN) and a QUIC listener on
    /// the same address over UDP.
    pub tls: Option<RawTls>,
    /// Limits on slow and greedy clients.
    #[serde(default)]
    pub limits: super::RawLimits,
    /// Uploads from a URL: the guard and how many sources are fetched at once.
    #[serde(default)]
    pub fetch: RawFetch,
    /// On SIGTERM (or a graceful upgrade's SIGQUIT), how long requests in flight may take to
    /// finish before they are ended (keeping what arrived), e.g. `"60s"`.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: String,
    /// The Unix socket a graceful upgrade hands the listening sockets over (`uplink edge
    /// --upgrade`). Default `SPOOL_DIR/upgrade.sock`.
    pub upgrade_socket: Option<PathBuf>,
}

/// Uploads from a URL (`[fetch]`, edge and dev).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFetch {
    /// Whether upload sources may be (or redirect to, or resolve to) private, loopback and
    /// link-local addresses. Default false on `uplink edge`, true on `uplink dev`.
    pub allow_private_addresses: Option<bool>,
    /// Sources this edge fetches at once; more wait their turn (status 0). Default 8.
    pub at_once: Option<usize>,
}

/// Validated `[fetch]`.
#[derive(Debug, Clone, Copy)]
pub struct FetchSettings {
    /// Whether private addresses may be fetched.
    pub allow_private_addresses: bool,
    /// Sources fetched at once.
    pub at_once: usize,
}

impl RawFetch {
    /// Checks every key; `dev` picks the default of `allow_private_addresses`.
    ///
    /// # Errors
    /// The first unusable key.
    pub fn validate(&self, dev: bool) -> Result<FetchSettings, ConfigError> {
        Ok(FetchSettings {
            allow_private_addresses: self.allow_private_addresses.unwrap_or(dev),
            at_once: nonzero(self.at_once.unwrap_or(8), "fetch.at_once")?,
        })
    }
}

/// The edge's `[tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Address of the TLS (TCP) and QUIC (UDP) listeners, e.g. `"0.0.0.0:443"`.
    pub listen: String,
    /// Certificate chain, PEM (re-read when the file changes, no restart needed).
    pub certificate: PathBuf,
    /// Its private key, PEM.
    pub private_key: PathBuf,
}

/// Validated TLS listener settings.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Address of the TCP and UDP listeners.
    pub listen: SocketAddr,
    /// Certificate chain (PEM).
    pub certificate: PathBuf,
    /// Private key (PEM).
    pub private_key: PathBuf,
}

impl RawTls {
    pub(super) fn validate(&self) -> Result<TlsSettings, ConfigError> {
        existing_file(&self.certificate, "tls.certificate")?;
        existing_file(&self.private_key, "tls.private_key")?;
        Ok(TlsSettings {
            listen: parse_addr(&self.listen, "tls.listen")?,
            certificate: self.certificate.clone(),
            private_key: self.private_key.clone(),
        })
    }
}

/// A key that takes one value or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Several, in order.
    Many(Vec<String>),
}

impl OneOrMany {
    fn values(&self) -> &[String] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
        }
    }
}

/// An origin as the edge reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginAddr {
    /// Base URL, without a trailing slash.
    pub url: String,
    /// Its socket address, for the proxy.
    pub addr: String,
}

impl OriginAddr {
    /// An origin at `http://HOST:PORT` (the internal network).
    ///
    /// # Errors
    /// Not such a URL.
    pub fn parse(raw: &str, key: &str) -> Result<Self, ConfigError> {
        let url = raw.trim_end_matches('/').to_owned();
        let addr = url
            .strip_prefix("http://")
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .ok_or_else(|| invalid(key, "must be http://HOST:PORT (the internal network)"))?
            .to_owned();
        if !addr.contains(':') {
            return Err(invalid(
                key,
                "must name the port, e.g. http://10.0.0.5:8081",
            ));
        }
        Ok(Self { url, addr })
    }
}

/// Validated edge settings.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Address for Prometheus metrics, if they are served.
    pub metrics_listen: Option<SocketAddr>,
    /// The origins, in the order to try them (at least one).
    pub origins: Vec<OriginAddr>,
    /// Internal API secret.
    pub internal_secret: Secret,
    /// Object storage.
    pub storage: StorageUrl,
    /// Largest upload in bytes.
    pub max_upload_size: u64,
    /// Largest HTML-form upload in bytes.
    pub form_max_size: u64,
    /// Server threads.
    pub threads: usize,
    /// Account cache lifetime.
    pub auth_cache_ttl: Duration,
    /// Token keys.
    pub keyring: Keyring,
    /// Allowed clock skew, in seconds.
    pub token_skew: u64,
    /// Spool directory.
    pub spool_dir: PathBuf,
    /// When acknowledged bytes reach the spool's disk.
    pub durability: Durability,
    /// How often the spool sweeper runs.
    pub sweep_interval: Duration,
    /// HTTPS and HTTP/3 listeners, if any.
    pub tls: Option<TlsSettings>,
    /// Limits on slow and greedy clients.
    pub limits: super::Limits,
    /// Uploads from a URL.
    pub fetch: FetchSettings,
    /// How long requests in flight may take to finish on shutdown or upgrade.
    pub drain_timeout: Duration,
    /// The graceful upgrade's socket.
    pub upgrade_socket: PathBuf,
    /// Name in the origin's fleet (heartbeats are sent when set).
    pub name: Option<String>,
    /// Region: tokens scoped to another region are refused.
    pub region: Option<String>,
    /// How often heartbeats are sent.
    pub heartbeat_interval: Duration,
}

impl RawEdge {
    /// Checks every key and resolves the secret.
    ///
    /// # Errors
    /// The first key with an unusable value.
    pub fn validate(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<EdgeSettings, ConfigError> {
        let origins = self
            .origin_url
            .values()
            .iter()
            .map(|raw| OriginAddr::parse(raw, "origin_url"))
            .collect::<Result<Vec<_>, _>>()?;
        if origins.is_empty() {
            return Err(invalid("origin_url", "name at least one origin"));
        }
        Ok(EdgeSettings {
            listen: parse_addr(&self.listen, "listen")?,
            metrics_listen: optional_addr(self.metrics_listen.as_deref(), "metrics_listen")?,
            origins,
            internal_secret: self.internal_secret.resolve("internal_secret", env)?,
            storage: StorageUrl::parse(&self.storage, "storage")?,
            max_upload_size: parse_size(&self.max_upload_size, "max_upload_size")?,
            form_max_size: parse_size(&self.form_max_size, "form_max_size")?,
            threads: nonzero(self.threads, "threads")?,
            auth_cache_ttl: parse_duration(&self.auth_cache_ttl, "auth_cache_ttl")?,
            keyring: self.token_keys.keyring("token_keys", env)?,
            token_skew: parse_duration(&self.token_skew, "token_skew")?.as_secs(),
            spool_dir: self.spool_dir.clone(),
            durability: self.durability,
            sweep_interval: parse_duration(&self.sweep_interval, "sweep_interval")?,
            name: optional_id(self.name.as_ref(), "name")?,
            region: optional_id(self.region.as_ref(), "region")?,
            heartbeat_interval: parse_duration(&self.heartbeat_interval, "heartbeat_interval")?,
            tls: self.tls.as_ref().map(RawTls::validate).transpose()?,
            limits: self.limits.validate()?,
            fetch: self.fetch.validate(false)?,
            drain_timeout: parse_duration(&self.drain_timeout, "drain_timeout")?,
            upgrade_socket: self
                .upgrade_socket
                .clone()
                .unwrap_or_else(|| self.spool_dir.join("upgrade.sock")),
        })
    }
}
