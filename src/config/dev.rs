//! `uplink dev`'s config file (`config/dev.toml`; every key also on the command line): one
//! origin and one edge in one process, their settings built from the same defaults as the
//! roles' own files. Pure.

use super::defaults::*;
use super::edge::{EdgeSettings, RawTls, TlsSettings};
use super::origin::{OriginSettings, Routing};
use super::processing::{RawNotify, RawProcessing};
use super::value::{optional_addr, parse_addr, parse_duration, parse_size};
use super::{invalid, ConfigError, DatabaseUrl, Secret, StorageUrl};
use crate::ingest::durability::Durability;
use crate::token::Keyring;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The embedded default's config file (`config/dev.toml`); every key may also come from the
/// command line.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDev {
    /// Public HTTP address. Default `"127.0.0.1:8080"`.
    pub listen: Option<String>,
    /// Log lines as `"text"` (the default) or `"json"` (one object per line).
    #[serde(default)]
    pub log_format: super::LogFormat,
    /// Address for Prometheus metrics of both roles (`GET /metrics`), e.g.
    /// `"127.0.0.1:9100"`; off unless set.
    pub metrics_listen: Option<String>,
    /// Directory for the SQLite database, objects and scratch files. Default `"data"`.
    pub data_dir: Option<PathBuf>,
    /// Object storage. Default `file://DATA_DIR/objects`.
    pub storage: Option<String>,
    /// State database. Default `sqlite://DATA_DIR/uplink.db`.
    pub database: Option<String>,
    /// Transcode workers. Default 1; 0 stores uploads without processing them (benchmarks).
    pub workers: Option<usize>,
    /// Largest single upload accepted. Default `"50GiB"`.
    pub max_upload_size: Option<String>,
    /// Largest HTML-form upload accepted. Default `"2GiB"`.
    pub form_max_size: Option<String>,
    /// The longest an upload may stay unfinished. Default `"7d"`.
    pub abandon_after: Option<String>,
    /// How often the sweepers run. Default `"5m"`.
    pub sweep_interval: Option<String>,
    /// How long a worker holds a job before another may take it over. Default `"10m"`.
    pub job_lease: Option<String>,
    /// Also listen for HTTPS and HTTP/3 here (TCP and UDP), e.g. `"127.0.0.1:8443"`.
    pub tls_listen: Option<String>,
    /// Certificate chain (PEM) for `tls_listen`; default: a self-signed one generated into
    /// `DATA_DIR/tls/`.
    pub tls_certificate: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_private_key: Option<PathBuf>,
    /// Transcode templates, watermarks and job limits.
    #[serde(default)]
    pub processing: RawProcessing,
    /// How notifications are retried and guarded (private addresses allowed by default).
    #[serde(default)]
    pub notify: RawNotify,
    /// When an acknowledged byte is on the spool's disk (`edge.toml`'s `durability`): `"sync"`
    /// (the default), `"batched"` or `"none"`.
    #[serde(default)]
    pub durability: Durability,
    /// The edge's limits on slow and greedy clients (`edge.toml`'s `[limits]`).
    #[serde(default)]
    pub limits: super::RawLimits,
    /// Uploads from a URL (`edge.toml`'s `[fetch]`; private addresses allowed by default).
    #[serde(default)]
    pub fetch: super::edge::RawFetch,
}

/// Validated settings of the embedded default: the two roles' settings plus the data dir.
#[derive(Debug, Clone)]
pub struct DevSettings {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The origin part (listens on an ephemeral loopback port).
    pub origin: OriginSettings,
    /// The edge part (the one public port).
    pub edge: EdgeSettings,
    /// Address for Prometheus metrics of both roles, if they are served.
    pub metrics_listen: Option<SocketAddr>,
    /// Whether the TLS certificate is one the node generates for itself (none was given).
    pub self_signed: bool,
}

impl RawDev {
    /// The data directory in effect (default `data`).
    #[must_use]
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("data"))
    }

    /// The TLS listener, if asked for: with the given certificate, or a self-signed one made
    /// into `DATA_DIR/tls/`.
    fn tls(&self, data_dir: &Path) -> Result<Option<TlsSettings>, ConfigError> {
        match (&self.tls_listen, &self.tls_certificate, &self.tls_private_key) {
            (None, _, _) => Ok(None),
            (Some(addr), Some(certificate), Some(private_key)) => RawTls {
                listen: addr.clone(),
                certificate: certificate.clone(),
                private_key: private_key.clone(),
            }
            .validate()
            .map(Some),
            (Some(addr), None, None) => Ok(Some(TlsSettings {
                listen: parse_addr(addr, "tls_listen")?,
                certificate: data_dir.join("tls/certificate.pem"),
                private_key: data_dir.join("tls/private-key.pem"),
            })),
            _ => Err(invalid(
                "tls_certificate",
                "give both tls_certificate and tls_private_key, or neither (a self-signed certificate is made)",
            )),
        }
    }

    /// Object storage and the state database: as given, or in `data_dir`.
    fn stores(&self, data_dir: &Path) -> Result<(StorageUrl, DatabaseUrl), ConfigError> {
        let storage = match &self.storage {
            Some(raw) => StorageUrl::parse(raw, "storage")?,
            None => StorageUrl::File(data_dir.join("objects")),
        };
        let database = match &self.database {
            Some(raw) => DatabaseUrl::parse(raw, "database")?,
            None => DatabaseUrl::in_data_dir(data_dir),
        };
        Ok((storage, database))
    }

    /// Checks every key; `secret` is the internal secret generated for this process.
    ///
    /// # Errors
    /// The first key with an unusable value.
    pub fn validate(&self, secret: Secret, keyring: Keyring) -> Result<DevSettings, ConfigError> {
        let data_dir = self.data_dir();
        let (storage, database) = self.stores(&data_dir)?;
        let listen = parse_addr(self.listen.as_deref().unwrap_or("127.0.0.1:8080"), "listen")?;
        let self_signed = self.tls_certificate.is_none();
        let tls = self.tls(&data_dir)?;
        // A key given, or the roles' default.
        let or =
            |raw: &Option<String>, default: fn() -> String| raw.clone().unwrap_or_else(default);
        let max_upload_size = parse_size(
            &or(&self.max_upload_size, default_max_upload),
            "max_upload_size",
        )?;
        let form_max_size =
            parse_size(&or(&self.form_max_size, default_form_max), "form_max_size")?;
        let abandon_after = parse_duration(
            &or(&self.abandon_after, default_abandon_after),
            "abandon_after",
        )?;
        let sweep_interval = parse_duration(
            &or(&self.sweep_interval, default_sweep_interval),
            "sweep_interval",
        )?;
        Ok(DevSettings {
            origin: OriginSettings {
                // The origin is internal to the process: an ephemeral loopback port.
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                // One metrics address serves both roles ([`DevSettings::metrics_listen`]).
                metrics_listen: None,
                database,
                storage: storage.clone(),
                internal_secret: secret.clone(),
                scratch_dir: data_dir.join("scratch"),
                workers: self.workers.unwrap_or_else(default_workers),
                job_lease: parse_duration(&or(&self.job_lease, default_job_lease), "job_lease")?,
                job_attempts: default_job_attempts(),
                keyring: keyring.clone(),
                token_ttl: parse_duration(&default_token_ttl(), "token_ttl")?,
                routing: Routing::Single(format!("http://{listen}")),
                max_upload_size,
                abandon_after,
                sweep_interval,
                processing: self.processing.validate()?,
                notify: self.notify.validate(true)?,
            },
            edge: EdgeSettings {
                listen,
                metrics_listen: None,
                // Filled in once the origin is bound.
                origins: Vec::new(),
                internal_secret: secret,
                storage,
                max_upload_size,
                form_max_size,
                threads: default_threads(),
                auth_cache_ttl: parse_duration(&default_auth_cache_ttl(), "auth_cache_ttl")?,
                keyring,
                token_skew: parse_duration(&default_token_skew(), "token_skew")?.as_secs(),
                spool_dir: data_dir.join("spool"),
                durability: self.durability,
                sweep_interval,
                name: None,
                region: None,
                heartbeat_interval: parse_duration(
                    &default_heartbeat_interval(),
                    "heartbeat_interval",
                )?,
                tls,
                limits: self.limits.validate()?,
                fetch: self.fetch.validate(true)?,
                drain_timeout: parse_duration(&default_drain_timeout(), "drain_timeout")?,
                upgrade_socket: data_dir.join("spool/upgrade.sock"),
            },
            metrics_listen: optional_addr(self.metrics_listen.as_deref(), "metrics_listen")?,
            self_signed,
            data_dir,
        })
    }
}
