-- Leavers as the identity provider recorded them (JumpCloud Directory Insights: a person
-- suspended or deleted), one row per provider event however often it is read, and when airlock
-- was seen removing their access on each instance: the "time to deprovision".
CREATE TABLE idp_leavers (
    id TEXT NOT NULL PRIMARY KEY,
    provider TEXT NOT NULL,
    kind TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    person TEXT NOT NULL,
    username TEXT NOT NULL,
    recorded_ms BIGINT NOT NULL
);
CREATE INDEX idp_leavers_at ON idp_leavers (at_ms);

-- The first removal of a leaver's access airlock recorded on an instance (the audit event's
-- time and seq), once per leaver and instance.
CREATE TABLE idp_deprovisions (
    leaver TEXT NOT NULL,
    instance TEXT NOT NULL,
    removed_ms BIGINT NOT NULL,
    audit_seq BIGINT NOT NULL,
    PRIMARY KEY (leaver, instance)
);

-- Reading the trail from a time (the removals after a leaver's suspension).
CREATE INDEX audit_events_at ON audit_events (at_ms);
