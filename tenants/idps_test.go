package tenants_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
)

// fakeIdP serves a discovery document and a JWKS built by the test.
func fakeIdP(t *testing.T, discovery func(base string) map[string]any, jwks string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(discovery(srv.URL))
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(jwks))
	})
	return srv
}

func goodDiscovery(base string) map[string]any {
	return map[string]any{
		"issuer": base, "jwks_uri": base + "/jwks",
		"authorization_endpoint": base + "/authorize", "token_endpoint": base + "/token",
		"code_challenge_methods_supported": []string{"S256"},
	}
}

// An RSA public key (RFC 7517 appendix A.1).
const rsaJWK = `{"kty":"RSA","kid":"2011-04-29","alg":"RS256","use":"sig","e":"AQAB",
"n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}`

func TestCheckIdP(t *testing.T) {
	t.Parallel()
	b := setupReg(t)

	t.Run("demo IdP", func(t *testing.T) {
		t.Parallel()
		demo := idp.NewTestServer(t)
		c := b.svc.CheckIdP(b.ctx, demo.URL())
		require.True(t, c.OK, "problems: %v", c.Problems)
		require.Empty(t, c.Problems)
		require.Empty(t, c.Warnings)
		require.Equal(t, demo.URL(), c.Found.Issuer)
		require.Equal(t, demo.JWKSURL(), c.Found.JWKSURI)
		require.Equal(t, len(demo.JWKS().Keys), c.Found.KeyCount)
		require.GreaterOrEqual(t, c.Found.KeyCount, 1)
		require.Contains(t, c.Found.KeyIDs, demo.CurrentKeyID())
		require.Contains(t, c.Found.Algorithms, "RS256")
		require.Equal(t, demo.TokenURL(), c.Found.TokenEndpoint)
		require.Contains(t, c.Found.CodeChallengeMethods, "S256")
	})

	cases := []struct {
		name      string
		discovery func(base string) map[string]any
		jwks      string
		// issuer overrides the server's URL; path is appended to it.
		path         string
		wantOK       bool
		wantProblem  func(base string) string
		wantWarning  string
		wantKeyCount int
	}{
		{
			name:         "good",
			discovery:    goodDiscovery,
			jwks:         `{"keys":[` + rsaJWK + `]}`,
			wantOK:       true,
			wantKeyCount: 1,
		},
		{
			name: "issuer mismatch",
			discovery: func(base string) map[string]any {
				d := goodDiscovery(base)
				d["issuer"] = "https://other.example"
				return d
			},
			jwks: `{"keys":[` + rsaJWK + `]}`,
			wantProblem: func(base string) string {
				return "the issuer in the discovery document doesn't match (found https://other.example, expected " + base + ")"
			},
			wantKeyCount: 1,
		},
		{
			name: "trailing slash is a mismatch",
			discovery: func(base string) map[string]any {
				d := goodDiscovery(base)
				d["issuer"] = base + "/"
				return d
			},
			jwks:         `{"keys":[` + rsaJWK + `]}`,
			wantProblem:  func(base string) string { return "(found " + base + "/, expected " + base + ")" },
			wantKeyCount: 1,
		},
		{
			name:        "no keys",
			discovery:   goodDiscovery,
			jwks:        `{"keys":[]}`,
			wantProblem: func(string) string { return "JWKS has no signing keys" },
		},
		{
			name:        "only a symmetric key",
			discovery:   goodDiscovery,
			jwks:        `{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0","alg":"HS256"}]}`,
			wantProblem: func(string) string { return "private or symmetric key material" },
		},
		{
			name:        "JWKS not JSON",
			discovery:   goodDiscovery,
			jwks:        `<html>`,
			wantProblem: func(base string) string { return "JWKS at " + base + "/jwks is not JSON" },
		},
		{
			name: "no jwks_uri",
			discovery: func(base string) map[string]any {
				d := goodDiscovery(base)
				delete(d, "jwks_uri")
				return d
			},
			wantProblem: func(string) string { return "the discovery document has no jwks_uri" },
		},
		{
			name:      "discovery 404",
			discovery: goodDiscovery,
			path:      "/nowhere",
			wantProblem: func(base string) string {
				return "discovery returned HTTP 404 at " + base + "/.well-known/openid-configuration"
			},
		},
		{
			name: "no PKCE methods is a warning",
			discovery: func(base string) map[string]any {
				d := goodDiscovery(base)
				delete(d, "code_challenge_methods_supported")
				return d
			},
			jwks:         `{"keys":[` + rsaJWK + `]}`,
			wantOK:       true,
			wantWarning:  "code_challenge_methods_supported",
			wantKeyCount: 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := fakeIdP(t, tc.discovery, tc.jwks)
			issuer := srv.URL + tc.path
			c := b.svc.CheckIdP(b.ctx, issuer)
			require.Equal(t, tc.wantOK, c.OK, "problems: %v", c.Problems)
			if tc.wantProblem != nil {
				want := tc.wantProblem(issuer)
				found := false
				for _, p := range c.Problems {
					found = found || bytes.Contains([]byte(p), []byte(want))
				}
				require.True(t, found, "want a problem containing %q, got %v", want, c.Problems)
			} else {
				require.Empty(t, c.Problems)
			}
			if tc.wantWarning != "" {
				require.Len(t, c.Warnings, 1)
				require.Contains(t, c.Warnings[0], tc.wantWarning)
			}
			require.Equal(t, tc.wantKeyCount, c.Found.KeyCount)
		})
	}

	t.Run("not JSON discovery", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("<html>hello</html>")) }))
		t.Cleanup(srv.Close)
		c := b.svc.CheckIdP(b.ctx, srv.URL)
		require.False(t, c.OK)
		require.Equal(t, []string{"discovery at " + srv.URL + "/.well-known/openid-configuration is not JSON"}, c.Problems)
	})

	t.Run("TLS error", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewUnstartedServer(http.NotFoundHandler())
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
		srv.StartTLS()
		t.Cleanup(srv.Close)
		c := b.svc.CheckIdP(b.ctx, srv.URL)
		require.False(t, c.OK)
		require.Len(t, c.Problems, 1)
		require.Contains(t, c.Problems[0], "TLS error: ")
		require.Contains(t, c.Problems[0], "unknown authority")
	})

	refused := []struct{ issuer, want string }{
		{"https://10.1.2.3", "that address is private and not allowed (10.1.2.3)"},
		{"https://internal.example.com/realms/x", "that address is private and not allowed (internal.example.com resolves to 10.0.0.5)"},
		{"https://127.0.0.1:8443", "that address is loopback and not allowed (127.0.0.1)"},
		{"https://169.254.169.254", "that address is the cloud metadata address and not allowed"},
		{"http://idp.example.com", "the URL must use https"},
		{"https://nowhere.invalid", `the host name "nowhere.invalid" could not be resolved`},
		{"not a url", "the issuer must be an absolute https URL"},
	}
	for _, tc := range refused {
		t.Run("strict "+tc.issuer, func(t *testing.T) {
			t.Parallel()
			c := b.strict.CheckIdP(b.ctx, tc.issuer)
			require.False(t, c.OK)
			require.Len(t, c.Problems, 1)
			require.Contains(t, c.Problems[0], tc.want)
		})
	}
}

// sealedIdPSecret reads the stored ciphertext straight from the table.
func sealedIdPSecret(t *testing.T, tenant tenants.Tenant) []byte {
	t.Helper()
	var sealed []byte
	err := sqltest.DB(t).InTenant(context.Background(), tenant.ID, func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), "SELECT client_secret_sealed FROM idp_registrations WHERE tenant_id = $1", tenant.ID).Scan(&sealed)
	})
	require.NoError(t, err)
	return sealed
}

func TestSaveIdP(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	demo := idp.NewTestServer(t)
	const secret = "idp-client-secret-plaintext"

	_, err := b.svc.IdP(b.ctx, b.a.ID)
	require.ErrorIs(t, err, tenants.ErrNotFound)

	p, err := b.svc.SaveIdP(b.ctx, b.a.ID, tenants.IdPInput{Issuer: demo.URL(), ClientID: "locksmith", ClientSecret: ptr(secret), RequiredScopes: []string{"openid mcp"}})
	require.NoError(t, err)
	require.Equal(t, demo.URL(), p.Issuer)
	require.Equal(t, demo.JWKSURL(), p.JWKSURI)
	require.Equal(t, "generic", p.Preset)
	require.Equal(t, tenants.ClaimMapping{Subject: "sub", Email: "email", Groups: "groups", Scopes: "scope", Agent: "client_id"}, p.Claims)
	require.True(t, p.RequireATJWT)
	require.Equal(t, []string{"openid", "mcp"}, p.RequiredScopes)
	require.True(t, p.HasClientSecret)
	require.NotNil(t, p.CheckOK)
	require.True(t, *p.CheckOK, p.CheckMessage)
	require.NotNil(t, p.CheckedAt)

	sealed := sealedIdPSecret(t, b.a)
	require.NotEmpty(t, sealed)
	require.NotContains(t, string(sealed), secret)
	got, err := b.svc.IdPClientSecret(b.ctx, b.a.ID)
	require.NoError(t, err)
	require.Equal(t, secret, got)

	// Updating without a secret keeps it; the row and id stay the same.
	p2, err := b.svc.SaveIdP(b.ctx, b.a.ID, tenants.IdPInput{Issuer: demo.URL(), Preset: "keycloak", ClientID: "locksmith"})
	require.NoError(t, err)
	require.Equal(t, p.ID, p2.ID)
	require.True(t, p2.HasClientSecret)
	require.Equal(t, "azp", p2.Claims.Agent)
	require.False(t, p2.RequireATJWT)
	got, err = b.svc.IdPClientSecret(b.ctx, b.a.ID)
	require.NoError(t, err)
	require.Equal(t, secret, got)

	// Explicit choices beat the preset.
	p3, err := b.svc.SaveIdP(b.ctx, b.a.ID, tenants.IdPInput{Issuer: demo.URL(), Preset: "okta", RequireATJWT: ptr(true),
		Claims: tenants.ClaimMapping{Groups: "https://example.com/groups"}, ClientSecret: ptr("")})
	require.NoError(t, err)
	require.Equal(t, tenants.ClaimMapping{Subject: "uid", Email: "sub", Groups: "https://example.com/groups", Scopes: "scp", Agent: "cid"}, p3.Claims)
	require.True(t, p3.RequireATJWT)
	require.False(t, p3.HasClientSecret, "an empty secret removes it")
	got, err = b.svc.IdPClientSecret(b.ctx, b.a.ID)
	require.NoError(t, err)
	require.Empty(t, got)

	read, err := b.svc.IdP(b.ctx, b.a.ID)
	require.NoError(t, err)
	require.Equal(t, p3, read)

	require.NoError(t, b.svc.DeleteIdP(b.ctx, b.a.ID))
	_, err = b.svc.IdP(b.ctx, b.a.ID)
	require.ErrorIs(t, err, tenants.ErrNotFound)
	require.ErrorIs(t, b.svc.DeleteIdP(b.ctx, b.a.ID), tenants.ErrNotFound)
}

func TestSaveIdPStoresFailedCheck(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	srv := fakeIdP(t, func(base string) map[string]any {
		d := goodDiscovery(base)
		d["issuer"] = "https://other.example"
		return d
	}, `{"keys":[]}`)
	p, err := b.svc.SaveIdP(b.ctx, b.a.ID, tenants.IdPInput{Issuer: srv.URL})
	require.NoError(t, err)
	require.NotNil(t, p.CheckOK)
	require.False(t, *p.CheckOK)
	require.Contains(t, p.CheckMessage, "the issuer in the discovery document doesn't match (found https://other.example, expected "+srv.URL+")")
	require.Contains(t, p.CheckMessage, "JWKS has no signing keys")

	// RecheckIdP stores a fresh outcome.
	c, err := b.svc.RecheckIdP(b.ctx, b.a.ID)
	require.NoError(t, err)
	require.False(t, c.OK)
	_, err = b.svc.RecheckIdP(b.ctx, b.b.ID)
	require.ErrorIs(t, err, tenants.ErrNotFound)
}

func TestSaveIdPValidation(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	cases := []struct {
		name      string
		in        tenants.IdPInput
		field     string
		wantInMsg string
	}{
		{"no issuer", tenants.IdPInput{}, "issuer", "enter the issuer"},
		{"relative issuer", tenants.IdPInput{Issuer: "/realms/acme"}, "issuer", "absolute https URL"},
		{"issuer with query", tenants.IdPInput{Issuer: "https://idp.example.com/?a=b"}, "issuer", "query"},
		{"private issuer", tenants.IdPInput{Issuer: "https://10.0.0.1"}, "issuer", "that address is private and not allowed (10.0.0.1)"},
		{"metadata issuer", tenants.IdPInput{Issuer: "https://metadata.example.com"}, "issuer", "metadata"},
		{"unresolvable issuer", tenants.IdPInput{Issuer: "https://idp.invalid"}, "issuer", "could not be resolved"},
		{"http issuer", tenants.IdPInput{Issuer: "http://idp.example.com"}, "issuer", "https"},
		{"unknown preset", tenants.IdPInput{Issuer: "https://idp.example.com", Preset: "ping"}, "preset", "generic, okta"},
		{"audience with space", tenants.IdPInput{Issuer: "https://idp.example.com", Audience: "a b"}, "audience", "spaces"},
		{"claim with space", tenants.IdPInput{Issuer: "https://idp.example.com", Claims: tenants.ClaimMapping{Email: "e mail"}}, "claims.email", "spaces"},
		{"bad scope", tenants.IdPInput{Issuer: "https://idp.example.com", RequiredScopes: []string{`mcp"`}}, "required_scopes", "not a valid scope"},
		{"secret without client", tenants.IdPInput{Issuer: "https://idp.example.com", ClientSecret: ptr("s")}, "client_id", "client ID"},
		{"secret with control chars", tenants.IdPInput{Issuer: "https://idp.example.com", ClientID: "c", ClientSecret: ptr("a\x00b")}, "client_secret", "control"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := b.strict.SaveIdP(b.ctx, b.a.ID, tc.in)
			requireFieldError(t, err, tenants.ErrInvalid, tc.field, tc.wantInMsg)
		})
	}
	_, err := b.strict.IdP(b.ctx, b.a.ID)
	require.ErrorIs(t, err, tenants.ErrNotFound, "a refused save stores nothing")
}

func TestIdPTwoTenantIsolation(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	demo := idp.NewTestServer(t)
	pb, err := b.svc.SaveIdP(b.ctx, b.b.ID, tenants.IdPInput{Issuer: demo.URL(), ClientID: "b-client", ClientSecret: ptr("b-secret")})
	require.NoError(t, err)

	// Tenant A sees, opens and deletes nothing of B's.
	_, err = b.svc.IdP(b.ctx, b.a.ID)
	require.ErrorIs(t, err, tenants.ErrNotFound)
	_, err = b.svc.IdPClientSecret(b.ctx, b.a.ID)
	require.ErrorIs(t, err, tenants.ErrNotFound)
	require.ErrorIs(t, b.svc.DeleteIdP(b.ctx, b.a.ID), tenants.ErrNotFound)
	_, err = b.svc.RecheckIdP(b.ctx, b.a.ID)
	require.ErrorIs(t, err, tenants.ErrNotFound)

	// A's save creates A's own registration and leaves B's alone.
	pa, err := b.svc.SaveIdP(b.ctx, b.a.ID, tenants.IdPInput{Issuer: demo.URL(), Preset: "entra", ClientID: "a-client", ClientSecret: ptr("a-secret")})
	require.NoError(t, err)
	require.NotEqual(t, pb.ID, pa.ID)
	require.Equal(t, b.a.ID, pa.TenantID)
	after, err := b.svc.IdP(b.ctx, b.b.ID)
	require.NoError(t, err)
	require.Equal(t, pb, after)
	sb, err := b.svc.IdPClientSecret(b.ctx, b.b.ID)
	require.NoError(t, err)
	require.Equal(t, "b-secret", sb)

	require.NoError(t, b.svc.DeleteIdP(b.ctx, b.a.ID))
	_, err = b.svc.IdP(b.ctx, b.b.ID)
	require.NoError(t, err, "deleting A's IdP leaves B's")
}

func TestDefaultAudience(t *testing.T) {
	t.Parallel()
	svc := newService(t, false)
	require.Equal(t, testBaseURL+"/t/acme/mcp", svc.DefaultAudience("acme"))
	require.Equal(t, testBaseURL+"/oauth/callback", svc.RedirectURI())
}

func TestIdPPresets(t *testing.T) {
	t.Parallel()
	var names []string
	for _, p := range tenants.IdPPresets() {
		names = append(names, p.Name)
		require.NotEmpty(t, p.Label)
		require.NotEmpty(t, p.Notes)
		require.NotEmpty(t, p.Claims.Subject)
		got, ok := tenants.LookupIdPPreset(p.Name)
		require.True(t, ok)
		require.Equal(t, p, got)
	}
	// The schema's CHECK constraint lists exactly these.
	require.Equal(t, []string{"generic", "okta", "entra", "auth0", "keycloak", "google"}, names)
	_, ok := tenants.LookupIdPPreset("ping")
	require.False(t, ok)
	generic, _ := tenants.LookupIdPPreset("generic")
	require.True(t, generic.RequireATJWT)
	entra, _ := tenants.LookupIdPPreset("entra")
	require.Equal(t, "scp", entra.Claims.Scopes)
	require.False(t, entra.RequireATJWT)
}
