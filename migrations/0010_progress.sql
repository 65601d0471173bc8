-- Upload progress (issue 24): how many bytes of an upload still receiving have arrived, as its
-- edge reports them (at most one report per edge every couple of seconds, all uploads at once),
-- and `UploadProgress` notifications for accounts that ask for them, at most one per
-- `notify_progress_ms` per upload.
ALTER TABLE accounts ADD COLUMN notify_progress_ms BIGINT;
ALTER TABLE uploads ADD COLUMN bytes_received BIGINT;
ALTER TABLE uploads ADD COLUMN progress_notified_at BIGINT;
