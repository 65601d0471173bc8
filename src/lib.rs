//! Uplink: an edge upload ingest node for video.
//!
//! # Layout
//! Pure core (no sockets, no clock, no database):
//! - [`upload`]: upload ids, the status lifecycle (the seed's codes), the part plan and the
//!   resumable state machine (where "complete" is decided).
//! - [`account`]: tenant ids and credential generation.
//! - [`config`]: raw TOML → `validate()` → typed settings per role.
//! - [`control`]: the messages of the internal edge ↔ origin API.
//! - [`error`]: the client-visible error tables, one per API flavour.
//! - [`request_id`]: the id that follows a request through the logs of every role.
//! - [`token`]: edge upload tokens (mint, verify, keyring); time passed in.
//! - [`s3_policy`]: S3 browser-POST policies and their signatures.
//! - [`cors`]: which web origins may upload, and the CORS headers.
//! - [`notify`]: notification messages, their two signatures and the retry schedule.
//! - [`hook`]: blocking hooks (`pre-create`, `pre-finish`): settings, messages, answers.
//! - [`template`]: transcode templates and the rendition ladder they give a source.
//!
//! The one ingest core and its adapters:
//! - [`ingest`]: `create → append → complete | cancel`, used by every protocol, with the
//!   resumable (tus, IETF) and chunked cores; it asks the origin through one narrow trait
//!   (`ingest::control_plane`) with typed outcomes.
//! - [`protocol`]: one thin adapter per API flavour (headers + body stream → reply).
//!
//! Roles and their parts:
//! - [`clock`]: the wall clock. Every read of it goes through here, by the roles' parts (the
//!   edge's proxy and sweeper; the origin's handlers, workers, sweeper and notifier; `db`;
//!   the operator commands), which pass the time to the pure core above.
//! - [`edge`]: the Pingora server (terminates uploads, proxies the control API).
//! - [`origin`]: control API, internal API, job workers, FFmpeg media work, the notifier.
//! - [`store`]: object storage trait and its implementations.
//! - [`metrics`]: Prometheus metrics (every name in one place) and their scrape address.
//! - [`health`]: readiness checks with a time limit, and their answer.
//! - [`outbound`]: requests to customers' URLs (notifications, hooks, upload sources), with the
//!   guard against private addresses.
//! - [`geo`]: geoip lookup (the shipped `geoip/` database), client address, edge choice.
//! - [`db`]: sqlx state database (SQLite or PostgreSQL), one file per table.
//! - [`operator`]: operator commands (`uplink account create`, `uplink fleet`, `uplink geoip`).
//! - [`role`]: wires the roles together (`uplink dev`, `uplink edge`, `uplink origin`).
//!
//! - [`bench`]: `uplink bench`, the load engine the tool and the benchmarks share: a client of
//!   the public APIs, depending on nothing else here but [`error::chain`].
//!
//! `fuzz`: the fuzz targets over every parser of client bytes (run by `fuzz/`).

pub mod account;
pub mod bench;
pub mod clock;
pub mod config;
pub mod control;
pub mod cors;
pub mod db;
pub mod edge;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod geo;
pub mod health;
pub mod hook;
pub mod ingest;
pub mod metrics;
pub mod notify;
pub mod operator;
pub mod origin;
pub mod outbound;
pub mod protocol;
pub mod request_id;
pub mod role;
pub mod s3_policy;
pub mod store;
pub mod template;
pub mod token;
pub mod upload;
