-- Limits and quota (issue 4): the largest single upload an account may make.
ALTER TABLE accounts ADD COLUMN max_upload_bytes BIGINT;
