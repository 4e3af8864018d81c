-- Leases: which process may write to an Airflow instance (see docs/adr/0006). A row per lease,
-- taken by writing the holder and a new epoch when the row is free or has expired, kept by
-- renewing expires_ms (a heartbeat). The epoch is the fencing token: it grows with every new
-- holder, and every write-ahead intent is inserted only while (holder, epoch) still hold.
-- Times are the holders' clocks (unix ms): replicas must keep their clocks in step (NTP).
CREATE TABLE leases (
    name TEXT NOT NULL PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    acquired_ms BIGINT NOT NULL,
    renewed_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);

-- The write-ahead journal: one row per operation, written (fenced by the lease) before its
-- Airflow call and closed, together with its audit event, after it. A row still in 'intent'
-- belongs to a run that stopped in between; the instance's next lease holder reads Airflow
-- back and records what actually happened. Closed rows of deprovisions also count the
-- rolling-window safety rail.
CREATE TABLE op_journal (
    id TEXT NOT NULL PRIMARY KEY,
    run_id TEXT NOT NULL,
    instance TEXT NOT NULL,
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    op_kind TEXT NOT NULL,
    target TEXT NOT NULL,
    op_json TEXT NOT NULL,
    actor TEXT NOT NULL,
    state TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    finished_ms BIGINT,
    CONSTRAINT op_journal_state_known CHECK (state IN ('intent', 'succeeded', 'failed', 'not_applied'))
);
CREATE INDEX op_journal_open ON op_journal (instance, state);
CREATE INDEX op_journal_recent ON op_journal (state, op_kind, finished_ms);

-- Deprovisions a safety rail held back, one open row per (instance, account, operation): they
-- wait until an operator releases them (`airlock rails release`, audited under the operator's
-- name), the rolling window has room again, or a full run no longer plans them.
CREATE TABLE rail_holds (
    id TEXT NOT NULL PRIMARY KEY,
    instance TEXT NOT NULL,
    username_key TEXT NOT NULL,
    username TEXT NOT NULL,
    op_kind TEXT NOT NULL,
    rail TEXT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    first_held_ms BIGINT NOT NULL,
    last_held_ms BIGINT NOT NULL,
    released_by TEXT,
    released_ms BIGINT,
    closed_ms BIGINT,
    CONSTRAINT rail_holds_status_known CHECK (status IN ('held', 'released', 'applied', 'cleared'))
);
CREATE INDEX rail_holds_open ON rail_holds (instance, status);

-- The instances some `airlock serve` replica consumes SCIM changes for. Every SCIM write
-- records a change for each of them, whatever the config of the replica that received it.
-- A consumer nobody has served for the retention period is dropped with its changes.
CREATE TABLE scim_consumers (
    name TEXT NOT NULL PRIMARY KEY,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL
);

-- Who made a SCIM change (the SCIM client), so the runs it causes name their actor.
ALTER TABLE scim_changes ADD COLUMN client TEXT;

-- Which process ran a run (its lease holder id), so that a run whose process died is closed
-- as interrupted by the next holder.
ALTER TABLE sync_runs ADD COLUMN holder TEXT;
-- Serves "runs still marked running" (closing orphaned runs before each run).
CREATE INDEX sync_runs_by_status ON sync_runs (status);
