-- 0001: tenants and per-tenant data keys (the sealed-secret key hierarchy).

CREATE TABLE tenants (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug       text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$'),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);
-- tenants is looked up by slug before a tenant is known (routing), so it is
-- not tenant-owned and carries no RLS policy; the app may read and create.
GRANT SELECT, INSERT, UPDATE ON tenants TO locksmith_app;

-- A tenant's data encryption keys, each wrapped (AES-256-GCM) by a master key
-- named by master_key_id. Exactly one key per tenant is current; older keys
-- stay to open what they sealed.
CREATE TABLE tenant_data_keys (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    master_key_id text NOT NULL,
    wrapped       bytea NOT NULL,
    current       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    rewrapped_at  timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX tenant_data_keys_one_current ON tenant_data_keys (tenant_id) WHERE current;
CREATE INDEX tenant_data_keys_master ON tenant_data_keys (master_key_id);

ALTER TABLE tenant_data_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_data_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_data_keys
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON tenant_data_keys TO locksmith_app;
