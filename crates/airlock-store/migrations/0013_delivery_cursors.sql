-- Delivery of what the audit trail records to places outside airlock (notification webhooks;
-- later SIEM sinks): one durable cursor per sink, the `seq` of the last audit event it
-- delivered, moved forward only after the receiver acknowledged (at least once). Marks record
-- notices that do not come from one audit event (a grant about to end), so that each is sent
-- once per sink, also across restarts and replicas.
CREATE TABLE delivery_cursors (
    sink TEXT NOT NULL PRIMARY KEY,
    seq BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE TABLE delivery_marks (
    sink TEXT NOT NULL,
    mark TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (sink, mark)
);
