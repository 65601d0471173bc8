-- The fleet (issue 18): what another edge needs to continue an upload whose edge was lost.
--
-- Which edge holds an upload's numbered chunks that are not yet in storage. The edge names
-- itself on the first chunk it takes; the origin fails the upload (error_code edge_lost) once
-- that edge has sent no heartbeat for [fleet] edge_lost_after.
ALTER TABLE uploads ADD COLUMN holder TEXT;
CREATE INDEX uploads_held ON uploads (holder) WHERE holder IS NOT NULL AND status = 0;

-- The parts of a resumable upload that reached storage (one row per part, written as each is
-- acknowledged by the store): an edge that adopts the upload continues its multipart upload
-- from the end of the contiguous parts instead of from byte 0. Dropped when the upload is
-- stored; a new multipart upload replaces an old one's rows.
CREATE TABLE upload_parts (
    upload_id    TEXT NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    multipart_id TEXT NOT NULL,
    declared     BIGINT,
    number       BIGINT NOT NULL,
    start_byte   BIGINT NOT NULL,
    len          BIGINT NOT NULL,
    etag         TEXT NOT NULL,
    crc32c       BIGINT NOT NULL,
    PRIMARY KEY (upload_id, number)
);
