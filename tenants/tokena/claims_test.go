package tokena_test

import (
	"log/slog"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/tokena"
)

func TestClaimMapping(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name   string
		claims tenants.ClaimMapping
		extra  map[string]any
		check  func(t *testing.T, p tokena.Principal)
	}{
		{
			name:  "scope string",
			extra: map[string]any{"scope": "  a b\tc  "},
			check: func(t *testing.T, p tokena.Principal) { require.Equal(t, []string{"a", "b", "c"}, p.Scopes) },
		},
		{
			name:  "scope array under the scope name",
			extra: map[string]any{"scope": []string{"a", "b"}},
			check: func(t *testing.T, p tokena.Principal) { require.Equal(t, []string{"a", "b"}, p.Scopes) },
		},
		{
			name:   "scp array",
			claims: tenants.ClaimMapping{Scopes: "scp"},
			extra:  map[string]any{"scope": nil, "scp": []string{"tasks:read", "tasks:write"}},
			check: func(t *testing.T, p tokena.Principal) {
				require.Equal(t, []string{"tasks:read", "tasks:write"}, p.Scopes)
			},
		},
		{
			name:   "scp string",
			claims: tenants.ClaimMapping{Scopes: "scp"},
			extra:  map[string]any{"scope": "ignored", "scp": "Tasks.Read Tasks.Write"},
			check: func(t *testing.T, p tokena.Principal) {
				require.Equal(t, []string{"Tasks.Read", "Tasks.Write"}, p.Scopes)
			},
		},
		{
			name:  "no scopes",
			extra: map[string]any{"scope": nil},
			check: func(t *testing.T, p tokena.Principal) { require.Nil(t, p.Scopes); require.True(t, p.HasScopes()) },
		},
		{
			name:  "groups array",
			extra: map[string]any{"groups": []string{"engineering", "approvers"}},
			check: func(t *testing.T, p tokena.Principal) {
				require.Equal(t, []string{"engineering", "approvers"}, p.Groups)
			},
		},
		{
			name:   "groups as space-separated roles",
			claims: tenants.ClaimMapping{Groups: "roles"},
			extra:  map[string]any{"roles": "admin auditor"},
			check:  func(t *testing.T, p tokena.Principal) { require.Equal(t, []string{"admin", "auditor"}, p.Groups) },
		},
		{
			name:  "act chain",
			extra: map[string]any{"act": map[string]any{"sub": "agent-b", "act": map[string]any{"sub": "agent-a"}}},
			check: func(t *testing.T, p tokena.Principal) {
				require.Equal(t, []string{"agent-b", "agent-a"}, p.Act)
				require.Equal(t, idp.ClientMCPAgent, p.AgentClientID, "the generic preset takes the agent from client_id")
			},
		},
		{
			name:   "agent from act: the current (outermost) actor",
			claims: tenants.ClaimMapping{Agent: "act"},
			extra:  map[string]any{"act": map[string]any{"sub": "agent-b", "act": map[string]any{"sub": "agent-a"}}},
			check: func(t *testing.T, p tokena.Principal) {
				require.Equal(t, "agent-b", p.AgentClientID)
				require.Equal(t, []string{"agent-b", "agent-a"}, p.Act)
			},
		},
		{
			name:   "agent from act without act",
			claims: tenants.ClaimMapping{Agent: "act"},
			check:  func(t *testing.T, p tokena.Principal) { require.Empty(t, p.AgentClientID) },
		},
		{
			name:   "agent from azp",
			claims: tenants.ClaimMapping{Agent: "azp"},
			extra:  map[string]any{"azp": "agent-app"},
			check:  func(t *testing.T, p tokena.Principal) { require.Equal(t, "agent-app", p.AgentClientID) },
		},
		{
			name:   "subject from another claim",
			claims: tenants.ClaimMapping{Subject: "uid", Email: "upn"},
			extra:  map[string]any{"uid": "00u-engineer", "upn": "eng@acme.example"},
			check: func(t *testing.T, p tokena.Principal) {
				require.Equal(t, "00u-engineer", p.Subject)
				require.Equal(t, "eng@acme.example", p.Email)
			},
		},
		{
			name:  "no email",
			extra: map[string]any{"email": nil},
			check: func(t *testing.T, p tokena.Principal) { require.Empty(t, p.Email) },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := b.reg
			reg.Claims = tc.claims
			p, err := b.v.Verify(t.Context(), reg, audA, b.mint(t, idp.MintRequest{Extra: tc.extra}))
			require.NoError(t, err)
			tc.check(t, p)
		})
	}
}

// TestPresetMapping mints tokens shaped like each vendor's and maps them
// with the preset alone.
func TestPresetMapping(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		preset string
		req    idp.MintRequest
		want   tokena.Principal
	}{
		{
			preset: tokena.PresetGeneric,
			req:    idp.MintRequest{Scopes: []string{"tasks:read"}},
			want:   tokena.Principal{Subject: idp.UserEngineer, Email: "engineer@acme.example", Groups: []string{"engineering"}, Scopes: []string{"tasks:read"}, AgentClientID: idp.ClientMCPAgent},
		},
		{
			preset: tokena.PresetOkta,
			req: idp.MintRequest{OmitType: true, Extra: map[string]any{
				"sub": "engineer@acme.example", "uid": "00u1engineer", "cid": "0oa1agent",
				"scp": []string{"tasks:read", "tasks:write"}, "scope": nil, "client_id": nil, "ver": 1,
			}},
			want: tokena.Principal{Subject: "00u1engineer", Email: "engineer@acme.example", Groups: []string{"engineering"}, Scopes: []string{"tasks:read", "tasks:write"}, AgentClientID: "0oa1agent"},
		},
		{
			preset: tokena.PresetEntra,
			req: idp.MintRequest{Type: "JWT", Extra: map[string]any{
				"oid": "6e3a1c4b-0000-4000-8000-000000000001", "preferred_username": "engineer@acme.example",
				"scp": "Tasks.Read Tasks.Write", "roles": []string{"Task.Approver"}, "azp": "agent-app-id",
				"scope": nil, "client_id": nil, "email": nil, "groups": []string{"0b1c-object-id"}, "ver": "2.0",
			}},
			want: tokena.Principal{Subject: "6e3a1c4b-0000-4000-8000-000000000001", Email: "engineer@acme.example", Groups: []string{"Task.Approver"}, Scopes: []string{"Tasks.Read", "Tasks.Write"}, AgentClientID: "agent-app-id"},
		},
		{
			preset: tokena.PresetAuth0,
			req: idp.MintRequest{Type: "JWT", Audience: []string{audA, "https://acme.auth0.example/userinfo"}, Extra: map[string]any{
				"sub": "auth0|123456", "azp": "auth0-agent", "scope": "openid tasks:read", "permissions": []string{"tasks:read"},
				"client_id": nil, "jti": nil,
			}},
			want: tokena.Principal{Subject: "auth0|123456", Email: "engineer@acme.example", Groups: []string{"engineering"}, Scopes: []string{"openid", "tasks:read"}, AgentClientID: "auth0-agent"},
		},
		{
			preset: tokena.PresetKeycloak,
			req: idp.MintRequest{Type: "JWT", Extra: map[string]any{
				"typ": "Bearer", "azp": "kc-agent", "client_id": nil, "scope": "profile email tasks:read",
			}},
			want: tokena.Principal{Subject: idp.UserEngineer, Email: "engineer@acme.example", Groups: []string{"engineering"}, Scopes: []string{"profile", "email", "tasks:read"}, AgentClientID: "kc-agent"},
		},
		{
			preset: tokena.PresetGoogle,
			req: idp.MintRequest{Type: "JWT", Extra: map[string]any{
				"sub": "104567890123456789012", "azp": "104567890123456789012", "email": "agent@proj.iam.gserviceaccount.example",
				"email_verified": true, "scope": "ignored", "client_id": nil, "groups": nil, "jti": nil,
			}},
			want: tokena.Principal{Subject: "104567890123456789012", Email: "agent@proj.iam.gserviceaccount.example", AgentClientID: "104567890123456789012"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.preset, func(t *testing.T) {
			t.Parallel()
			preset, ok := tokena.PresetNamed(tc.preset)
			require.True(t, ok)
			reg := b.reg
			reg.Preset, reg.RequireATJWT = preset.Name, preset.RequireATJWT
			p, err := b.v.Verify(t.Context(), reg, audA, b.mint(t, tc.req))
			require.NoError(t, err)
			tc.want.Issuer, tc.want.ExpiresAt, tc.want.TokenID = p.Issuer, p.ExpiresAt, p.TokenID
			require.Equal(t, tc.want, p)
		})
	}

	// A registration's own mapping overrides its preset field by field.
	reg := b.reg
	reg.Preset, reg.RequireATJWT = tokena.PresetOkta, false
	reg.Claims = tenants.ClaimMapping{Subject: "sub"}
	p, err := b.v.Verify(t.Context(), reg, audA, b.mint(t, idp.MintRequest{Extra: map[string]any{"cid": "0oa1agent", "scp": []string{"x"}}}))
	require.NoError(t, err)
	require.Equal(t, idp.UserEngineer, p.Subject)
	require.Equal(t, "0oa1agent", p.AgentClientID)
	require.Equal(t, []string{"x"}, p.Scopes)

	// The Okta preset refuses tokens without a user (no uid).
	_, err = b.v.Verify(t.Context(), tenantsWithPreset(b.reg, tokena.PresetOkta), audA, b.mint(t, idp.MintRequest{}))
	requireReason(t, err, tokena.ReasonMalformed)
}

func tenantsWithPreset(reg tenants.IdP, preset string) tenants.IdP {
	p, _ := tokena.PresetNamed(preset)
	reg.Preset, reg.RequireATJWT = p.Name, p.RequireATJWT
	return reg
}

func TestPresets(t *testing.T) {
	t.Parallel()
	ps := tokena.Presets()
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
		require.NotEmpty(t, p.Claims.Subject, p.Name)
		require.NotEmpty(t, p.Note, p.Name)
		require.Equal(t, p.Name == tokena.PresetGeneric, p.RequireATJWT, "only the generic (RFC 9068) preset requires at+jwt: %s", p.Name)
		got, ok := tokena.PresetNamed(p.Name)
		require.True(t, ok)
		require.Equal(t, p, got)
	}
	require.Equal(t, []string{"generic", "okta", "entra", "auth0", "keycloak", "google"}, names)
	_, ok := tokena.PresetNamed("ping")
	require.False(t, ok)

	ps[0].Claims.Subject = "changed"
	require.Equal(t, "sub", tokena.Presets()[0].Claims.Subject, "Presets returns a copy")
}

func TestNew(t *testing.T) {
	t.Parallel()
	for name, f := range map[string]func(*tokena.Config){
		"no http":           func(c *tokena.Config) { c.HTTP = nil },
		"no logger":         func(c *tokena.Config) { c.Logger = nil },
		"negative skew":     func(c *tokena.Config) { c.Skew = -1 },
		"skew too large":    func(c *tokena.Config) { c.Skew = tokena.MaxSkew + 1 },
		"negative interval": func(c *tokena.Config) { c.RefetchInterval = -1 },
		"negative max age":  func(c *tokena.Config) { c.KeysMaxAge = -1 },
		"negative timeout":  func(c *tokena.Config) { c.FetchTimeout = -1 },
	} {
		cfg := tokena.Config{HTTP: http.DefaultClient, Logger: slog.New(slog.DiscardHandler)}
		f(&cfg)
		_, err := tokena.New(cfg)
		require.Error(t, err, name)
	}
	_, err := tokena.New(tokena.Config{HTTP: http.DefaultClient, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
}
