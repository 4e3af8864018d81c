-- SCIM writes waiting to be applied to Airflow: an outbox, written in the same transaction as
-- the write itself, one row per consumer (an Airflow instance of `airlock serve`). A consumer
-- reads its rows, reconciles the accounts they affect, and deletes them; rows a crash left
-- behind are applied when the service comes back, and rows written on one replica are seen by
-- whichever replica holds the instance's lease. previous_json is the resource before the write
-- (absent for a create), so that a deleted or renamed User's old account is found.
CREATE TABLE scim_changes (
    id TEXT NOT NULL PRIMARY KEY,
    consumer TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    previous_json TEXT,
    changed_ms BIGINT NOT NULL
);
CREATE INDEX scim_changes_consumer ON scim_changes (consumer, id);
