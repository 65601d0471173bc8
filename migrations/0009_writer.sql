-- The fleet (issue 18): which edge writes a resumable upload. The edge that created it, then
-- any edge of its region a client continues it on (adoption takes it over at once). Only the
-- writer's part records and completion count: an edge the client left cannot complete the
-- upload behind the new writer's back. NULL for uploads no named edge writes.
ALTER TABLE uploads ADD COLUMN writer TEXT;

-- What a resumable upload's protocol knows besides its length (JSON: tus `Upload-Metadata` as
-- the client sent it, whether it is a partial upload of a concatenation), so an edge that
-- adopts the upload continues it as the one that created it would.
ALTER TABLE uploads ADD COLUMN resumable_state TEXT;
