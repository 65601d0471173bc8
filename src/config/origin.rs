//! The origin's config file (`config/origin.toml`) and its `[fleet]`, validated into
//! [`OriginSettings`]. Pure but for secret references and named files.

use super::defaults::*;
use super::processing::{NotifySettings, Processing, RawNotify, RawProcessing};
use super::value::{optional_addr, parse_addr, parse_base_url, parse_duration, parse_size};
use super::{invalid, ConfigError, DatabaseUrl, Secret, SecretRef, StorageUrl};
use crate::token::Keyring;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The origin's config file (`config/origin.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrigin {
    /// Address of the control API and the internal edge API, e.g. `"127.0.0.1:8081"`.
    pub listen: String,
    /// Log lines as `"text"` (the default) or `"json"` (one object per line).
    #[serde(default)]
    pub log_format: super::LogFormat,
    /// Address for Prometheus metrics (`GET /metrics`), e.g. `"127.0.0.1:9102"`; off unless
    /// set, and never the API's port.
    pub metrics_listen: Option<String>,
    /// State database: `sqlite://PATH?mode=rwc` or `postgres://user@host/db`.
    pub database: String,
    /// Object storage: `file:///path`.
    pub storage: String,
    /// Shared secret the edges present on the internal API.
    pub internal_secret: SecretRef,
    /// Directory for the transcode workers' temporary files.
    pub scratch_dir: PathBuf,
    /// Transcode workers on this node; 0 for an origin that takes no jobs (other origins
    /// sharing the database process them).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// How long a worker holds a job before another may take it over, e.g. `"10m"`.
    #[serde(default = "default_job_lease")]
    pub job_lease: String,
    /// Attempts at a job (after crashes or storage errors) before the upload fails.
    #[serde(default = "default_job_attempts")]
    pub job_attempts: u32,
    /// Keys that sign edge upload tokens, `ID:BASE64` per line or comma-separated (at least
    /// 32 bytes each); the first signs, all verify. By reference, like every secret.
    pub token_keys: SecretRef,
    /// Default validity of an upload token or URL (an account may set its own), e.g. `"4h"`.
    #[serde(default = "default_token_ttl")]
    pub token_ttl: String,
    /// Public base URL of the one edge that upload URLs name, e.g.
    /// `"https://upload.example.com"`; or `[fleet]` to choose among several.
    pub edge_url: Option<String>,
    /// The edges upload URLs may name, chosen by the client's location (instead of `edge_url`).
    pub fleet: Option<RawFleet>,
    /// Largest upload a control API will open (declared sizes above it are refused); keep it
    /// equal to the edges' `max_upload_size`.
    #[serde(default = "default_max_upload")]
    pub max_upload_size: String,
    /// The longest an upload may stay unfinished (its own expiry may be sooner); then the
    /// sweeper releases its record, partial object and spool, e.g. `"7d"`.
    #[serde(default = "default_abandon_after")]
    pub abandon_after: String,
    /// How often the sweeper runs, e.g. `"5m"`.
    #[serde(default = "default_sweep_interval")]
    pub sweep_interval: String,
    /// Transcode templates, watermarks and job limits.
    #[serde(default)]
    pub processing: RawProcessing,
    /// How notifications are retried and guarded.
    #[serde(default)]
    pub notify: RawNotify,
}

/// The origin's `[fleet]`: the edges and how one is chosen.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    /// The MaxMind DB that locates addresses: the shipped country database or a city one.
    pub geoip_database: PathBuf,
    /// The edge (by name) for clients that cannot be located.
    pub fallback: String,
    /// An edge whose last heartbeat is older is not chosen, e.g. `"30s"`.
    #[serde(default = "default_heartbeat_timeout")]
    pub heartbeat_timeout: String,
    /// An edge silent this long is lost: uploads whose unstored chunks it held fail
    /// (`edge_lost`), e.g. `"2m"`.
    #[serde(default = "default_edge_lost_after")]
    pub edge_lost_after: String,
    /// An edge with less free spool space is not chosen, e.g. `"1GiB"`.
    #[serde(default = "default_min_spool_free")]
    pub min_spool_free: String,
    /// Proxies (CIDR) whose `Forwarded` / `X-Forwarded-For` is believed: the edges' and load
    /// balancers' addresses.
    #[serde(default = "default_trusted_proxies")]
    pub trusted_proxies: Vec<String>,
    /// The edges.
    pub edges: Vec<RawFleetEdge>,
    /// Host names that front all the edges of a region (geo-DNS or a load balancer): upload
    /// URLs name the region's host instead of one edge, so a client whose edge is lost
    /// continues at the same URL on another edge of the region.
    #[serde(default)]
    pub regions: Vec<RawFleetRegion>,
}

/// One `[[fleet.regions]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleetRegion {
    /// A region of `[[fleet.edges]]`.
    pub name: String,
    /// The base URL that reaches the region's edges, e.g. `"https://eu.upload.example.com"`.
    pub url: String,
}

/// One `[[fleet.edges]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleetEdge {
    /// Unique name: the edge's own `name`.
    pub name: String,
    /// Region: the edge's own `region`; its upload URLs work in this region only.
    pub region: String,
    /// Where it is, in degrees.
    pub latitude: f64,
    /// Where it is, in degrees.
    pub longitude: f64,
    /// Public base URL (HTTP/1.1 and HTTP/2).
    pub url: String,
    /// Public base URL over HTTP/3, if it has one.
    pub h3_url: Option<String>,
    /// Uploads it takes at once.
    pub capacity: u64,
}

/// Validated origin settings.
#[derive(Debug, Clone)]
pub struct OriginSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Address for Prometheus metrics, if they are served.
    pub metrics_listen: Option<SocketAddr>,
    /// State database.
    pub database: DatabaseUrl,
    /// Object storage.
    pub storage: StorageUrl,
    /// Internal API secret.
    pub internal_secret: Secret,
    /// Scratch directory for workers.
    pub scratch_dir: PathBuf,
    /// Number of workers.
    pub workers: usize,
    /// Job lease.
    pub job_lease: Duration,
    /// Attempts per job.
    pub job_attempts: u32,
    /// Token keys.
    pub keyring: Keyring,
    /// Default token validity.
    pub token_ttl: Duration,
    /// Which edge upload URLs name.
    pub routing: Routing,
    /// Largest upload in bytes.
    pub max_upload_size: u64,
    /// The longest an upload may stay unfinished.
    pub abandon_after: Duration,
    /// How often the sweeper runs.
    pub sweep_interval: Duration,
    /// Templates and job limits.
    pub processing: Processing,
    /// Notification delivery.
    pub notify: NotifySettings,
}

/// Which edge the origin's upload URLs name.
#[derive(Debug, Clone)]
pub enum Routing {
    /// Always this one (base URL without a trailing slash).
    Single(String),
    /// The nearest healthy edge of a fleet.
    Fleet(FleetSettings),
}

/// How long an edge may be silent before it is lost, without a `[fleet]` to say (its
/// `edge_lost_after` defaults to the same).
pub const DEFAULT_EDGE_LOST_AFTER: Duration = Duration::from_secs(120);

impl Routing {
    /// How long an edge may be silent before it is lost, and the unstored chunks it held with
    /// it: `[fleet] edge_lost_after`, or [`DEFAULT_EDGE_LOST_AFTER`] without a fleet (named
    /// edges may send heartbeats to an origin whose upload URLs name one edge).
    #[must_use]
    pub fn edge_lost_after(&self) -> Duration {
        match self {
            Routing::Fleet(fleet) => fleet.edge_lost_after,
            Routing::Single(_) => DEFAULT_EDGE_LOST_AFTER,
        }
    }
}

/// A validated `[fleet]`.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// The edges and the rules for choosing.
    pub fleet: crate::geo::Fleet,
    /// The MaxMind DB file.
    pub geoip_database: PathBuf,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Base URLs of regions fronted by one host, by region.
    pub region_urls: std::collections::BTreeMap<String, String>,
    /// An edge silent this long is lost, and so are the unstored chunks it held.
    pub edge_lost_after: std::time::Duration,
}

impl FleetSettings {
    /// The base URL upload URLs name for `edge`: its region's host when there is one, else
    /// the edge's own.
    #[must_use]
    pub fn url_for<'a>(&'a self, edge: &'a crate::geo::Edge) -> &'a str {
        self.region_urls.get(&edge.region).unwrap_or(&edge.url)
    }
}

impl RawFleet {
    /// Checks the fleet's keys (it has no secrets).
    ///
    /// # Errors
    /// The first key with an unusable value.
    pub fn validate(&self) -> Result<FleetSettings, ConfigError> {
        let mut edges = Vec::with_capacity(self.edges.len());
        for (i, e) in self.edges.iter().enumerate() {
            let key = |k: &str| format!("fleet.edges[{i}].{k}");
            let at = crate::geo::Coordinates::new(e.latitude, e.longitude)
                .map_err(|m| invalid(&key("latitude"), m))?;
            if e.capacity == 0 {
                return Err(invalid(&key("capacity"), "must be at least 1"));
            }
            edges.push(crate::geo::Edge {
                name: e.name.clone(),
                region: e.region.clone(),
                at,
                url: parse_base_url(&e.url, &key("url"))?,
                h3_url: e
                    .h3_url
                    .as_deref()
                    .map(|u| parse_base_url(u, &key("h3_url")))
                    .transpose()?,
                capacity: e.capacity,
            });
        }
        let timeout = parse_duration(&self.heartbeat_timeout, "fleet.heartbeat_timeout")?;
        let fleet = crate::geo::Fleet::new(
            edges,
            &self.fallback,
            i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX),
            parse_size(&self.min_spool_free, "fleet.min_spool_free")?,
        )
        .map_err(|m| invalid("fleet", m))?;
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|n| {
                n.parse::<ipnet::IpNet>()
                    .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        invalid(
                            "fleet.trusted_proxies",
                            format!("{n:?} is not an address or a network like 10.0.0.0/8"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        let mut region_urls = std::collections::BTreeMap::new();
        for (i, r) in self.regions.iter().enumerate() {
            let key = format!("fleet.regions[{i}]");
            if !self.edges.iter().any(|e| e.region == r.name) {
                return Err(invalid(
                    &format!("{key}.name"),
                    format!("no edge of [[fleet.edges]] is in region {:?}", r.name),
                ));
            }
            let url = parse_base_url(&r.url, &format!("{key}.url"))?;
            if region_urls.insert(r.name.clone(), url).is_some() {
                return Err(invalid(&key, format!("region {:?} appears twice", r.name)));
            }
        }
        let edge_lost_after = parse_duration(&self.edge_lost_after, "fleet.edge_lost_after")?;
        if edge_lost_after < timeout {
            return Err(invalid(
                "fleet.edge_lost_after",
                "must be at least heartbeat_timeout (an edge not yet judged unhealthy is not lost)",
            ));
        }
        Ok(FleetSettings {
            fleet,
            geoip_database: self.geoip_database.clone(),
            trusted_proxies,
            region_urls,
            edge_lost_after,
        })
    }
}

impl RawOrigin {
    /// Checks every key and resolves the secret.
    ///
    /// # Errors
    /// The first key with an unusable value.
    pub fn validate(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<OriginSettings, ConfigError> {
        if self.job_attempts == 0 {
            return Err(invalid("job_attempts", "must be at least 1"));
        }
        Ok(OriginSettings {
            listen: parse_addr(&self.listen, "listen")?,
            metrics_listen: optional_addr(self.metrics_listen.as_deref(), "metrics_listen")?,
            database: DatabaseUrl::parse(&self.database, "database")?,
            storage: StorageUrl::parse(&self.storage, "storage")?,
            internal_secret: self.internal_secret.resolve("internal_secret", env)?,
            scratch_dir: self.scratch_dir.clone(),
            workers: self.workers,
            job_lease: parse_duration(&self.job_lease, "job_lease")?,
            job_attempts: self.job_attempts,
            keyring: self.token_keys.keyring("token_keys", env)?,
            token_ttl: parse_duration(&self.token_ttl, "token_ttl")?,
            routing: match (&self.edge_url, &self.fleet) {
                (Some(url), None) => Routing::Single(parse_base_url(url, "edge_url")?),
                (None, Some(fleet)) => Routing::Fleet(fleet.validate()?),
                _ => {
                    return Err(invalid(
                        "edge_url",
                        "give either edge_url (one edge) or a [fleet] of edges, not both",
                    ))
                }
            },
            max_upload_size: parse_size(&self.max_upload_size, "max_upload_size")?,
            abandon_after: parse_duration(&self.abandon_after, "abandon_after")?,
            sweep_interval: parse_duration(&self.sweep_interval, "sweep_interval")?,
            processing: self.processing.validate()?,
            notify: self.notify.validate(false)?,
        })
    }
}
