-- Accounts airlock manages in each instance: created by it, adopted with `airlock adopt`, or
-- matched by the policy's scope. Leavers are only ever looked for among these. A suspended
-- account keeps its row with suspended_at_ms set until it is deleted (or its person returns).
CREATE TABLE managed_accounts (
    instance TEXT NOT NULL,
    username_key TEXT NOT NULL,
    username TEXT NOT NULL,
    origin TEXT NOT NULL,
    since_ms BIGINT NOT NULL,
    suspended_at_ms BIGINT,
    PRIMARY KEY (instance, username_key),
    CONSTRAINT managed_accounts_origin_known CHECK (origin IN ('created', 'adopted', 'scope', 'service'))
);

-- One row per plan/apply/sync run: the directory size it saw (for the "far fewer people than
-- last time" rail) and a summary of what it did.
CREATE TABLE sync_runs (
    id TEXT NOT NULL PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT,
    directory_people BIGINT,
    summary_json TEXT,
    CONSTRAINT sync_runs_status_known CHECK (status IN ('running', 'succeeded', 'failed', 'refused', 'interrupted'))
);
CREATE INDEX sync_runs_newest ON sync_runs (started_at_ms, id);
