-- 0007: end-user sessions (people signed in through their tenant's IdP on
-- the consent and "my connections" pages) and the short-lived states of the
-- two browser flows those pages run: IdP sign-in and upstream consent.

-- A signed-in end user of one tenant. The browser holds a random token in a
-- cookie scoped to /t/{tenant}/; only its SHA-256 is stored. A new row (and
-- token) is created at every sign-in, so a planted cookie never becomes a
-- signed-in session. The user is as the tenant's IdP named them in a
-- verified ID token.
CREATE TABLE enduser_sessions (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    token_hash   bytea NOT NULL,
    idp_issuer   text NOT NULL,
    subject      text NOT NULL,
    email        text NOT NULL DEFAULT '',
    name         text NOT NULL DEFAULT '',
    groups       text[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, token_hash)
);
CREATE INDEX enduser_sessions_expires ON enduser_sessions (tenant_id, expires_at);

-- One step of a browser flow, named by the random state parameter (only its
-- SHA-256 is stored). Single use (used_at), short-lived (expires_at).
--   signin:  bound to the browser by binding_hash (the SHA-256 of a random
--            cookie set when the flow started); holds the OIDC nonce and the
--            PKCE verifier for the IdP.
--   consent: bound to the end-user session that started it (session_id) AND
--            to its user (idp_issuer, subject); holds the upstream, the
--            scopes asked for and the PKCE verifier for the upstream.
CREATE TABLE enduser_states (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    kind          text NOT NULL CHECK (kind IN ('signin', 'consent')),
    state_hash    bytea NOT NULL,
    binding_hash  bytea,
    session_id    uuid,
    idp_issuer    text NOT NULL DEFAULT '',
    subject       text NOT NULL DEFAULT '',
    upstream_id   uuid,
    scopes        text[] NOT NULL DEFAULT '{}',
    code_verifier text NOT NULL DEFAULT '',
    nonce         text NOT NULL DEFAULT '',
    return_to     text NOT NULL DEFAULT '',
    agent         text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, state_hash),
    FOREIGN KEY (tenant_id, upstream_id) REFERENCES upstreams (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX enduser_states_expires ON enduser_states (tenant_id, expires_at);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['enduser_sessions', 'enduser_states'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO locksmith_app', t);
    END LOOP;
END $$;
