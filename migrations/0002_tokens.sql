-- Upload credentials (issue 3): per-account token validity, and what a session or token
-- says about the upload it created.
ALTER TABLE accounts ADD COLUMN token_ttl_secs BIGINT;
ALTER TABLE uploads ADD COLUMN token_id TEXT;
ALTER TABLE uploads ADD COLUMN expires_at BIGINT;
ALTER TABLE uploads ADD COLUMN metadata TEXT;
-- A client's own key for the upload (Cloud VoD `fileId`, the breakpoint-resume key).
ALTER TABLE uploads ADD COLUMN client_ref TEXT;
CREATE INDEX uploads_by_token ON uploads (token_id);
CREATE INDEX uploads_by_client_ref ON uploads (account_id, client_ref);

-- Upload tokens handed to tus / IETF clients: one may create several uploads.
CREATE TABLE upload_tokens (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    filename    TEXT,
    max_uploads BIGINT,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
