-- Transcoding and notifications (issue 6).
-- What processing produced (JSON array: key, kind, width, height, bitrate, size, duration_ms).
ALTER TABLE uploads ADD COLUMN outputs TEXT;
-- How far a worker has got with the current job, 0 to 100.
ALTER TABLE jobs ADD COLUMN progress BIGINT;
-- How the account's notifications are sent: 'form' (the seed's message=…&signature=…) or
-- 'json' (the message object itself); both carry Standard Webhooks headers.
ALTER TABLE accounts ADD COLUMN notify_format TEXT;
-- Whether the account also wants an event for each status change (processing, completed, failed).
ALTER TABLE accounts ADD COLUMN notify_status_changes BIGINT;
-- The durable outbox: one row per notification, written in the transaction of the status change
-- that caused it, deleted never (delivered_at / gave_up_at say how it ended).
CREATE TABLE notifications (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts (id),
    upload_id    TEXT NOT NULL,
    url          TEXT NOT NULL,
    format       TEXT NOT NULL,
    message      TEXT NOT NULL,
    attempts     BIGINT NOT NULL,
    next_at      BIGINT NOT NULL,
    delivered_at BIGINT,
    gave_up_at   BIGINT,
    last_error   TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX notifications_due ON notifications (next_at);
CREATE INDEX notifications_by_upload ON notifications (upload_id, created_at);
-- Pipelines created before templates existed name the default one.
UPDATE pipelines SET template = 'default' WHERE template = 'remux-mp4';
