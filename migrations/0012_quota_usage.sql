-- What an account's quota counts, kept as it changes instead of summed on every request: the
-- bytes of its uploads. An upload's size is set once, when it is stored (`mark_stored`, which
-- adds it here in the same transaction); uploads deleted unfinished have none.
ALTER TABLE accounts ADD COLUMN used_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE accounts SET used_bytes = (SELECT COALESCE(SUM(size), 0) FROM uploads WHERE uploads.account_id = accounts.id);
