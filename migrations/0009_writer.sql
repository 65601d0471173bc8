-- The fleet (issue 18): which edge writes a resumable upload. The edge that created it, then
-- any edge of its region a client continues it on (adoption takes it over at once). Only the
-- writer's part records and completion count: an edge the client left cannot complete the
-- upload behind the new writer's back. NULL for uploads no named edge writes.
ALTER TABLE uploads ADD COLUMN writer TEXT;

-- tus `Upload-Metadata` as the client sent it at creation, so an edge that adopts the upload
-- answers HEAD with it.
ALTER TABLE uploads ADD COLUMN upload_metadata TEXT;
