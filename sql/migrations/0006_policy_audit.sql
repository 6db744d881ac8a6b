-- 0006: tenant policy rules (agent allow-list, kill switches), two-person
-- approvals, and the append-only, hash-chained audit trail.

-- Tenant-level policy settings; a missing row means the defaults.
CREATE TABLE policy_settings (
    tenant_id         uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    agent_default     text NOT NULL DEFAULT 'allow' CHECK (agent_default IN ('allow', 'deny')),
    approvals_default integer NOT NULL DEFAULT 2 CHECK (approvals_default BETWEEN 1 AND 10),
    time_zone         text NOT NULL DEFAULT 'UTC',
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Agents (OAuth client ids) on the tenant's allow-list. With agent_default
-- 'deny' only these may call tools.
CREATE TABLE policy_agents (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    client_id  text NOT NULL CHECK (length(client_id) BETWEEN 1 AND 255),
    note       text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, client_id)
);

-- Kill switches: every call through an agent, by a user (issuer + subject)
-- or to an upstream (slug) is denied while the row exists.
CREATE TABLE policy_kill_switches (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('agent', 'user', 'upstream')),
    issuer     text NOT NULL DEFAULT '',                    -- kind 'user' only
    value      text NOT NULL CHECK (length(value) BETWEEN 1 AND 500),
    reason     text NOT NULL DEFAULT '',
    created_by text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, kind, issuer, value)
);

-- Every change to a tenant's rules notifies every instance (LISTEN
-- locksmith_policy), which drops its cached copy of that tenant's rules.
CREATE FUNCTION policy_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('locksmith_policy', OLD.tenant_id::text);
    ELSE
        PERFORM pg_notify('locksmith_policy', NEW.tenant_id::text);
        IF TG_OP = 'UPDATE' AND OLD.tenant_id IS DISTINCT FROM NEW.tenant_id THEN
            PERFORM pg_notify('locksmith_policy', OLD.tenant_id::text);
        END IF;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER policy_settings_notify AFTER INSERT OR UPDATE OR DELETE ON policy_settings
    FOR EACH ROW EXECUTE FUNCTION policy_notify();
CREATE TRIGGER policy_agents_notify AFTER INSERT OR UPDATE OR DELETE ON policy_agents
    FOR EACH ROW EXECUTE FUNCTION policy_notify();
CREATE TRIGGER policy_kill_switches_notify AFTER INSERT OR UPDATE OR DELETE ON policy_kill_switches
    FOR EACH ROW EXECUTE FUNCTION policy_notify();

-- Approval settings: who approves (an IdP group), how long a request lives,
-- and the webhook told about new requests (its secret sealed).
CREATE TABLE approval_settings (
    tenant_id             uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    approver_group        text NOT NULL DEFAULT 'approvers' CHECK (length(approver_group) BETWEEN 1 AND 255),
    ttl_seconds           integer NOT NULL DEFAULT 900 CHECK (ttl_seconds BETWEEN 60 AND 86400),
    webhook_url           text NOT NULL DEFAULT '',
    webhook_secret_sealed bytea,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- A request to run one tool call, bound to the SHA-256 of (tool, canonical
-- arguments, requester, agent). At most one active (pending or approved)
-- request per binding.
CREATE TABLE approval_requests (
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                 uuid NOT NULL DEFAULT gen_random_uuid(),
    binding            bytea NOT NULL,
    status             text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected', 'expired', 'used')),
    tool               text NOT NULL,
    upstream           text NOT NULL DEFAULT '',
    risk               text NOT NULL DEFAULT 'destructive',
    args               jsonb NOT NULL DEFAULT '{}',
    requester_issuer   text NOT NULL,
    requester_subject  text NOT NULL,
    requester_email    text NOT NULL DEFAULT '',
    agent              text NOT NULL DEFAULT '',
    act                text[] NOT NULL DEFAULT '{}',
    rule               text NOT NULL DEFAULT '',
    reason             text NOT NULL DEFAULT '',
    request_id         text NOT NULL DEFAULT '',
    approvals_required integer NOT NULL DEFAULT 2 CHECK (approvals_required BETWEEN 1 AND 10),
    approvals          integer NOT NULL DEFAULT 0,
    rejection_reason   text NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    decided_at         timestamptz,
    used_at            timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX approval_requests_active ON approval_requests (tenant_id, binding)
    WHERE status IN ('pending', 'approved');
CREATE INDEX approval_requests_list ON approval_requests (tenant_id, status, created_at DESC, id);

-- One approver's vote on a request; the key makes approvers distinct.
CREATE TABLE approval_votes (
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    request_id       uuid NOT NULL,
    approver_issuer  text NOT NULL,
    approver_subject text NOT NULL,
    approver_email   text NOT NULL DEFAULT '',
    decision         text NOT NULL CHECK (decision IN ('approve', 'reject')),
    reason           text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, request_id, approver_issuer, approver_subject),
    FOREIGN KEY (tenant_id, request_id) REFERENCES approval_requests (tenant_id, id) ON DELETE CASCADE
);

-- Audit retention (days). The floor of 7 days bounds what a compromised
-- application could purge.
CREATE TABLE audit_settings (
    tenant_id      uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    retention_days integer NOT NULL DEFAULT 365 CHECK (retention_days BETWEEN 7 AND 3650),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- The next sequence number of each tenant's audit trail. Writers take the
-- row lock while inserting, so sequence numbers commit in order and without
-- gaps: a missing number is a deleted event.
CREATE TABLE audit_heads (
    tenant_id uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    next_seq  bigint NOT NULL DEFAULT 1
);

-- The audit trail: one 'call' row per MCP tools/call decision (written, and
-- committed, before any upstream call), and one 'outcome' row after the
-- upstream answered. A call allowed without an outcome row has outcome
-- "unknown". The application may only SELECT and INSERT.
CREATE TABLE audit_events (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    seq           bigint NOT NULL,
    at            timestamptz NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('call', 'outcome')),
    request_id    text NOT NULL DEFAULT '',
    user_issuer   text NOT NULL DEFAULT '',
    user_subject  text NOT NULL DEFAULT '',
    user_email    text NOT NULL DEFAULT '',
    agent         text NOT NULL DEFAULT '',
    act           text[] NOT NULL DEFAULT '{}',
    tool          text NOT NULL DEFAULT '',
    upstream      text NOT NULL DEFAULT '',
    upstream_name text NOT NULL DEFAULT '',
    method        text NOT NULL DEFAULT '',
    path_template text NOT NULL DEFAULT '',
    scopes        text[] NOT NULL DEFAULT '{}',
    narrowed      boolean NOT NULL DEFAULT false,
    decision      text NOT NULL DEFAULT '' CHECK (decision IN ('', 'allow', 'deny', 'approval')),
    rule          text NOT NULL DEFAULT '',
    reason        text NOT NULL DEFAULT '',
    approval_id   uuid,
    intent_seq    bigint,                                     -- outcome: the call it completes
    status        integer,                                    -- outcome: upstream HTTP status
    latency_us    bigint,                                     -- outcome: upstream latency
    error         text NOT NULL DEFAULT '',
    detail        jsonb,                                      -- redacted bodies, when the tool opts in
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_events_outcome ON audit_events (tenant_id, intent_seq) WHERE kind = 'outcome';
CREATE INDEX audit_events_user ON audit_events (tenant_id, user_subject, seq) WHERE kind = 'call';
CREATE INDEX audit_events_at ON audit_events USING brin (at);

-- Seals: consecutive batches of events chained by SHA-256. hash covers the
-- previous batch's hash, the range and the per-event digests (16 bytes each,
-- in sequence order). A purge deletes old events but keeps their seals, so
-- the chain stays verifiable from its first batch.
CREATE TABLE audit_seals (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    from_seq  bigint NOT NULL,
    to_seq    bigint NOT NULL,
    prev_hash bytea NOT NULL,
    hash      bytea NOT NULL,
    digests   bytea,                                          -- NULL once purged
    last_at   timestamptz NOT NULL,                           -- newest event time in the batch
    sealed_at timestamptz NOT NULL DEFAULT now(),
    purged_at timestamptz,
    PRIMARY KEY (tenant_id, from_seq),
    UNIQUE (tenant_id, to_seq),
    CHECK (to_seq >= from_seq)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['policy_settings', 'policy_agents', 'policy_kill_switches',
                             'approval_settings', 'approval_requests', 'approval_votes',
                             'audit_settings', 'audit_heads', 'audit_events', 'audit_seals'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
END $$;

GRANT SELECT, INSERT, UPDATE, DELETE ON policy_settings, policy_agents, policy_kill_switches TO locksmith_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON approval_settings, approval_requests, approval_votes TO locksmith_app;
GRANT SELECT, INSERT, UPDATE ON audit_settings, audit_heads TO locksmith_app;
-- Append only: no UPDATE, no DELETE for the application.
GRANT SELECT, INSERT ON audit_events, audit_seals TO locksmith_app;

-- Retention purge, run by the application through this function (owned by
-- the migrating role, which may delete). It deletes the events of whole
-- sealed batches whose newest event is older than the tenant's retention,
-- keeps the seals (marking them purged) so the chain still verifies, and
-- only ever for the tenant of the calling transaction.
CREATE FUNCTION audit_purge(p_tenant uuid) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    cutoff timestamptz;
    upto   bigint;
    n      bigint;
BEGIN
    IF p_tenant IS NULL OR p_tenant IS DISTINCT FROM NULLIF(current_setting('app.tenant_id', true), '')::uuid THEN
        RAISE EXCEPTION 'audit_purge: the tenant must be the transaction''s tenant' USING ERRCODE = '42501';
    END IF;
    SELECT now() - make_interval(days => COALESCE(
               (SELECT retention_days FROM audit_settings WHERE tenant_id = p_tenant), 365))
      INTO cutoff;
    -- The longest prefix of seals all older than the cutoff.
    SELECT COALESCE((SELECT min(from_seq) - 1 FROM audit_seals WHERE tenant_id = p_tenant AND last_at >= cutoff),
                    (SELECT max(to_seq) FROM audit_seals WHERE tenant_id = p_tenant))
      INTO upto;
    IF upto IS NULL OR upto < 1 THEN
        RETURN 0;
    END IF;
    DELETE FROM audit_events WHERE tenant_id = p_tenant AND seq <= upto;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE audit_seals SET purged_at = now(), digests = NULL
     WHERE tenant_id = p_tenant AND to_seq <= upto AND purged_at IS NULL;
    RETURN n;
END $$;
REVOKE ALL ON FUNCTION audit_purge(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_purge(uuid) TO locksmith_app;
