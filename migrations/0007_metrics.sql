-- What the origin's metrics read at every scrape (issue 20): uploads by status, and the
-- notifications still waiting, without scanning the tables.
CREATE INDEX uploads_by_status ON uploads (status);
CREATE INDEX notifications_waiting ON notifications (created_at) WHERE delivered_at IS NULL AND gave_up_at IS NULL;
