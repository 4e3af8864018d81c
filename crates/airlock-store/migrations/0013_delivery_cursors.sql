-- Delivery of what the audit trail records to places outside airlock (notification webhooks;
-- later SIEM sinks): one durable cursor per sink, the `seq` of the last audit event it
-- delivered, moved forward only after the receiver acknowledged (at least once).
CREATE TABLE delivery_cursors (
    sink TEXT NOT NULL PRIMARY KEY,
    seq BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
