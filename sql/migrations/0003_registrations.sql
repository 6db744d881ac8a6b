-- 0003: a tenant's identity provider, its upstreams and its tools.

-- The tenant's IdP: Locksmith validates Token A against it and signs end
-- users in through it (consent and approval pages). One per tenant for now.
CREATE TABLE idp_registrations (
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                   uuid NOT NULL DEFAULT gen_random_uuid(),
    issuer               text NOT NULL,
    jwks_uri             text NOT NULL DEFAULT '',
    audience             text NOT NULL DEFAULT '',          -- '' = the tenant's MCP resource URL
    preset               text NOT NULL DEFAULT 'generic' CHECK (preset IN ('generic','okta','entra','auth0','keycloak','google')),
    claim_subject        text NOT NULL DEFAULT 'sub',
    claim_email          text NOT NULL DEFAULT 'email',
    claim_groups         text NOT NULL DEFAULT 'groups',
    claim_scopes         text NOT NULL DEFAULT 'scope',
    claim_agent          text NOT NULL DEFAULT 'client_id',
    require_at_jwt       boolean NOT NULL DEFAULT true,
    required_scopes      text[] NOT NULL DEFAULT '{}',      -- scopes every MCP request needs
    client_id            text NOT NULL DEFAULT '',          -- OIDC client for end-user sign-in
    client_secret_sealed bytea,
    checked_at           timestamptz,
    check_ok             boolean,
    check_message        text NOT NULL DEFAULT '',
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id)
);

-- Upstream APIs (REST or MCP servers) that tools call with Token B.
CREATE TABLE upstreams (
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                   uuid NOT NULL DEFAULT gen_random_uuid(),
    slug                 text NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,38}[a-z0-9]$'),
    name                 text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind                 text NOT NULL DEFAULT 'rest' CHECK (kind IN ('rest','mcp')),
    base_url             text NOT NULL,
    auth_mode            text NOT NULL DEFAULT 'oauth2' CHECK (auth_mode IN ('oauth2','token_exchange','none')),
    preset               text NOT NULL DEFAULT 'custom',
    issuer               text NOT NULL DEFAULT '',
    authorize_url        text NOT NULL DEFAULT '',
    token_url            text NOT NULL DEFAULT '',
    revocation_url       text NOT NULL DEFAULT '',
    client_id            text NOT NULL DEFAULT '',
    client_secret_sealed bytea,
    scopes_offered       text[] NOT NULL DEFAULT '{}',
    pkce                 boolean NOT NULL DEFAULT true,
    refresh_narrows      boolean NOT NULL DEFAULT false,     -- refresh accepts a narrower scope
    revoke_after_use     boolean NOT NULL DEFAULT false,
    resource             text NOT NULL DEFAULT '',          -- RFC 8707 resource indicator, if any
    exchange_variant     text NOT NULL DEFAULT 'rfc8693' CHECK (exchange_variant IN ('rfc8693','entra_obo')),
    exchange_audience    text NOT NULL DEFAULT '',
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, slug)
);

-- Tools agents can call: an upstream operation with its mapping and policy.
CREATE TABLE tools (
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                 uuid NOT NULL DEFAULT gen_random_uuid(),
    upstream_id        uuid NOT NULL,
    name               text NOT NULL CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    title              text NOT NULL DEFAULT '',
    description        text NOT NULL DEFAULT '',
    method             text NOT NULL DEFAULT 'GET' CHECK (method IN ('GET','POST','PUT','PATCH','DELETE')),
    path_template      text NOT NULL DEFAULT '/',
    query_params       text[] NOT NULL DEFAULT '{}',         -- argument names sent as query parameters
    body_params        text[] NOT NULL DEFAULT '{}',         -- argument names sent in the JSON body
    input_schema       jsonb NOT NULL DEFAULT '{"type":"object"}',
    required_scopes    text[] NOT NULL DEFAULT '{}',         -- upstream scopes Token B needs
    risk               text NOT NULL DEFAULT 'read' CHECK (risk IN ('read','write','destructive')),
    enabled            boolean NOT NULL DEFAULT true,
    condition          text NOT NULL DEFAULT '',             -- CEL, evaluated by the policy engine
    approvals_required integer CHECK (approvals_required IS NULL OR approvals_required BETWEEN 1 AND 10),
    log_bodies         boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name),
    FOREIGN KEY (tenant_id, upstream_id) REFERENCES upstreams (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX tools_upstream ON tools (tenant_id, upstream_id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['idp_registrations', 'upstreams', 'tools'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO locksmith_app', t);
    END LOOP;
END $$;
