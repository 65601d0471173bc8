-- Limits and quota (issue 4): the largest single upload an account may make.
ALTER TABLE accounts ADD COLUMN max_upload_bytes BIGINT;
-- The web origins (JSON array) whose pages may upload straight to the edge (CORS).
ALTER TABLE accounts ADD COLUMN cors_origins TEXT;
