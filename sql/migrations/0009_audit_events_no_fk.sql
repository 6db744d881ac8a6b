-- 0009: audit_events without a per-row foreign key.
--
-- The foreign key to tenants cost a lookup and a row lock on tenants for
-- every audit event (about 40 % of an insert's time here), on the hottest
-- write path of the product.
-- Every batch of events goes through the tenant's audit_heads row in the
-- same statement, and audit_heads keeps its foreign key, so an event still
-- cannot be written for a tenant that does not exist. Deleting a tenant
-- deletes its events through the trigger below (the application role still
-- cannot DELETE from audit_events; the trigger runs as the migrating role).
ALTER TABLE audit_events DROP CONSTRAINT IF EXISTS audit_events_tenant_id_fkey;

CREATE FUNCTION audit_events_drop_tenant() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    prev text := current_setting('app.tenant_id', true);
BEGIN
    -- The row-level security policy admits the rows of app.tenant_id only;
    -- the caller's setting is put back afterwards.
    PERFORM set_config('app.tenant_id', OLD.id::text, true);
    DELETE FROM audit_events WHERE tenant_id = OLD.id;
    PERFORM set_config('app.tenant_id', COALESCE(prev, ''), true);
    RETURN OLD;
END $$;
REVOKE ALL ON FUNCTION audit_events_drop_tenant() FROM PUBLIC;

CREATE TRIGGER tenants_drop_audit_events AFTER DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION audit_events_drop_tenant();
