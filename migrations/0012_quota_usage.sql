-- What an account's quota counts (the sum of its uploads' sizes) is read from this index alone,
-- without visiting each upload's row. Only accounts with a quota are summed.
CREATE INDEX uploads_size_by_account ON uploads (account_id, size);
