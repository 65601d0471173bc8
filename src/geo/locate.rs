//! Where an address is: a MaxMind DB (the shipped country database, or an operator's city
//! database, whose coordinates are used when a record has them) and the table of country
//! reference coordinates (`geoip/country-coordinates.csv`, compiled in).
//!
//! The database file is memory-mapped and mapped again when it changes on disk (new inode,
//! size or modification time), without a restart. Must not depend on the fleet, HTTP or the
//! database of uploads.

use super::fleet::Coordinates;
use maxminddb::Reader;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// The country reference coordinates shipped with Uplink (see `geoip/PROVENANCE`).
const COUNTRY_TABLE: &str = include_str!("../../geoip/country-coordinates.csv");

/// Why the database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file cannot be read.
    #[error("cannot read the geoip database {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a MaxMind DB.
    #[error("{path} is not a MaxMind DB (.mmdb) file")]
    Format {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: maxminddb::MaxMindDbError,
    },
}

/// Where an address is, as far as the database knows.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
    /// The record's own coordinates (city databases), else the country's reference point.
    pub coordinates: Option<Coordinates>,
    /// Whether the coordinates are the record's own rather than the country's.
    pub precise: bool,
}

impl Location {
    /// Nowhere known: no country, no coordinates.
    pub const UNKNOWN: Self = Self {
        country: None,
        coordinates: None,
        precise: false,
    };
}

/// The fields Uplink reads from a record, in either layout: ip-location-db's flat one
/// (`country_code`, `latitude`, `longitude`) or MaxMind's nested one (`country.iso_code`,
/// `location.latitude`, `location.longitude`).
#[derive(Debug, Default, Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country_code: Option<&'a str>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    #[serde(borrow)]
    country: Option<NestedCountry<'a>>,
    location: Option<NestedLocation>,
}

#[derive(Debug, Default, Deserialize)]
struct NestedCountry<'a> {
    iso_code: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
struct NestedLocation {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

/// What identifies one version of the file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

struct Mapped {
    reader: Reader<maxminddb::Mmap>,
    stamp: Stamp,
}

/// The geoip database and the country table.
pub struct Locator {
    path: PathBuf,
    mapped: RwLock<Arc<Mapped>>,
    countries: HashMap<String, Coordinates>,
}

impl std::fmt::Debug for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locator").field("path", &self.path).finish()
    }
}

fn map(path: &Path) -> Result<Mapped, GeoError> {
    let io = |source| GeoError::Io {
        path: path.to_owned(),
        source,
    };
    let stamp = Stamp::of(path).map_err(io)?;
    // SAFETY: a mapped file must not change while it is mapped. Database files are replaced by
    // renaming a new file over the old one (geoip/refresh.sh does; the README tells operators
    // to), which leaves the mapped inode untouched until the last reader of it is dropped.
    #[allow(unsafe_code)]
    let reader = unsafe { Reader::open_mmap(path) }.map_err(|source| match source {
        maxminddb::MaxMindDbError::Io(e) => io(e),
        source => GeoError::Format {
            path: path.to_owned(),
            source,
        },
    })?;
    Ok(Mapped { reader, stamp })
}

/// Parses `country_code,latitude,longitude` lines (a header line first).
fn parse_countries(table: &str) -> HashMap<String, Coordinates> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split(',');
            let code = cols.next()?.trim();
            let lat = cols.next()?.trim().parse().ok()?;
            let lon = cols.next()?.trim().parse().ok()?;
            Some((code.to_owned(), Coordinates::new(lat, lon).ok()?))
        })
        .collect()
}

/// Addresses no public database places: private, loopback, link-local, shared (CGNAT),
/// documentation, multicast and unspecified ones.
#[must_use]
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            let shared = a == 100 && (64..128).contains(&b);
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || shared)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                let unique_local = first & 0xfe00 == 0xfc00;
                let link_local = first & 0xffc0 == 0xfe80;
                let documentation = first == 0x2001 && v6.segments()[1] == 0x0db8;
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || unique_local
                    || link_local
                    || documentation)
            }
        },
    }
}

impl Locator {
    /// Maps the database at `path`.
    ///
    /// # Errors
    /// The file cannot be read or is not a MaxMind DB.
    pub fn open(path: &Path) -> Result<Self, GeoError> {
        Ok(Self {
            path: path.to_owned(),
            mapped: RwLock::new(Arc::new(map(path)?)),
            countries: parse_countries(COUNTRY_TABLE),
        })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn current(&self) -> Arc<Mapped> {
        self.mapped
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Maps the file again if it changed on disk since it was mapped. Returns whether it did.
    ///
    /// # Errors
    /// The changed file cannot be read or is not a MaxMind DB; the old one stays in use.
    pub fn reload_if_changed(&self) -> Result<bool, GeoError> {
        let stamp = Stamp::of(&self.path).map_err(|source| GeoError::Io {
            path: self.path.clone(),
            source,
        })?;
        if stamp == self.current().stamp {
            return Ok(false);
        }
        let fresh = Arc::new(map(&self.path)?);
        *self
            .mapped
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(true)
    }

    /// When the database was built (from its metadata), Unix seconds.
    #[must_use]
    pub fn build_epoch(&self) -> u64 {
        self.current().reader.metadata.build_epoch
    }

    /// Where `ip` is. Addresses that are not public are unknown without a lookup.
    #[must_use]
    pub fn locate(&self, ip: IpAddr) -> Location {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if !is_public(ip) {
            return Location::UNKNOWN;
        }
        let mapped = self.current();
        let record: Record<'_> = match mapped.reader.lookup(ip).and_then(|r| r.decode()) {
            Ok(Some(record)) => record,
            Ok(None) => return Location::UNKNOWN,
            Err(e) => {
                tracing::warn!(%ip, error = %e, "A geoip record could not be read.");
                return Location::UNKNOWN;
            }
        };
        let country = record
            .country_code
            .or_else(|| record.country.as_ref().and_then(|c| c.iso_code))
            .map(str::to_ascii_uppercase);
        let own = match (record.latitude, record.longitude, record.location) {
            (Some(lat), Some(lon), _)
            | (
                _,
                _,
                Some(NestedLocation {
                    latitude: Some(lat),
                    longitude: Some(lon),
                }),
            ) => Coordinates::new(lat, lon).ok(),
            _ => None,
        };
        let coordinates = own.or_else(|| {
            country
                .as_deref()
                .and_then(|c| self.countries.get(c).copied())
        });
        Location {
            country,
            coordinates,
            precise: own.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Locator {
        Locator::open(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/geoip/geo-whois-asn-country.mmdb"
        )))
        .unwrap()
    }

    #[test]
    fn the_country_table_covers_the_world() {
        let countries = parse_countries(COUNTRY_TABLE);
        assert!(countries.len() > 240, "{}", countries.len());
        let de = countries["DE"];
        assert!((47.0..55.0).contains(&de.latitude) && (5.0..15.0).contains(&de.longitude));
        for code in ["US", "JP", "BR", "AU", "IN", "ZA", "RU", "GB", "NZ"] {
            assert!(countries.contains_key(code), "{code}");
        }
    }

    #[test]
    fn shipped_database_places_well_known_networks() {
        let geo = shipped();
        // Deutsche Telekom, NTT (Japan), and Comcast (US) address space.
        for (ip, country) in [
            ("80.128.0.1", "DE"),
            ("2003::1", "DE"),
            ("153.128.0.1", "JP"),
            ("73.0.0.1", "US"),
        ] {
            let at = geo.locate(ip.parse().unwrap());
            assert_eq!(at.country.as_deref(), Some(country), "{ip}");
            assert!(at.coordinates.is_some() && !at.precise, "{ip}");
        }
        // IPv4-mapped IPv6 is the IPv4 address.
        assert_eq!(
            geo.locate("::ffff:80.128.0.1".parse().unwrap())
                .country
                .as_deref(),
            Some("DE")
        );
    }

    #[test]
    fn private_and_special_addresses_are_unknown() {
        let geo = shipped();
        for ip in [
            "10.1.2.3",
            "192.168.1.1",
            "127.0.0.1",
            "100.64.0.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "192.0.2.1",
            "2001:db8::1",
        ] {
            assert_eq!(geo.locate(ip.parse().unwrap()), Location::UNKNOWN, "{ip}");
        }
    }

    #[test]
    fn a_replaced_database_is_mapped_again_and_a_broken_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo.mmdb");
        let shipped = shipped();
        std::fs::copy(shipped.path(), &path).unwrap();
        let geo = Locator::open(&path).unwrap();
        assert!(!geo.reload_if_changed().unwrap());
        // Replaced by rename, as refresh.sh does: a new inode.
        let next = dir.path().join("next.mmdb");
        std::fs::copy(shipped.path(), &next).unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert!(geo.reload_if_changed().unwrap());
        assert_eq!(
            geo.locate("80.128.0.1".parse().unwrap()).country.as_deref(),
            Some("DE")
        );
        // A broken replacement is refused and the mapped one stays in use.
        std::fs::write(&next, b"not a database").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert!(matches!(
            geo.reload_if_changed(),
            Err(GeoError::Format { .. })
        ));
        assert_eq!(
            geo.locate("80.128.0.1".parse().unwrap()).country.as_deref(),
            Some("DE")
        );
        assert!(matches!(
            Locator::open(&dir.path().join("missing.mmdb")),
            Err(GeoError::Io { .. })
        ));
    }
}
