//! The edge's readiness (`GET /readyz`, [`crate::health`]): ready for uploads when its origin
//! answers, its storage answers and its spool has room. Must not depend on the origin's
//! internals.

use crate::health;
use crate::ingest::Ingest;
use crate::protocol::Reply;
use crate::store::Store;
use std::path::Path;

/// Free space the spool's file system must have for the edge to take uploads.
pub const MIN_SPOOL_ROOM: u64 = 64 << 20;

/// Why the spool cannot take uploads.
#[derive(Debug, thiserror::Error)]
enum SpoolFull {
    #[error("cannot read the spool's free space")]
    Unreadable(#[source] std::io::Error),
    #[error("{0} bytes free, fewer than {MIN_SPOOL_ROOM}")]
    Full(u64),
}

/// Runs the checks; the reply is [`health::answer`]'s.
pub(super) async fn check(ingest: &Ingest, store: &dyn Store, spool_dir: &Path) -> Reply {
    let spool = async {
        match super::heartbeat::free_space(spool_dir) {
            Ok(free) if free >= MIN_SPOOL_ROOM => Ok(()),
            Ok(free) => Err(SpoolFull::Full(free)),
            Err(e) => Err(SpoolFull::Unreadable(e)),
        }
    };
    let outcomes = [
        health::check("edge", "origin", ingest.origin_ready()).await,
        health::check("edge", "storage", store.ready()).await,
        health::check("edge", "spool", spool).await,
    ];
    let (status, body) = health::answer("edge", &outcomes);
    Reply::json(status, &body)
}
