//! Which edge an upload URL names: the one edge of `edge_url`, or the fleet's nearest healthy
//! edge with room to the client (the xvid `ip` parameter, else the request's client address
//! behind trusted proxies, see [`crate::geo::client`]). The choice is scoped into the token
//! (its region), so the URL works only on that region's edges.
//!
//! Must not depend on the edge or on a particular control-API flavour.

use super::State;
use crate::config::{FleetSettings, Routing};
use crate::db;
use crate::geo::{self, Choice, Health, Location, Locator};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// How often the geoip database file is checked for a new version.
const RELOAD_CHECK: Duration = Duration::from_secs(30);

/// How upload URLs are routed, opened at start.
#[derive(Debug)]
pub enum Edges {
    /// Always the one edge.
    Single(String),
    /// The fleet, with its geoip database.
    Fleet {
        /// The validated `[fleet]`.
        settings: FleetSettings,
        /// The geoip database.
        locator: Arc<Locator>,
    },
}

/// Where an upload goes: an edge's base URL and the region its token is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Base URL without a trailing slash.
    pub url: String,
    /// The region of the chosen edge (none for a single edge).
    pub region: Option<String>,
}

impl Edges {
    /// Opens the geoip database of a fleet and keeps it fresh on the current Tokio runtime.
    ///
    /// # Errors
    /// The database cannot be opened.
    pub fn open(routing: &Routing) -> Result<Self, geo::GeoError> {
        Ok(match routing {
            Routing::Single(url) => Self::Single(url.clone()),
            Routing::Fleet(settings) => {
                let locator = Arc::new(Locator::open(&settings.geoip_database)?);
                tokio::spawn(keep_fresh(locator.clone()));
                Self::Fleet {
                    settings: settings.clone(),
                    locator,
                }
            }
        })
    }

    /// The fleet edge called `name`, if its region is `region`.
    ///
    /// # Errors
    /// A message when there is no fleet, no such edge, or it belongs to another region.
    pub fn member(&self, name: &str, region: Option<&str>) -> Result<(), (u16, String)> {
        let Self::Fleet { settings, .. } = self else {
            return Err((
                404,
                "this origin has no [fleet]; remove `name` from the edge's config".into(),
            ));
        };
        let edge = settings.fleet.edge(name).ok_or_else(|| {
            (
                404,
                format!("the origin's [fleet] has no edge named {name}"),
            )
        })?;
        if region != Some(edge.region.as_str()) {
            return Err((
                409,
                format!("edge {name} is in region {} in the origin's [fleet]; set the edge's `region` to it", edge.region),
            ));
        }
        Ok(())
    }

    /// The base URL of the edge that serves processed outputs: the one edge, or the fleet's
    /// fallback.
    #[must_use]
    pub fn home(&self) -> &str {
        match self {
            Self::Single(url) => url,
            Self::Fleet { settings, .. } => &settings.fleet.fallback().url,
        }
    }

    /// The edge for an upload from `client` (if known), now.
    pub async fn target(&self, state: &State, client: Option<IpAddr>) -> Target {
        match self {
            Self::Single(url) => Target {
                url: url.clone(),
                region: None,
            },
            Self::Fleet { settings, locator } => {
                let health = db::edge::health(&state.db).await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "Cannot read edge heartbeats; routing as if none were alive.");
                    HashMap::new()
                });
                let (location, choice) = choose(settings, locator, &health, client, db::now_ms());
                tracing::debug!(
                    client = ?client, country = ?location.country, edge = %choice.edge.name,
                    reason = ?choice.reason, "Routed an upload."
                );
                Target {
                    url: settings.url_for(choice.edge).to_owned(),
                    region: Some(choice.edge.region.clone()),
                }
            }
        }
    }
}

/// Locates `client` and chooses its edge: the routing decision, shared by the control APIs and
/// `uplink geoip lookup`.
#[must_use]
pub fn choose<'a>(
    settings: &'a FleetSettings,
    locator: &Locator,
    health: &HashMap<String, Health>,
    client: Option<IpAddr>,
    now_ms: i64,
) -> (Location, Choice<'a>) {
    let location = client.map_or(Location::UNKNOWN, |ip| locator.locate(ip));
    let choice = settings.fleet.choose(location.coordinates, health, now_ms);
    (location, choice)
}

async fn keep_fresh(locator: Arc<Locator>) {
    let mut every = tokio::time::interval(RELOAD_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let checked = locator.clone();
        match tokio::task::spawn_blocking(move || checked.reload_if_changed()).await {
            Ok(Ok(true)) => {
                tracing::info!(path = %locator.path().display(), "Reloaded the geoip database.")
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "The geoip database changed but cannot be used; keeping the old one.")
            }
            Err(e) => tracing::warn!(error = %e, "The geoip reload check failed."),
        }
    }
}

/// The request's client address: the peer, or whom trusted proxies say they forward for.
/// `None` without a known peer (a request not from a socket).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<State> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Infallible> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            return Ok(Self(None));
        };
        let trusted = match &*state.edges {
            Edges::Fleet { settings, .. } => settings.trusted_proxies.as_slice(),
            Edges::Single(_) => &[],
        };
        let header = |name: &str| {
            let values: Vec<&str> = parts
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| values.join(","))
        };
        Ok(Self(Some(geo::client::address(
            peer.ip(),
            header("forwarded").as_deref(),
            header("x-forwarded-for").as_deref(),
            trusted,
        ))))
    }
}
