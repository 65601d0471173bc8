//! Geo routing: which edge an upload URL should name. An address (the xvid `ip` parameter, or
//! the client address behind trusted proxies) is located with a MaxMind DB and the table of
//! country reference coordinates in `geoip/`, and the nearest healthy edge with room is chosen.
//!
//! Layout: `locate` (the database and the coordinates table), `client` (pure: the client
//! address from the forwarding headers), `fleet` (pure: edges, their health, the choice).
//! Must not depend on HTTP servers, the state database or the edge.

pub mod client;
pub mod fleet;
pub mod locate;

pub use fleet::{Choice, Coordinates, Edge, Fleet, Health, Reason, Unavailable};
pub use locate::{is_public, GeoError, Location, Locator};
