-- 0004: grants (a user's consent to an upstream, holding Token B sealed) and
-- the pending upstream revocations of destroyed grants.

-- One grant per (tenant, upstream, IdP issuer, IdP subject). Tokens are stored
-- sealed only (tenants/seal, bound to tenant, grant id and field name).
--
-- Refresh coordination across instances (see consent's package doc):
--   version            bumped by every write of the tokens; writes compare-and-swap on it
--   lease_owner,
--   lease_expires_at   a short lease on the right to present the refresh token
--   refresh_started_at set when a refresh is started with the current refresh
--                      token, cleared when its outcome is known; still set after
--                      the lease expired means "the refresh token may have been
--                      consumed" (lost response or crash)
--   refresh_attempts   presentations of the current refresh token whose outcome
--                      is unknown (including one in flight); 2 → needs_reauth
CREATE TABLE grants (
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                   uuid NOT NULL DEFAULT gen_random_uuid(),
    upstream_id          uuid NOT NULL,
    idp_issuer           text NOT NULL,
    subject              text NOT NULL,
    email                text NOT NULL DEFAULT '',
    status               text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'needs_reauth', 'revoked')),
    scopes               text[] NOT NULL DEFAULT '{}',
    access_token_sealed  bytea,
    access_expires_at    timestamptz,
    access_scopes        text[] NOT NULL DEFAULT '{}',
    refresh_token_sealed bytea,
    version              bigint NOT NULL DEFAULT 1,
    lease_owner          text,
    lease_expires_at     timestamptz,
    refresh_started_at   timestamptz,
    refresh_attempts     integer NOT NULL DEFAULT 0,
    last_refresh_error   text NOT NULL DEFAULT '',
    last_refreshed_at    timestamptz,
    needs_reauth_reason  text NOT NULL DEFAULT '',
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    last_used_at         timestamptz,
    revoked_at           timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, upstream_id, idp_issuer, subject),
    FOREIGN KEY (tenant_id, upstream_id) REFERENCES upstreams (tenant_id, id) ON DELETE CASCADE,
    -- A revoked grant holds no token material.
    CHECK (status <> 'revoked' OR (access_token_sealed IS NULL AND refresh_token_sealed IS NULL))
);
CREATE INDEX grants_user ON grants (tenant_id, idp_issuer, subject);
CREATE INDEX grants_revoked ON grants (revoked_at) WHERE status = 'revoked';

-- A token of a destroyed grant still to be revoked at the upstream (RFC 7009)
-- by a River job; the row is deleted once the upstream answered.
CREATE TABLE grant_revocations (
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    grant_id        uuid NOT NULL,
    upstream_id     uuid NOT NULL,
    token_sealed    bytea NOT NULL,
    token_type_hint text NOT NULL CHECK (token_type_hint IN ('refresh_token', 'access_token')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, upstream_id) REFERENCES upstreams (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX grant_revocations_created ON grant_revocations (created_at);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['grants', 'grant_revocations'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO locksmith_app', t);
    END LOOP;
END $$;
