-- Inventory snapshots: one row per inventory run of one Airflow instance.
-- Portable subset only (runs unchanged on SQLite and PostgreSQL): TEXT and BIGINT columns,
-- app-generated TEXT ids (uuid v7), timestamps as BIGINT unix milliseconds UTC.
CREATE TABLE snapshots (
    id TEXT NOT NULL PRIMARY KEY,
    instance TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT,
    airflow_version TEXT,
    user_count BIGINT,
    role_count BIGINT,
    payload_json TEXT,
    error TEXT,
    CONSTRAINT snapshots_status_known CHECK (status IN ('running', 'complete', 'failed')),
    -- A complete row always carries its metadata and payload, so readers never see half a snapshot.
    CONSTRAINT snapshots_complete_has_payload CHECK (
        status <> 'complete'
        OR (finished_at_ms IS NOT NULL AND airflow_version IS NOT NULL AND user_count IS NOT NULL
            AND role_count IS NOT NULL AND payload_json IS NOT NULL)
    ),
    -- A failed row keeps its error and never a payload.
    CONSTRAINT snapshots_failed_has_error CHECK (
        status <> 'failed' OR (finished_at_ms IS NOT NULL AND error IS NOT NULL AND payload_json IS NULL)
    )
);

-- Serves "newest runs of one instance" (latest_complete_snapshots, snapshot_runs with a filter).
CREATE INDEX snapshots_by_instance_newest ON snapshots (instance, started_at_ms, id);
-- Serves "newest runs of every instance" (snapshot_runs without a filter).
CREATE INDEX snapshots_newest ON snapshots (started_at_ms, id);
