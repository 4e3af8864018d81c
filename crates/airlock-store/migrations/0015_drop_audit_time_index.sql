-- 0014's index on audit_events (at_ms) made every audit append (every SCIM write) update one
-- more index for a query that runs rarely (where in the trail a leaver's removals may start);
-- that query now bisects the trail by seq instead (its times grow with seq).
DROP INDEX audit_events_at;
