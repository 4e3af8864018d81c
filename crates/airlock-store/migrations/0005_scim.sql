-- Users and Groups pushed by an identity provider to the SCIM 2.0 endpoint. The resource is
-- kept whole as SCIM JSON text (with its server-assigned id and meta); unique_key is the
-- lowercased userName of a User or the exact displayName of a Group, so that a duplicate is
-- refused by the database itself. version counts replaces, for ETags and If-Match.
CREATE TABLE scim_resources (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    unique_key TEXT,
    external_id TEXT,
    version BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    modified_ms BIGINT NOT NULL,
    resource_json TEXT NOT NULL,
    PRIMARY KEY (resource_type, id),
    CONSTRAINT scim_resources_type_known CHECK (resource_type IN ('User', 'Group'))
);
CREATE UNIQUE INDEX scim_resources_unique_key ON scim_resources (resource_type, unique_key);

-- Bearer tokens of SCIM clients (one per identity provider). Only the SHA-256 of a token is
-- kept; the token itself is shown once, when it is created or rotated.
CREATE TABLE scim_tokens (
    id TEXT NOT NULL PRIMARY KEY,
    client TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL,
    last_used_ms BIGINT,
    revoked_ms BIGINT
);
