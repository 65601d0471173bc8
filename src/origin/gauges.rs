//! The origin's gauges, read from the state database at each metrics scrape
//! ([`crate::metrics::Scrape`]): uploads in progress by status, jobs waiting and the oldest
//! one's age, the notification outbox's depth and oldest age, each edge's heartbeat age and the
//! database pool's use. Must not depend on HTTP.

use crate::db::{self, now_ms, Db};
use std::time::Duration;

/// Reads the origin's gauges from `db`.
pub struct Gauges(pub Db);

/// The time since `then` (ms), none for a time in the future.
fn age(then: i64, now: i64) -> Duration {
    Duration::from_millis(u64::try_from(now - then).unwrap_or(0))
}

#[async_trait::async_trait]
impl crate::metrics::Scrape for Gauges {
    async fn scrape(&self) {
        let db = &self.0;
        let now = now_ms();
        let (busy, idle, max) = db.pool_use();
        crate::metrics::db_pool(busy, idle, max);
        match db::upload::in_progress(db).await {
            Ok(counts) => crate::metrics::uploads_by_status(
                &counts
                    .iter()
                    .map(|(s, n)| (s.text(), *n))
                    .collect::<Vec<_>>(),
            ),
            Err(e) => tracing::warn!(error = %e, "Metrics: cannot count uploads."),
        }
        match db::job::waiting(db).await {
            Ok((queued, running, oldest)) => crate::metrics::jobs(
                &[("queued", queued), ("running", running)],
                oldest.map_or(Duration::ZERO, |t| age(t, now)),
            ),
            Err(e) => tracing::warn!(error = %e, "Metrics: cannot count jobs."),
        }
        match db::outbox::waiting(db).await {
            Ok((depth, oldest)) => {
                crate::metrics::outbox(depth, oldest.map_or(Duration::ZERO, |t| age(t, now)));
            }
            Err(e) => tracing::warn!(error = %e, "Metrics: cannot read the outbox."),
        }
        match db::edge::seen(db).await {
            Ok(edges) => {
                for (name, region, seen) in edges {
                    crate::metrics::heartbeat_age(&name, region.as_deref(), age(seen, now));
                }
            }
            Err(e) => tracing::warn!(error = %e, "Metrics: cannot read the edges' heartbeats."),
        }
    }
}
