package tenants_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
)

// manualUpstream is a valid oauth2 upstream that needs no network.
func manualUpstream(slug string) tenants.UpstreamInput {
	return tenants.UpstreamInput{
		Slug: slug, Name: "Example API", BaseURL: "https://api.example.com/v1/",
		AuthorizeURL: "https://auth.example.com/authorize", TokenURL: "https://auth.example.com/token",
		ClientID: "client-1", ScopesOffered: []string{"read", "write", "delete"}, PKCE: true,
	}
}

func TestDiscoverUpstream(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	srv := startTasks(t)

	d, err := b.svc.DiscoverUpstream(b.ctx, srv.URL())
	require.NoError(t, err)
	require.Equal(t, srv.URL(), d.Issuer)
	require.Equal(t, srv.URL()+"/.well-known/oauth-authorization-server", d.MetadataURL)
	require.Equal(t, srv.AuthURL(), d.AuthorizeURL)
	require.Equal(t, srv.TokenURL(), d.TokenURL)
	require.Equal(t, srv.RevocationURL(), d.RevocationURL)
	require.Equal(t, tasks.SupportedScopes(), d.ScopesSupported)
	require.True(t, d.PKCE)
	require.Empty(t, d.Warnings)

	// Nothing at the address: both RFC 8414 and OIDC discovery are reported.
	_, err = b.svc.DiscoverUpstream(b.ctx, srv.URL()+"/elsewhere")
	requireFieldError(t, err, tenants.ErrInvalid, "issuer", "no authorization server metadata found", "HTTP 404")

	_, err = b.strict.DiscoverUpstream(b.ctx, srv.URL())
	requireFieldError(t, err, tenants.ErrInvalid, "issuer", "the URL must use https")
	_, err = b.strict.DiscoverUpstream(b.ctx, strings.Replace(srv.URL(), "http://", "https://", 1))
	requireFieldError(t, err, tenants.ErrInvalid, "issuer", "that address is loopback and not allowed (127.0.0.1)")
}

func TestCreateUpstreamDiscovers(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	srv := startTasks(t)

	u, err := b.svc.CreateUpstream(b.ctx, b.a.ID, tenants.UpstreamInput{
		Slug: "acme-tasks", Name: "Acme Tasks", BaseURL: srv.URL(), Issuer: srv.URL(),
		ClientID: tasks.DefaultClientID, ClientSecret: ptr(tasks.DefaultClientSecret), PKCE: true,
	})
	require.NoError(t, err)
	require.Equal(t, srv.AuthURL(), u.AuthorizeURL)
	require.Equal(t, srv.TokenURL(), u.TokenURL)
	require.Equal(t, srv.RevocationURL(), u.RevocationURL)
	require.Equal(t, tasks.SupportedScopes(), u.ScopesOffered)
	require.Equal(t, tenants.UpstreamREST, u.Kind)
	require.Equal(t, tenants.AuthOAuth2, u.AuthMode)
	require.Equal(t, tenants.UpstreamPresetCustom, u.Preset)
	require.Equal(t, "scope", u.ScopeParam)
	require.Equal(t, map[string]string{}, u.AuthParams)
	require.True(t, u.HasClientSecret)

	got, err := b.svc.Upstream(b.ctx, b.a.ID, u.ID)
	require.NoError(t, err)
	require.Equal(t, u, got)
	got, err = b.svc.UpstreamBySlug(b.ctx, b.a.ID, "acme-tasks")
	require.NoError(t, err)
	require.Equal(t, u, got)
}

func TestUpstreamClientSecret(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	const secret = "upstream-secret-plaintext"
	in := manualUpstream("with-secret")
	in.ClientSecret = ptr(secret)
	u, err := b.strict.CreateUpstream(b.ctx, b.a.ID, in)
	require.NoError(t, err)
	require.True(t, u.HasClientSecret)

	var sealed []byte
	err = sqltest.DB(t).InTenant(b.ctx, b.a.ID, func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), "SELECT client_secret_sealed FROM upstreams WHERE tenant_id = $1 AND id = $2", b.a.ID, u.ID).Scan(&sealed)
	})
	require.NoError(t, err)
	require.NotEmpty(t, sealed)
	require.NotContains(t, string(sealed), secret)

	got, err := b.strict.UpstreamClientSecret(b.ctx, b.a.ID, u.ID)
	require.NoError(t, err)
	require.Equal(t, secret, got)

	// nil keeps the secret.
	in.ClientSecret = nil
	in.Name = "Renamed"
	u2, err := b.strict.UpdateUpstream(b.ctx, b.a.ID, u.ID, in)
	require.NoError(t, err)
	require.Equal(t, "Renamed", u2.Name)
	require.True(t, u2.HasClientSecret)
	got, err = b.strict.UpstreamClientSecret(b.ctx, b.a.ID, u.ID)
	require.NoError(t, err)
	require.Equal(t, secret, got)

	// A new one replaces it; "" removes it.
	in.ClientSecret = ptr("rotated")
	_, err = b.strict.UpdateUpstream(b.ctx, b.a.ID, u.ID, in)
	require.NoError(t, err)
	got, err = b.strict.UpstreamClientSecret(b.ctx, b.a.ID, u.ID)
	require.NoError(t, err)
	require.Equal(t, "rotated", got)
	in.ClientSecret = ptr("")
	u3, err := b.strict.UpdateUpstream(b.ctx, b.a.ID, u.ID, in)
	require.NoError(t, err)
	require.False(t, u3.HasClientSecret)
	got, err = b.strict.UpstreamClientSecret(b.ctx, b.a.ID, u.ID)
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestUpstreamRefusesForbiddenTargets(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	cases := []struct {
		name, field, url, want string
	}{
		{"loopback", "base_url", "https://127.0.0.1:8080/api", "that address is loopback and not allowed (127.0.0.1)"},
		{"loopback in octal", "base_url", "https://0177.0.0.1/", "loopback"},
		{"IPv6 loopback", "base_url", "https://[::1]/", "loopback"},
		{"private", "base_url", "https://10.20.30.40/", "that address is private and not allowed (10.20.30.40)"},
		{"private by name", "base_url", "https://internal.example.com/", "private and not allowed (internal.example.com resolves to 10.0.0.5)"},
		{"link-local", "base_url", "https://169.254.10.10/", "that address is link-local and not allowed"},
		{"metadata", "base_url", "https://169.254.169.254/latest/meta-data/", "that address is the cloud metadata address and not allowed"},
		{"plain http", "base_url", "http://api.example.com/", "the URL must use https"},
		{"private token endpoint", "token_url", "https://192.168.1.1/token", "private"},
		{"metadata authorize endpoint", "authorize_url", "https://metadata.example.com/authorize", "metadata"},
		{"loopback revocation endpoint", "revocation_url", "https://127.0.0.2/revoke", "loopback"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := manualUpstream("forbidden")
			switch tc.field {
			case "base_url":
				in.BaseURL = tc.url
			case "token_url":
				in.TokenURL = tc.url
			case "authorize_url":
				in.AuthorizeURL = tc.url
			case "revocation_url":
				in.RevocationURL = tc.url
			}
			_, err := b.strict.CreateUpstream(b.ctx, b.a.ID, in)
			requireFieldError(t, err, tenants.ErrInvalid, tc.field, tc.want)
		})
	}
	// The strict service accepts the same upstream with public addresses,
	// and a permissive one accepts a loopback base URL.
	_, err := b.strict.CreateUpstream(b.ctx, b.a.ID, manualUpstream("public"))
	require.NoError(t, err)
	in := manualUpstream("local-dev")
	in.BaseURL = "http://127.0.0.1:8080"
	_, err = b.svc.CreateUpstream(b.ctx, b.a.ID, in)
	require.NoError(t, err)
}

func TestUpstreamValidation(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	cases := []struct {
		name   string
		mutate func(*tenants.UpstreamInput)
		field  string
		want   string
	}{
		{"empty slug", func(in *tenants.UpstreamInput) { in.Slug = "" }, "slug", "2 to 40"},
		{"upper-case slug", func(in *tenants.UpstreamInput) { in.Slug = "GitHub" }, "slug", "lowercase"},
		{"slug with double hyphen", func(in *tenants.UpstreamInput) { in.Slug = "a--b" }, "slug", "single hyphens"},
		{"no name", func(in *tenants.UpstreamInput) { in.Name = " " }, "name", "enter a name"},
		{"bad kind", func(in *tenants.UpstreamInput) { in.Kind = "soap" }, "kind", "rest or mcp"},
		{"no base URL", func(in *tenants.UpstreamInput) { in.BaseURL = "" }, "base_url", "base URL"},
		{"relative base URL", func(in *tenants.UpstreamInput) { in.BaseURL = "/api" }, "base_url", "absolute"},
		{"base URL with query", func(in *tenants.UpstreamInput) { in.BaseURL = "https://api.example.com/?key=1" }, "base_url", "query"},
		{"base URL with user info", func(in *tenants.UpstreamInput) { in.BaseURL = "https://user:pw@api.example.com/" }, "base_url", "user name or password"},
		{"unresolvable base URL", func(in *tenants.UpstreamInput) { in.BaseURL = "https://api.invalid/" }, "base_url", "could not be resolved"},
		{"bad auth mode", func(in *tenants.UpstreamInput) { in.AuthMode = "basic" }, "auth_mode", "oauth2, token_exchange or none"},
		{"unknown preset", func(in *tenants.UpstreamInput) { in.Preset = "dropbox" }, "preset", "unknown preset"},
		{"no authorize URL", func(in *tenants.UpstreamInput) { in.AuthorizeURL = "" }, "authorize_url", "authorization endpoint"},
		{"no token URL", func(in *tenants.UpstreamInput) { in.TokenURL = "" }, "token_url", "token endpoint"},
		{"placeholder in endpoint", func(in *tenants.UpstreamInput) { in.TokenURL = "https://login.example.com/{tenant-id}/token" }, "token_url", "placeholder"},
		{"no client ID", func(in *tenants.UpstreamInput) { in.ClientID = "" }, "client_id", testBaseURL + "/oauth/callback"},
		{"client ID with space", func(in *tenants.UpstreamInput) { in.ClientID = "a b" }, "client_id", "spaces"},
		{"secret too long", func(in *tenants.UpstreamInput) { in.ClientSecret = ptr(strings.Repeat("x", 5000)) }, "client_secret", "too long"},
		{"bad scope", func(in *tenants.UpstreamInput) { in.ScopesOffered = []string{`read\write`} }, "scopes_offered", "not a valid scope"},
		{"bad issuer", func(in *tenants.UpstreamInput) { in.Issuer = "auth.example.com" }, "issuer", "absolute https URL"},
		{"resource not absolute", func(in *tenants.UpstreamInput) { in.Resource = "api" }, "resource", "RFC 8707"},
		{"bad exchange variant", func(in *tenants.UpstreamInput) { in.ExchangeVariant = "saml" }, "exchange_variant", "rfc8693 or entra_obo"},
		{"exchange without audience", func(in *tenants.UpstreamInput) { in.AuthMode = tenants.AuthTokenExchange }, "exchange_audience", "audience"},
		{"bad scope param", func(in *tenants.UpstreamInput) { in.ScopeParam = "scopes" }, "scope_param", "scope or user_scope"},
		{"reserved auth param", func(in *tenants.UpstreamInput) {
			in.AuthParams = map[string]string{"redirect_uri": "https://evil.example"}
		}, "auth_params", "set by Locksmith"},
		{"bad auth param name", func(in *tenants.UpstreamInput) { in.AuthParams = map[string]string{"a b": "c"} }, "auth_params", "not a valid parameter name"},
		{"name with control character", func(in *tenants.UpstreamInput) { in.Name = "A\x00B" }, "name", "control"},
		{"revoke after use without revocation endpoint", func(in *tenants.UpstreamInput) { in.RevokeAfterUse = true }, "revoke_after_use", "needs a revocation endpoint"},
		{"revoke after use without user tokens", func(in *tenants.UpstreamInput) {
			in.AuthMode, in.AuthorizeURL, in.TokenURL, in.ClientID = tenants.AuthNone, "", "", ""
			in.RevocationURL, in.RevokeAfterUse = "https://auth.example.com/revoke", true
		}, "revoke_after_use", "auth mode none"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := manualUpstream("valid")
			tc.mutate(&in)
			_, err := b.strict.CreateUpstream(b.ctx, b.a.ID, in)
			requireFieldError(t, err, tenants.ErrInvalid, tc.field, tc.want)
		})
	}
	ups, err := b.strict.Upstreams(b.ctx, b.a.ID)
	require.NoError(t, err)
	require.Empty(t, ups, "refused inputs store nothing")

	// Other auth modes need no endpoints.
	in := manualUpstream("exchange")
	in.AuthMode, in.AuthorizeURL, in.TokenURL, in.ExchangeAudience = tenants.AuthTokenExchange, "", "", "https://api.example.com"
	u, err := b.strict.CreateUpstream(b.ctx, b.a.ID, in)
	require.NoError(t, err)
	require.Equal(t, tenants.ExchangeRFC8693, u.ExchangeVariant)
	in = manualUpstream("public-api")
	in.AuthMode, in.AuthorizeURL, in.TokenURL, in.ClientID = tenants.AuthNone, "", "", ""
	_, err = b.strict.CreateUpstream(b.ctx, b.a.ID, in)
	require.NoError(t, err)

	// A taken slug is a conflict on "slug".
	_, err = b.strict.CreateUpstream(b.ctx, b.a.ID, manualUpstream("taken"))
	require.NoError(t, err)
	_, err = b.strict.CreateUpstream(b.ctx, b.a.ID, manualUpstream("taken"))
	requireFieldError(t, err, tenants.ErrConflict, "slug", "taken")
	// …also when renaming another upstream to it.
	other, err := b.strict.CreateUpstream(b.ctx, b.a.ID, manualUpstream("other"))
	require.NoError(t, err)
	_, err = b.strict.UpdateUpstream(b.ctx, b.a.ID, other.ID, manualUpstream("taken"))
	requireFieldError(t, err, tenants.ErrConflict, "slug", "taken")
	// The same slug is fine in another tenant.
	_, err = b.strict.CreateUpstream(b.ctx, b.b.ID, manualUpstream("taken"))
	require.NoError(t, err)
}

func TestUpstreamPresetsFill(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	u, err := b.strict.CreateUpstream(b.ctx, b.a.ID, tenants.UpstreamInput{Slug: "google", Name: "Google", Preset: "google", ClientID: "g-client"})
	require.NoError(t, err)
	require.Equal(t, "https://accounts.google.com/o/oauth2/v2/auth", u.AuthorizeURL)
	require.Equal(t, "https://oauth2.googleapis.com/token", u.TokenURL)
	require.Equal(t, "https://oauth2.googleapis.com/revoke", u.RevocationURL)
	require.Equal(t, "https://www.googleapis.com", u.BaseURL)
	require.Equal(t, map[string]string{"access_type": "offline", "prompt": "consent"}, u.AuthParams)

	slack, ok := tenants.LookupUpstreamPreset("slack")
	require.True(t, ok)
	in := slack.Input()
	in.Slug, in.Name, in.ClientID = "slack", "Slack", "s-client"
	u, err = b.strict.CreateUpstream(b.ctx, b.a.ID, in)
	require.NoError(t, err)
	require.Equal(t, "user_scope", u.ScopeParam)
	require.Equal(t, slack.Scopes, u.ScopesOffered)

	// Presets with placeholders must be edited first.
	graph, ok := tenants.LookupUpstreamPreset("microsoft-graph")
	require.True(t, ok)
	in = graph.Input()
	in.Slug, in.Name, in.ClientID = "graph", "Graph", "m-client"
	_, err = b.strict.CreateUpstream(b.ctx, b.a.ID, in)
	requireFieldError(t, err, tenants.ErrInvalid, "authorize_url", "placeholder")
	in.AuthorizeURL = strings.ReplaceAll(in.AuthorizeURL, "{tenant-id}", "organizations")
	in.TokenURL = strings.ReplaceAll(in.TokenURL, "{tenant-id}", "organizations")
	_, err = b.strict.CreateUpstream(b.ctx, b.a.ID, in)
	require.NoError(t, err)
}

func TestUpstreamPresets(t *testing.T) {
	t.Parallel()
	want := []string{"github", "google", "slack", "atlassian", "microsoft-graph", "salesforce", "hubspot", "linear", "notion"}
	var names []string
	for _, p := range tenants.UpstreamPresets() {
		names = append(names, p.Name)
		require.NotEmpty(t, p.Label, p.Name)
		require.NotEmpty(t, p.Notes, p.Name)
		require.Contains(t, []string{"scope", "user_scope"}, p.ScopeParam, p.Name)
		for _, raw := range []string{p.AuthorizeURL, p.TokenURL, p.RevocationURL, p.BaseURL, p.Issuer, p.DocsURL} {
			if raw == "" {
				continue
			}
			u, err := url.Parse(raw)
			require.NoError(t, err, p.Name)
			require.Equal(t, "https", u.Scheme, "%s: %s", p.Name, raw)
		}
		require.NotEmpty(t, p.AuthorizeURL, p.Name)
		require.NotEmpty(t, p.TokenURL, p.Name)
		// Copies: editing one doesn't change the next lookup.
		p.Scopes = append(p.Scopes, "mutated")
		again, _ := tenants.LookupUpstreamPreset(p.Name)
		require.NotContains(t, again.Scopes, "mutated")
	}
	require.Equal(t, want, names)
	atl, _ := tenants.LookupUpstreamPreset("atlassian")
	require.Equal(t, "api.atlassian.com", atl.AuthParams["audience"])
	require.Contains(t, atl.Scopes, "offline_access")
	notion, _ := tenants.LookupUpstreamPreset("notion")
	require.Empty(t, notion.Scopes)
}

func TestUpstreamTwoTenantIsolation(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	inB := manualUpstream("b-api")
	inB.ClientSecret = ptr("b-secret")
	ub, err := b.strict.CreateUpstream(b.ctx, b.b.ID, inB)
	require.NoError(t, err)

	_, err = b.strict.Upstream(b.ctx, b.a.ID, ub.ID)
	require.ErrorIs(t, err, tenants.ErrNotFound)
	_, err = b.strict.UpstreamBySlug(b.ctx, b.a.ID, "b-api")
	require.ErrorIs(t, err, tenants.ErrNotFound)
	_, err = b.strict.UpstreamClientSecret(b.ctx, b.a.ID, ub.ID)
	require.ErrorIs(t, err, tenants.ErrNotFound)
	_, err = b.strict.UpdateUpstream(b.ctx, b.a.ID, ub.ID, manualUpstream("hijacked"))
	require.ErrorIs(t, err, tenants.ErrNotFound)
	require.ErrorIs(t, b.strict.DeleteUpstream(b.ctx, b.a.ID, ub.ID), tenants.ErrNotFound)
	list, err := b.strict.Upstreams(b.ctx, b.a.ID)
	require.NoError(t, err)
	require.Empty(t, list)

	// B's upstream is untouched.
	after, err := b.strict.Upstream(b.ctx, b.b.ID, ub.ID)
	require.NoError(t, err)
	require.Equal(t, ub, after)
	sec, err := b.strict.UpstreamClientSecret(b.ctx, b.b.ID, ub.ID)
	require.NoError(t, err)
	require.Equal(t, "b-secret", sec)

	// Unknown ids are not found either.
	_, err = b.strict.Upstream(b.ctx, b.b.ID, uuid.New())
	require.ErrorIs(t, err, tenants.ErrNotFound)
	_, err = b.strict.UpdateUpstream(b.ctx, b.b.ID, uuid.New(), manualUpstream("x1"))
	require.ErrorIs(t, err, tenants.ErrNotFound)

	require.NoError(t, b.strict.DeleteUpstream(b.ctx, b.b.ID, ub.ID))
	_, err = b.strict.Upstream(b.ctx, b.b.ID, ub.ID)
	require.ErrorIs(t, err, tenants.ErrNotFound)
}

// TestUpstreamRevokeAfterUseNeedsRevocationEndpoint: RevokeAfterUse is
// stored only with a revocation endpoint, and an update that removes the
// endpoint while the flag is on is refused, leaving the stored registration
// as it was.
func TestUpstreamRevokeAfterUseNeedsRevocationEndpoint(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	in := manualUpstream("single-use")
	in.RevocationURL, in.RevokeAfterUse = "https://auth.example.com/revoke", true
	u, err := b.strict.CreateUpstream(b.ctx, b.a.ID, in)
	require.NoError(t, err)
	require.True(t, u.RevokeAfterUse)

	in.RevocationURL = ""
	_, err = b.strict.UpdateUpstream(b.ctx, b.a.ID, u.ID, in)
	requireFieldError(t, err, tenants.ErrInvalid, "revoke_after_use", "needs a revocation endpoint")
	got, err := b.strict.Upstream(b.ctx, b.a.ID, u.ID)
	require.NoError(t, err)
	require.True(t, got.RevokeAfterUse)
	require.Equal(t, "https://auth.example.com/revoke", got.RevocationURL)

	// Token exchange: the endpoint is the IdP's; it is required all the same.
	ex := manualUpstream("exchange-single-use")
	ex.AuthMode, ex.AuthorizeURL, ex.TokenURL, ex.ExchangeAudience, ex.RevokeAfterUse = tenants.AuthTokenExchange, "", "", "https://api.example.com", true
	_, err = b.strict.CreateUpstream(b.ctx, b.a.ID, ex)
	requireFieldError(t, err, tenants.ErrInvalid, "revoke_after_use", "needs a revocation endpoint")
	ex.RevocationURL = "https://auth.example.com/revoke"
	_, err = b.strict.CreateUpstream(b.ctx, b.a.ID, ex)
	require.NoError(t, err)

	// Turning the flag off needs nothing.
	in.RevokeAfterUse = false
	u, err = b.strict.UpdateUpstream(b.ctx, b.a.ID, u.ID, in)
	require.NoError(t, err)
	require.False(t, u.RevokeAfterUse)
	require.Empty(t, u.RevocationURL)
}
