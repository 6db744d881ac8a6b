-- 0005: what the token broker needs to start an upstream's authorization
-- request beyond the standard parameters.

ALTER TABLE upstreams
    -- Extra authorization request parameters (e.g. access_type=offline).
    ADD COLUMN auth_params jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(auth_params) = 'object'),
    -- The parameter that carries the user's scopes: Slack wants user_scope.
    ADD COLUMN scope_param text NOT NULL DEFAULT 'scope' CHECK (scope_param IN ('scope', 'user_scope'));
