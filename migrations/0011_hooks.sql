-- Blocking hooks (issue 24): an account's hook settings (JSON, `crate::hook::Hooks`: the URL and,
-- per hook, its time limit and failure policy), the application's metadata a `pre-create` answer
-- set for an upload, and its `pre-finish` answer, returned to the client and on the record.
ALTER TABLE accounts ADD COLUMN hooks TEXT;
ALTER TABLE uploads ADD COLUMN app_metadata TEXT;
ALTER TABLE uploads ADD COLUMN hook_response TEXT;
