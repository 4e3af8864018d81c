-- Just-in-time access requests and the grants they become (docs/adr/0011). One row per
-- request; `body_json` is the whole request with its history (approvals, decisions), which the
-- store keeps without reading. The other columns are what the store looks requests up by:
-- who asked, the state, and the next time something is due (`deadline_ms`: when a pending
-- request lapses or an approved grant expires; NULL once nothing is). `version` grows with
-- every change, which is made under the audit head's lock together with its audit event.
-- An idempotency key, per requester, names the body it was first used with (`idempotency_sha256`).
CREATE TABLE access_requests (
    id TEXT NOT NULL PRIMARY KEY,
    requester TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    deadline_ms BIGINT,
    version BIGINT NOT NULL,
    body_json TEXT NOT NULL,
    idempotency_key TEXT,
    idempotency_sha256 TEXT,
    CONSTRAINT access_requests_state_known CHECK (state IN ('pending', 'approved', 'denied', 'cancelled', 'lapsed', 'revoked', 'expired'))
);
CREATE INDEX access_requests_due ON access_requests (deadline_ms);
CREATE INDEX access_requests_by_state ON access_requests (state, id);
CREATE INDEX access_requests_by_requester ON access_requests (requester, id);
CREATE UNIQUE INDEX access_requests_idempotency ON access_requests (requester, idempotency_key);
