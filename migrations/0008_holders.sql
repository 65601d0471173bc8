-- The fleet (issue 18): which edge holds an upload's numbered chunks that are not yet in
-- storage. The edge names itself on the first chunk it takes; the origin fails the upload
-- (error_code edge_lost) once that edge has sent no heartbeat for [fleet] edge_lost_after.
ALTER TABLE uploads ADD COLUMN holder TEXT;
CREATE INDEX uploads_held ON uploads (holder) WHERE holder IS NOT NULL AND status = 0;
