-- Portable SQL: the same statements run on SQLite and PostgreSQL.
-- Times are milliseconds since the Unix epoch (BIGINT); ids are text.

CREATE TABLE accounts (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    api_key_sha256 TEXT NOT NULL UNIQUE,
    access_key     TEXT NOT NULL UNIQUE,
    secret         TEXT NOT NULL,
    notify_url     TEXT,
    quota_bytes    BIGINT,
    created_at     BIGINT NOT NULL
);

CREATE TABLE pipelines (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts (id),
    name         TEXT NOT NULL,
    storage_root TEXT NOT NULL,
    template     TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE uploads (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    pipeline_id TEXT NOT NULL REFERENCES pipelines (id),
    flavour     TEXT NOT NULL,
    filename    TEXT NOT NULL,
    folder      TEXT,
    object_key  TEXT NOT NULL,
    status      BIGINT NOT NULL,
    error       TEXT,
    size        BIGINT,
    sha256      TEXT,
    duration_ms BIGINT,
    output_key  TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX uploads_by_account ON uploads (account_id, created_at);

-- Every status change, in order: the notifier's outbox reads from here.
CREATE TABLE upload_events (
    upload_id TEXT NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    status    BIGINT NOT NULL,
    at        BIGINT NOT NULL
);
CREATE INDEX upload_events_by_upload ON upload_events (upload_id, at);

CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,
    upload_id   TEXT NOT NULL UNIQUE REFERENCES uploads (id) ON DELETE CASCADE,
    state       TEXT NOT NULL,
    attempts    BIGINT NOT NULL,
    lease_until BIGINT,
    worker      TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, created_at);
