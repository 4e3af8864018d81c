-- SCIM lists are paged in the store: without a filter, a page is read in creation order
-- (resource_type, created_ms, id) straight from this index, so reading 10,000 users 100 at a
-- time reads each user once instead of every user for every page. externalId is the other
-- attribute identity providers look resources up by (`externalId eq "..."`).
CREATE INDEX scim_resources_created ON scim_resources (resource_type, created_ms, id);
CREATE INDEX scim_resources_external_id ON scim_resources (resource_type, external_id);
