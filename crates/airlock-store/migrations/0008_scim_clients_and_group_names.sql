-- SCIM clients: a token may expire (expires_ms; lifetime_ms is what rotation renews it for),
-- a rotated token's predecessor keeps working until previous_expires_ms (the grace the
-- identity provider gets to switch), and groups_json optionally lists the patterns of the
-- Group displayNames the client may create or change (absent: any group).
ALTER TABLE scim_tokens ADD COLUMN expires_ms BIGINT;
ALTER TABLE scim_tokens ADD COLUMN lifetime_ms BIGINT;
ALTER TABLE scim_tokens ADD COLUMN previous_sha256 TEXT;
ALTER TABLE scim_tokens ADD COLUMN previous_expires_ms BIGINT;
ALTER TABLE scim_tokens ADD COLUMN groups_json TEXT;
CREATE UNIQUE INDEX scim_tokens_previous_sha256 ON scim_tokens (previous_sha256);

-- A Group's displayName is unique case-insensitively (RFC 7643: caseExact false), as a
-- User's userName already is. The key must be folded exactly as airlock folds it (full
-- Unicode lowercase), which neither database's lower() promises, so this migration only
-- clears the Group keys and the store sets them again when it is opened
-- (Store::rekey_scim_groups), oldest group first. A group whose folded name an older group
-- already holds keeps no key: it stays stored and listed, is reported at every open, and a
-- write to it must rename it to a free name.
UPDATE scim_resources SET unique_key = NULL WHERE resource_type = 'Group';
