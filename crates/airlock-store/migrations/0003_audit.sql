-- The audit log: an append-only, hash-chained sequence of events (see the airlock-audit crate).
-- event_json is the whole event as airlock exports it; the other columns copy parts of it for
-- ordering and lookups, and verification checks that they still agree with it.
-- Portable subset only: TEXT and BIGINT, timestamps as BIGINT unix milliseconds UTC.
CREATE TABLE audit_events (
    seq BIGINT NOT NULL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    at_ms BIGINT NOT NULL,
    event_json TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

-- The end of the chain, so that events deleted from the end are noticed. Exactly one row.
-- Every append locks this row first (UPDATE ... SET seq = seq), which serializes appends
-- across processes on both databases.
CREATE TABLE audit_head (
    id BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);

-- The empty chain: no events, the genesis hash (64 zeros).
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
