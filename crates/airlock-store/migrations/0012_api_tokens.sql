-- Governance API tokens (docs/adr/0012): for automation that calls /api/v1. Only the SHA-256
-- of a token is kept; the token is shown once, when it is issued. A token may act as a
-- directory person (`person`, their id) and is limited to its scopes (`scopes_json`, a JSON
-- list of scope names the caller defines); it may expire (`expires_ms`) and be revoked
-- (`revoked_ms`). `last_used_ms` is written at most once a minute.
CREATE TABLE api_tokens (
    name TEXT NOT NULL PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    person TEXT,
    scopes_json TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires_ms BIGINT,
    revoked_ms BIGINT,
    last_used_ms BIGINT
);
