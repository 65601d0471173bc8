//! The edge fleet and the choice of an edge: each edge's place and capacity (from the origin's
//! config), its health (from its heartbeats), and the nearest edge that can take an upload.
//!
//! Pure: time is passed in; no I/O, no database, no HTTP.

use std::collections::HashMap;
use std::fmt;

/// A point on the earth, in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coordinates {
    /// Latitude, -90 to 90.
    pub latitude: f64,
    /// Longitude, -180 to 180.
    pub longitude: f64,
}

/// The mean radius of the earth, in km.
const EARTH_RADIUS_KM: f64 = 6371.0;

impl Coordinates {
    /// Checked coordinates.
    ///
    /// # Errors
    /// A latitude or longitude out of range (or not a number).
    pub fn new(latitude: f64, longitude: f64) -> Result<Self, String> {
        if !(-90.0..=90.0).contains(&latitude) {
            return Err(format!("latitude {latitude} is not between -90 and 90"));
        }
        if !(-180.0..=180.0).contains(&longitude) {
            return Err(format!("longitude {longitude} is not between -180 and 180"));
        }
        Ok(Self {
            latitude,
            longitude,
        })
    }

    /// Great-circle distance (haversine), in km.
    #[must_use]
    pub fn distance_km(self, other: Self) -> f64 {
        let (p1, p2) = (self.latitude.to_radians(), other.latitude.to_radians());
        let dp = p2 - p1;
        let dl = (other.longitude - self.longitude).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }
}

impl fmt::Display for Coordinates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.4},{:.4}", self.latitude, self.longitude)
    }
}

/// One edge as the operator configured it.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    /// Unique name; the edge's own config carries the same `name`.
    pub name: String,
    /// Region; upload tokens are scoped to it.
    pub region: String,
    /// Where it is.
    pub at: Coordinates,
    /// Public base URL over HTTP/1.1 and HTTP/2, without a trailing slash.
    pub url: String,
    /// Public base URL over HTTP/3, when it has one.
    pub h3_url: Option<String>,
    /// Uploads it takes at once.
    pub capacity: u64,
}

/// What an edge last said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// When the heartbeat arrived (Unix ms).
    pub seen_ms: i64,
    /// Uploads in progress.
    pub active_uploads: u64,
    /// Free bytes on its spool disk.
    pub spool_free_bytes: u64,
    /// It is shutting down and takes no new uploads.
    pub draining: bool,
}

/// Why an edge is not chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// No heartbeat has arrived from it.
    NeverSeen,
    /// Its last heartbeat is older than the timeout.
    Silent {
        /// How long ago, in ms.
        age_ms: i64,
    },
    /// It is shutting down.
    Draining,
    /// As many uploads as its capacity.
    Full,
    /// Too little free spool space.
    SpoolLow,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NeverSeen => f.write_str("no heartbeat yet"),
            Self::Silent { age_ms } => write!(f, "silent for {} s", age_ms / 1000),
            Self::Draining => f.write_str("draining"),
            Self::Full => f.write_str("full"),
            Self::SpoolLow => f.write_str("spool disk nearly full"),
        }
    }
}

/// Why the chosen edge was chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason {
    /// The nearest available edge to the client, this far away.
    Nearest {
        /// Distance in km.
        km: f64,
    },
    /// The client could not be located: the fallback (or, if it is unavailable, the
    /// available edge nearest to it).
    Unlocated,
    /// No edge is available: the fallback, in the hope it is back when the client arrives.
    NoneAvailable,
}

/// The chosen edge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice<'a> {
    /// The edge.
    pub edge: &'a Edge,
    /// Why.
    pub reason: Reason,
}

/// The configured edges and the rules for choosing among them.
#[derive(Debug, Clone)]
pub struct Fleet {
    edges: Vec<Edge>,
    fallback: usize,
    /// An edge silent for longer is not chosen (ms).
    pub heartbeat_timeout_ms: i64,
    /// An edge with less free spool space is not chosen.
    pub min_spool_free: u64,
}

impl Fleet {
    /// A fleet of `edges` with the one named `fallback` for clients that cannot be located.
    ///
    /// # Errors
    /// No edges, a name or region that is empty or appears twice, or an unknown fallback.
    pub fn new(
        edges: Vec<Edge>,
        fallback: &str,
        heartbeat_timeout_ms: i64,
        min_spool_free: u64,
    ) -> Result<Self, String> {
        if edges.is_empty() {
            return Err("at least one edge is needed".into());
        }
        for (i, edge) in edges.iter().enumerate() {
            if !crate::token::valid_id(&edge.name) || !crate::token::valid_id(&edge.region) {
                return Err(format!(
                    "edge {:?}: name and region must be 1-64 letters, digits, '-' or '_'",
                    edge.name
                ));
            }
            if edges[..i].iter().any(|e| e.name == edge.name) {
                return Err(format!("edge {} appears twice", edge.name));
            }
        }
        let fallback = edges
            .iter()
            .position(|e| e.name == fallback)
            .ok_or_else(|| format!("the fallback {fallback} is not one of the edges"))?;
        Ok(Self {
            edges,
            fallback,
            heartbeat_timeout_ms,
            min_spool_free,
        })
    }

    /// The edges, in configured order.
    #[must_use]
    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }

    /// The edge for clients that cannot be located.
    #[must_use]
    pub fn fallback(&self) -> &Edge {
        &self.edges[self.fallback]
    }

    /// The edge called `name`.
    #[must_use]
    pub fn edge(&self, name: &str) -> Option<&Edge> {
        self.edges.iter().find(|e| e.name == name)
    }

    /// Whether `edge` can take a new upload at `now_ms`, given its last heartbeat.
    ///
    /// # Errors
    /// Why not.
    pub fn availability(
        &self,
        edge: &Edge,
        health: Option<&Health>,
        now_ms: i64,
    ) -> Result<(), Unavailable> {
        let h = health.ok_or(Unavailable::NeverSeen)?;
        let age_ms = now_ms.saturating_sub(h.seen_ms);
        if age_ms > self.heartbeat_timeout_ms {
            Err(Unavailable::Silent { age_ms })
        } else if h.draining {
            Err(Unavailable::Draining)
        } else if h.active_uploads >= edge.capacity {
            Err(Unavailable::Full)
        } else if h.spool_free_bytes < self.min_spool_free {
            Err(Unavailable::SpoolLow)
        } else {
            Ok(())
        }
    }

    /// The edge an upload from a client at `client` (unknown: `None`) should go to.
    #[must_use]
    pub fn choose(
        &self,
        client: Option<Coordinates>,
        health: &HashMap<String, Health>,
        now_ms: i64,
    ) -> Choice<'_> {
        let nearest_to = |at: Coordinates| {
            self.edges
                .iter()
                .filter(|e| self.availability(e, health.get(&e.name), now_ms).is_ok())
                .map(|e| (e, e.at.distance_km(at)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
        };
        let (start, located) = match client {
            Some(at) => (at, true),
            None => (self.fallback().at, false),
        };
        match (nearest_to(start), located) {
            (Some((edge, km)), true) => Choice {
                edge,
                reason: Reason::Nearest { km },
            },
            (Some((edge, _)), false) => Choice {
                edge,
                reason: Reason::Unlocated,
            },
            (None, _) => Choice {
                edge: self.fallback(),
                reason: Reason::NoneAvailable,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn edge(name: &str, lat: f64, lon: f64) -> Edge {
        Edge {
            name: name.into(),
            region: format!("r-{name}"),
            at: Coordinates::new(lat, lon).unwrap(),
            url: format!("http://{name}.example"),
            h3_url: None,
            capacity: 10,
        }
    }

    fn fleet() -> Fleet {
        Fleet::new(
            vec![
                edge("fra", 50.11, 8.68),
                edge("iad", 38.95, -77.45),
                edge("nrt", 35.77, 140.39),
            ],
            "fra",
            30_000,
            1 << 30,
        )
        .unwrap()
    }

    fn healthy(now: i64) -> Health {
        Health {
            seen_ms: now,
            active_uploads: 0,
            spool_free_bytes: 10 << 30,
            draining: false,
        }
    }

    fn all_healthy(now: i64) -> HashMap<String, Health> {
        ["fra", "iad", "nrt"]
            .iter()
            .map(|n| ((*n).to_owned(), healthy(now)))
            .collect()
    }

    #[test]
    fn distances_match_known_great_circles() {
        let berlin = Coordinates::new(52.52, 13.405).unwrap();
        let tokyo = Coordinates::new(35.6762, 139.6503).unwrap();
        let km = berlin.distance_km(tokyo);
        assert!((8900.0..8960.0).contains(&km), "{km}");
        // Across the antimeridian: Fiji to Samoa is about 1,150 km, not 40,000.
        let suva = Coordinates::new(-18.14, 178.44).unwrap();
        let apia = Coordinates::new(-13.83, -171.76).unwrap();
        assert!((1100.0..1200.0).contains(&suva.distance_km(apia)));
        assert!(Coordinates::new(91.0, 0.0).is_err());
        assert!(Coordinates::new(0.0, f64::NAN).is_err());
    }

    #[test]
    fn the_nearest_available_edge_is_chosen() {
        let f = fleet();
        let now = 1_000_000;
        let mut health = all_healthy(now);
        let osaka = Coordinates::new(34.69, 135.50).unwrap();
        let chosen = f.choose(Some(osaka), &health, now);
        assert_eq!(chosen.edge.name, "nrt");
        // Tokyo silent past the timeout: the next nearest (Frankfurt is nearer than Virginia).
        health.get_mut("nrt").unwrap().seen_ms = now - 30_001;
        assert_eq!(f.choose(Some(osaka), &health, now).edge.name, "fra");
        health.insert("nrt".into(), healthy(now));
        health.get_mut("nrt").unwrap().draining = true;
        assert_eq!(f.choose(Some(osaka), &health, now).edge.name, "fra");
        health.insert("nrt".into(), healthy(now));
        health.get_mut("nrt").unwrap().active_uploads = 10;
        assert_eq!(
            f.availability(&f.edges()[2], health.get("nrt"), now),
            Err(Unavailable::Full)
        );
        health.get_mut("nrt").unwrap().active_uploads = 0;
        health.get_mut("nrt").unwrap().spool_free_bytes = 1;
        health.get_mut("fra").unwrap().draining = true;
        assert_eq!(f.choose(Some(osaka), &health, now).edge.name, "iad");
    }

    #[test]
    fn unlocated_clients_go_to_the_fallback_or_near_it() {
        let f = fleet();
        let now = 5_000_000;
        let mut health = all_healthy(now);
        let chosen = f.choose(None, &health, now);
        assert_eq!(
            (chosen.edge.name.as_str(), chosen.reason),
            ("fra", Reason::Unlocated)
        );
        health.remove("fra");
        assert_eq!(f.choose(None, &health, now).edge.name, "iad");
        let chosen = f.choose(None, &HashMap::new(), now);
        assert_eq!(
            (chosen.edge.name.as_str(), chosen.reason),
            ("fra", Reason::NoneAvailable)
        );
    }

    #[test]
    fn fleets_are_checked() {
        assert!(Fleet::new(vec![], "x", 1, 1).is_err());
        assert!(Fleet::new(vec![edge("a", 0.0, 0.0)], "b", 1, 1).is_err());
        assert!(Fleet::new(vec![edge("a", 0.0, 0.0), edge("a", 1.0, 1.0)], "a", 1, 1).is_err());
        assert!(Fleet::new(vec![edge("a b", 0.0, 0.0)], "a b", 1, 1).is_err());
    }

    proptest! {
        /// Whatever the health, the choice is available if any edge is, and no available edge
        /// is nearer than it.
        #[test]
        fn choice_is_available_and_nearest(
            lat in -90.0f64..=90.0,
            lon in -180.0f64..=180.0,
            states in proptest::collection::vec((any::<bool>(), 0u64..12, any::<bool>()), 3),
        ) {
            let f = fleet();
            let now = 10_000_000;
            let health: HashMap<String, Health> = f.edges().iter().zip(&states)
                .filter(|(_, (seen, _, _))| *seen)
                .map(|(e, (_, active, draining))| (e.name.clone(), Health {
                    active_uploads: *active, draining: *draining, ..healthy(now)
                }))
                .collect();
            let at = Coordinates::new(lat, lon).unwrap();
            let chosen = f.choose(Some(at), &health, now);
            let available: Vec<&Edge> = f.edges().iter()
                .filter(|e| f.availability(e, health.get(&e.name), now).is_ok())
                .collect();
            if available.is_empty() {
                prop_assert_eq!(chosen.reason, Reason::NoneAvailable);
                prop_assert_eq!(&chosen.edge.name, "fra");
            } else {
                prop_assert!(available.contains(&chosen.edge));
                let d = chosen.edge.at.distance_km(at);
                prop_assert!(available.iter().all(|e| e.at.distance_km(at) >= d));
            }
        }
    }
}
