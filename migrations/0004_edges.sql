-- Geo routing (issue 8): the last heartbeat of each edge of the fleet, shared by every origin.
CREATE TABLE edge_heartbeats (
    name             TEXT PRIMARY KEY,
    region           TEXT,
    seen_at          BIGINT NOT NULL,
    active_uploads   BIGINT NOT NULL,
    spool_free_bytes BIGINT NOT NULL,
    draining         BIGINT NOT NULL
);
