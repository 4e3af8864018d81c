-- Who had access to what, when (airlock_core::history): per instance, one row per stretch of
-- time over which every observation found the same access. An observation that finds the
-- access of the newest row stretches it (`to_ms`, `last_source`, `observations`); one that
-- finds anything else starts a new row. `state_json` is the access (role holders) as the
-- engine encodes it, `digest` its SHA-256, compared instead of the text.
CREATE TABLE access_history (
    id TEXT NOT NULL PRIMARY KEY,
    instance TEXT NOT NULL,
    from_ms BIGINT NOT NULL,
    to_ms BIGINT NOT NULL,
    first_source TEXT NOT NULL,
    last_source TEXT NOT NULL,
    observations BIGINT NOT NULL,
    digest TEXT NOT NULL,
    state_json TEXT NOT NULL
);
-- The interval at or before a moment, and the one after it.
CREATE INDEX access_history_by_instance ON access_history (instance, from_ms);
