-- Vendor flows (issue 16).
-- The length a control API was told before any byte (Cloud VoD `fileSize`): the edge takes it as
-- the upload's length, so the last byte completes the upload.
ALTER TABLE uploads ADD COLUMN declared_size BIGINT;
-- Why an upload failed, as a stable code (`not_a_video`, …) beside `error`, the customer's message.
ALTER TABLE uploads ADD COLUMN error_code TEXT;
