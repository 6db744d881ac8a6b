package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

// Secrets the fixtures store; no API response may contain them.
const (
	apiIdPSecret      = "idp-s3cret-never-returned"
	apiUpstreamSecret = "upstream-s3cret-never-returned"
)

// apiBundle is the admin API served on port 0 over plain http.
type apiBundle struct {
	t    *testing.T
	url  string
	svc  *tenants.Service
	logs *strings.Builder
}

// apiReady is always ready.
type apiReady struct{}

func (apiReady) Ready(context.Context) error { return nil }

// setupAPI starts a server whose tenant service has the egress options
// opts (AllowPrivate true for most tests: fixtures live on 127.0.0.1).
func setupAPI(t *testing.T, opts egress.Options) *apiBundle {
	t.Helper()
	hs := httptest.NewUnstartedServer(nil)
	base := "http://" + hs.Listener.Addr().String()
	u, err := url.Parse(base)
	require.NoError(t, err)
	logs := &strings.Builder{}
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelInfo}))

	key, err := seal.GenerateMasterKey("api")
	require.NoError(t, err)
	mk, err := seal.ParseMasterKeys(key)
	require.NoError(t, err)
	db := sqltest.DB(t)
	sealer, err := seal.New(db, mk)
	require.NoError(t, err)
	eg, err := egress.New(opts)
	require.NoError(t, err)
	svc, err := tenants.New(tenants.Config{DB: db, Sealer: sealer, Egress: eg, Logger: logger, BaseURL: base})
	require.NoError(t, err)

	s, err := New(Config{Logger: logger, BaseURL: u, Ready: apiReady{}, Registry: NewRegistry(), Tenants: svc})
	require.NoError(t, err)
	hs.Config.Handler = s
	hs.Start()
	t.Cleanup(hs.Close)
	return &apiBundle{t: t, url: base, svc: svc, logs: logs}
}

func apiPermissive() egress.Options {
	return egress.Options{AllowPrivate: true, DialTimeout: time.Second, Timeout: 3 * time.Second}
}

// apiTenant is a tenant with an admin, a viewer and a revoked key.
type apiTenant struct {
	id                     uuid.UUID
	admin, viewer, revoked string
}

func (b *apiBundle) tenant(t *testing.T) apiTenant {
	t.Helper()
	ctx := context.Background()
	u := strings.ReplaceAll(uuid.NewString(), "-", "")[:10]
	acct, err := b.svc.EnsureAccount(ctx, "owner-"+u+"@example.com")
	require.NoError(t, err)
	tn, err := b.svc.CreateTenant(ctx, acct.ID, "api-"+u, "API "+u)
	require.NoError(t, err)
	at := apiTenant{id: tn.ID}
	at.admin, _, err = b.svc.CreateAPIKey(ctx, tn.ID, acct.ID, "admin", tenants.RoleAdmin)
	require.NoError(t, err)
	at.viewer, _, err = b.svc.CreateAPIKey(ctx, tn.ID, acct.ID, "viewer", tenants.RoleViewer)
	require.NoError(t, err)
	var k tenants.APIKey
	at.revoked, k, err = b.svc.CreateAPIKey(ctx, tn.ID, acct.ID, "revoked", tenants.RoleAdmin)
	require.NoError(t, err)
	require.NoError(t, b.svc.RevokeAPIKey(ctx, tn.ID, k.ID))
	return at
}

// apiFixtures are objects of one tenant, made through the domain.
type apiFixtures struct {
	idp, upstream, tool uuid.UUID
}

func (b *apiBundle) fixtures(t *testing.T, tenantID uuid.UUID) apiFixtures {
	t.Helper()
	ctx := context.Background()
	idpSecret, upSecret := apiIdPSecret, apiUpstreamSecret
	// Nothing listens on port 1: the live check fails fast and the
	// registration is stored with check_ok false.
	p, err := b.svc.SaveIdP(ctx, tenantID, tenants.IdPInput{Issuer: "http://127.0.0.1:1", ClientID: "locksmith", ClientSecret: &idpSecret})
	require.NoError(t, err)
	u, err := b.svc.CreateUpstream(ctx, tenantID, tenants.UpstreamInput{
		Slug: "fixture", Name: "Fixture", BaseURL: "http://127.0.0.1:9/api", AuthMode: tenants.AuthOAuth2,
		AuthorizeURL: "http://127.0.0.1:9/authorize", TokenURL: "http://127.0.0.1:9/token", ClientID: "cid",
		ClientSecret: &upSecret, ScopesOffered: []string{tasks.ScopeRead, tasks.ScopeWrite},
	})
	require.NoError(t, err)
	tool, err := b.svc.CreateTool(ctx, tenantID, tenants.ToolInput{
		UpstreamID: u.ID, Name: "list_things", Method: "GET", PathTemplate: "/things",
		RequiredScopes: []string{tasks.ScopeRead}, Enabled: true,
	})
	require.NoError(t, err)
	return apiFixtures{idp: p.ID, upstream: u.ID, tool: tool.ID}
}

// apiResponse is what a test looks at.
type apiResponse struct {
	status int
	body   string
	header http.Header
}

// do sends a request with key as bearer token ("" for none) and a raw
// body ("" for none). Every response is checked never to carry a secret.
func (b *apiBundle) do(t *testing.T, key, method, path, body string) apiResponse {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, b.url+path, rd)
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := apiResponse{status: resp.StatusCode, body: string(raw), header: resp.Header}
	for _, secret := range []string{apiIdPSecret, apiUpstreamSecret, "client-s3cret"} {
		require.NotContains(t, out.body, secret, "%s %s leaked a secret", method, path)
	}
	if out.status >= 400 {
		apiRequireProblem(t, out)
	}
	return out
}

// apiRequireProblem checks the RFC 9457 shape of an error response.
func apiRequireProblem(t *testing.T, r apiResponse) {
	t.Helper()
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"), r.body)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.body), &m), r.body)
	require.Equal(t, "about:blank", m["type"])
	require.Equal(t, http.StatusText(r.status), m["title"])
	require.EqualValues(t, r.status, m["status"])
	require.NotEmpty(t, m["detail"])
	require.NotEmpty(t, m["request_id"])
}

// apiCase is one request of a table test. Placeholders {name} in path and
// body are replaced by ids saved by earlier rows (save) or given up front.
type apiCase struct {
	name       string
	key        string // "admin" (default), "viewer", "revoked", "none" or a literal key
	method     string
	path       string
	body       string
	wantStatus int
	// wantContains are substrings of the response body.
	wantContains []string
	// wantAbsent are substrings the response body must not have.
	wantAbsent []string
	// wantField is the problem's field.
	wantField string
	// save stores the response's "id" under this placeholder name.
	save string
}

// runSteps runs cases in order (they build on each other).
func (b *apiBundle) runSteps(t *testing.T, tn apiTenant, vars map[string]string, cases []apiCase) {
	t.Helper()
	subst := func(s string) string {
		for k, v := range vars {
			s = strings.ReplaceAll(s, "{"+k+"}", v)
		}
		return s
	}
	for _, tc := range cases {
		key := tn.admin
		switch tc.key {
		case "", "admin":
		case "viewer":
			key = tn.viewer
		case "revoked":
			key = tn.revoked
		case "none":
			key = ""
		default:
			key = tc.key
		}
		r := b.do(t, key, tc.method, subst(tc.path), subst(tc.body))
		require.Equal(t, tc.wantStatus, r.status, "%s: %s %s\n%s", tc.name, tc.method, tc.path, r.body)
		for _, want := range tc.wantContains {
			require.Contains(t, r.body, subst(want), "%s", tc.name)
		}
		for _, absent := range tc.wantAbsent {
			require.NotContains(t, r.body, subst(absent), "%s", tc.name)
		}
		if tc.wantField != "" {
			var p struct{ Field string }
			require.NoError(t, json.Unmarshal([]byte(r.body), &p))
			require.Equal(t, tc.wantField, p.Field, "%s: %s", tc.name, r.body)
		}
		if tc.save != "" {
			var o struct{ ID string }
			require.NoError(t, json.Unmarshal([]byte(r.body), &o), tc.name)
			require.NotEmpty(t, o.ID, tc.name)
			vars[tc.save] = o.ID
		}
	}
}

func TestAPIAuth(t *testing.T) {
	t.Parallel()
	b := setupAPI(t, apiPermissive())
	tn := b.tenant(t)
	fx := b.fixtures(t, tn.id)
	tools := "/api/v1/tools"

	tests := []struct {
		name       string
		header     func(*http.Request)
		wantStatus int
		wantError  string // in WWW-Authenticate
	}{
		{"no key", func(*http.Request) {}, 401, ""},
		{"basic auth", func(r *http.Request) { r.SetBasicAuth("x", tn.admin) }, 401, `error="invalid_request"`},
		{"malformed key", func(r *http.Request) { r.Header.Set("Authorization", "Bearer not-a-key") }, 401, `error="invalid_token"`},
		{"unknown key", func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer lsk_"+strings.ReplaceAll(tn.id.String(), "-", "")+"_forged")
		}, 401, `error="invalid_token"`},
		{"unknown tenant", func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer lsk_"+strings.ReplaceAll(uuid.NewString(), "-", "")+"_forged")
		}, 401, `error="invalid_token"`},
		{"revoked key", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tn.revoked) }, 401, `error="invalid_token"`},
		{"key in query", func(r *http.Request) {
			r.URL.RawQuery = url.Values{"api_key": {tn.admin}, "access_token": {tn.admin}}.Encode()
		}, 401, ""},
		{"key in cookie", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "api_key", Value: tn.admin}) }, 401, ""},
		{"two authorization headers", func(r *http.Request) {
			r.Header.Add("Authorization", "Bearer "+tn.admin)
			r.Header.Add("Authorization", "Bearer "+tn.admin)
		}, 401, `error="invalid_request"`},
		{"admin key", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tn.admin) }, 200, ""},
		{"scheme is case-insensitive", func(r *http.Request) { r.Header.Set("Authorization", "bearer "+tn.viewer) }, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest("GET", b.url+tools, nil)
			require.NoError(t, err)
			tt.header(req)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, tt.wantStatus, resp.StatusCode, string(body))
			if tt.wantStatus == 401 {
				apiRequireProblem(t, apiResponse{status: 401, body: string(body), header: resp.Header})
				ch := resp.Header.Get("WWW-Authenticate")
				require.True(t, strings.HasPrefix(ch, `Bearer realm="locksmith-api"`), ch)
				require.Contains(t, ch, tt.wantError)
				for _, key := range []string{tn.admin, tn.viewer, tn.revoked} {
					require.NotContains(t, string(body), key)
				}
			}
		})
	}

	// A viewer key reads everything and changes nothing.
	vars := map[string]string{"idp": fx.idp.String(), "upstream": fx.upstream.String(), "tool": fx.tool.String()}
	var cases []apiCase
	for _, p := range []string{"/api/v1/idps", "/api/v1/idps/{idp}", "/api/v1/upstreams", "/api/v1/upstreams/{upstream}",
		"/api/v1/tools", "/api/v1/tools/{tool}", "/api/v1/presets"} {
		cases = append(cases, apiCase{name: "viewer reads " + p, key: "viewer", method: "GET", path: p, wantStatus: 200})
	}
	for _, c := range []struct{ method, path string }{
		{"POST", "/api/v1/idps"}, {"PATCH", "/api/v1/idps/{idp}"}, {"DELETE", "/api/v1/idps/{idp}"},
		{"POST", "/api/v1/idps/check"}, {"POST", "/api/v1/idps/{idp}/recheck"},
		{"POST", "/api/v1/upstreams"}, {"PATCH", "/api/v1/upstreams/{upstream}"}, {"DELETE", "/api/v1/upstreams/{upstream}"},
		{"POST", "/api/v1/upstreams/discover"},
		{"POST", "/api/v1/tools"}, {"PATCH", "/api/v1/tools/{tool}"}, {"DELETE", "/api/v1/tools/{tool}"},
		{"POST", "/api/v1/tools/import"},
	} {
		cases = append(cases, apiCase{name: "viewer can't " + c.method + " " + c.path, key: "viewer", method: c.method,
			path: c.path, body: `{"name":"x","enabled":false}`, wantStatus: 403, wantContains: []string{"read-only"}})
	}
	cases = append(cases, apiCase{name: "revoked key on a write", key: "revoked", method: "DELETE", path: "/api/v1/tools/{tool}", wantStatus: 401})
	b.runSteps(t, tn, vars, cases)

	// Nothing changed.
	for _, p := range []string{"/api/v1/idps/" + fx.idp.String(), "/api/v1/upstreams/" + fx.upstream.String(), "/api/v1/tools/" + fx.tool.String()} {
		require.Equal(t, 200, b.do(t, tn.admin, "GET", p, "").status, p)
	}
	// Keys never reach the logs.
	require.NotContains(t, b.logs.String(), tn.admin)
	require.NotContains(t, b.logs.String(), tn.viewer)
}

func TestAPIIdPs(t *testing.T) {
	t.Parallel()
	b := setupAPI(t, apiPermissive())
	tn := b.tenant(t)
	demo := idp.NewTestServer(t)
	vars := map[string]string{"issuer": demo.URL()}
	b.runSteps(t, tn, vars, []apiCase{
		{name: "empty list", method: "GET", path: "/api/v1/idps", wantStatus: 200, wantContains: []string{`"items":[]`}},
		{name: "unknown field", method: "POST", path: "/api/v1/idps", body: `{"issuer":"{issuer}","isuser":"x"}`, wantStatus: 400, wantField: "isuser", wantContains: []string{"unknown field"}},
		{name: "wrong type", method: "POST", path: "/api/v1/idps", body: `{"issuer":42}`, wantStatus: 400, wantField: "issuer", wantContains: []string{"issuer must be a string"}},
		{name: "wrong nested type", method: "POST", path: "/api/v1/idps", body: `{"issuer":"{issuer}","claims":{"subject":["sub"]}}`, wantStatus: 400, wantField: "claims.subject"},
		{name: "wrong list type", method: "POST", path: "/api/v1/idps", body: `{"issuer":"{issuer}","required_scopes":"mcp"}`, wantStatus: 400, wantField: "required_scopes", wantContains: []string{"an array"}},
		{name: "not an object", method: "POST", path: "/api/v1/idps", body: `["x"]`, wantStatus: 400},
		{name: "missing issuer", method: "POST", path: "/api/v1/idps", body: `{}`, wantStatus: 400, wantField: "issuer"},
		{name: "bad preset", method: "POST", path: "/api/v1/idps", body: `{"issuer":"{issuer}","preset":"nope"}`, wantStatus: 400, wantField: "preset"},
		{name: "bad claim", method: "POST", path: "/api/v1/idps", body: `{"issuer":"{issuer}","claims":{"subject":"a b"}}`, wantStatus: 400, wantField: "claims.subject"},
		{name: "secret without client id", method: "POST", path: "/api/v1/idps", body: `{"issuer":"{issuer}","client_secret":"client-s3cret"}`, wantStatus: 400, wantField: "client_id"},
		{name: "check live", method: "POST", path: "/api/v1/idps/check", body: `{"issuer":"{issuer}"}`, wantStatus: 200, wantContains: []string{`"ok":true`, `"key_count":`, `"jwks_uri":"{issuer}`}},
		{name: "check a wrong issuer", method: "POST", path: "/api/v1/idps/check", body: `{"issuer":"{issuer}/other"}`, wantStatus: 200, wantContains: []string{`"ok":false`}},
		{name: "create", method: "POST", path: "/api/v1/idps", save: "id", wantStatus: 201,
			body:         `{"issuer":"{issuer}","preset":"generic","client_id":"locksmith","client_secret":"client-s3cret","required_scopes":["openid"]}`,
			wantContains: []string{`"check_ok":true`, `"client_secret_set":true`, `"issuer":"{issuer}"`, `"required_scopes":["openid"]`, `"subject":"sub"`}},
		{name: "only one", method: "POST", path: "/api/v1/idps", body: `{"issuer":"{issuer}"}`, wantStatus: 409, wantContains: []string{"PATCH /api/v1/idps/{id}"}},
		{name: "list", method: "GET", path: "/api/v1/idps", wantStatus: 200, wantContains: []string{`"id":"{id}"`}},
		{name: "get", method: "GET", path: "/api/v1/idps/{id}", wantStatus: 200, wantContains: []string{`"client_secret_set":true`}},
		{name: "patch keeps absent fields", method: "PATCH", path: "/api/v1/idps/{id}", body: `{"audience":"https://mcp.example.com","claims":{"email":"upn"}}`, wantStatus: 200,
			wantContains: []string{`"audience":"https://mcp.example.com"`, `"issuer":"{issuer}"`, `"client_secret_set":true`, `"client_id":"locksmith"`, `"email":"upn"`, `"subject":"sub"`, `"required_scopes":["openid"]`}},
		{name: "patch validates", method: "PATCH", path: "/api/v1/idps/{id}", body: `{"audience":"has space"}`, wantStatus: 400, wantField: "audience"},
		{name: "patch unknown field", method: "PATCH", path: "/api/v1/idps/{id}", body: `{"client_secret_set":false}`, wantStatus: 400, wantField: "client_secret_set"},
		{name: "patch removes the secret", method: "PATCH", path: "/api/v1/idps/{id}", body: `{"client_secret":""}`, wantStatus: 200, wantContains: []string{`"client_secret_set":false`, `"audience":"https://mcp.example.com"`}},
		{name: "recheck", method: "POST", path: "/api/v1/idps/{id}/recheck", wantStatus: 200, wantContains: []string{`"ok":true`}},
		{name: "wrong id", method: "GET", path: "/api/v1/idps/" + uuid.NewString(), wantStatus: 404},
		{name: "malformed id", method: "GET", path: "/api/v1/idps/nope", wantStatus: 404},
		{name: "delete", method: "DELETE", path: "/api/v1/idps/{id}", wantStatus: 204},
		{name: "gone", method: "GET", path: "/api/v1/idps/{id}", wantStatus: 404},
		{name: "delete again", method: "DELETE", path: "/api/v1/idps/{id}", wantStatus: 404},
		{name: "empty again", method: "GET", path: "/api/v1/idps", wantStatus: 200, wantContains: []string{`"items":[]`}},
	})
}

func TestAPIUpstreams(t *testing.T) {
	t.Parallel()
	b := setupAPI(t, apiPermissive())
	tn := b.tenant(t)
	acme, err := tasks.New(tasks.Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, acme.Start("127.0.0.1:0"))
	t.Cleanup(func() { _ = acme.Close(context.Background()) })
	vars := map[string]string{"acme": acme.URL()}
	b.runSteps(t, tn, vars, []apiCase{
		{name: "empty", method: "GET", path: "/api/v1/upstreams", wantStatus: 200, wantContains: []string{`"items":[]`, `"next_cursor":""`}},
		{name: "discover", method: "POST", path: "/api/v1/upstreams/discover", body: `{"issuer":"{acme}"}`, wantStatus: 200,
			wantContains: []string{`"authorize_url":"{acme}/authorize"`, `"token_url":"{acme}/token"`, `"pkce":true`}},
		{name: "discover nothing", method: "POST", path: "/api/v1/upstreams/discover", body: `{"issuer":"http://127.0.0.1:1"}`, wantStatus: 400, wantField: "issuer"},
		{name: "unknown field", method: "POST", path: "/api/v1/upstreams", body: `{"slug":"acme","base_uri":"x"}`, wantStatus: 400, wantField: "base_uri"},
		{name: "wrong type", method: "POST", path: "/api/v1/upstreams", body: `{"slug":"acme","pkce":"yes"}`, wantStatus: 400, wantField: "pkce", wantContains: []string{"true or false"}},
		{name: "wrong map type", method: "POST", path: "/api/v1/upstreams", body: `{"slug":"acme","auth_params":{"a":1}}`, wantStatus: 400, wantField: "auth_params"},
		{name: "bad slug", method: "POST", path: "/api/v1/upstreams", body: `{"slug":"Acme!","name":"Acme"}`, wantStatus: 400, wantField: "slug"},
		{name: "no client id", method: "POST", path: "/api/v1/upstreams", body: `{"slug":"acme","name":"Acme","base_url":"{acme}","issuer":"{acme}"}`, wantStatus: 400, wantField: "client_id"},
		{name: "create with discovery", method: "POST", path: "/api/v1/upstreams", save: "id", wantStatus: 201,
			body:         `{"slug":"acme","name":"Acme Tasks","base_url":"{acme}","issuer":"{acme}","client_id":"locksmith","client_secret":"client-s3cret","pkce":true}`,
			wantContains: []string{`"slug":"acme"`, `"authorize_url":"{acme}/authorize"`, `"client_secret_set":true`, `"redirect_uri":"` + b.url + `/oauth/callback"`, `"tasks:read"`}},
		{name: "taken slug", method: "POST", path: "/api/v1/upstreams", body: `{"slug":"acme","name":"Again","base_url":"{acme}","auth_mode":"none"}`, wantStatus: 409, wantField: "slug"},
		{name: "create from a preset", method: "POST", path: "/api/v1/upstreams", save: "gh", wantStatus: 201,
			body:         `{"slug":"gh","name":"GitHub","preset":"github","base_url":"{acme}","authorize_url":"{acme}/authorize","token_url":"{acme}/token","client_id":"gh-client"}`,
			wantContains: []string{`"preset":"github"`, `"client_secret_set":false`, `"pkce":true`, `"read:user"`, `"authorize_url":"{acme}/authorize"`}},
		{name: "create without auth", method: "POST", path: "/api/v1/upstreams", save: "plain", wantStatus: 201,
			body: `{"slug":"plain","name":"Plain","base_url":"{acme}","auth_mode":"none"}`},
		{name: "get", method: "GET", path: "/api/v1/upstreams/{id}", wantStatus: 200, wantContains: []string{`"name":"Acme Tasks"`}},
		{name: "patch keeps absent fields", method: "PATCH", path: "/api/v1/upstreams/{id}", body: `{"name":"Acme Renamed","revoke_after_use":true}`, wantStatus: 200,
			wantContains: []string{`"name":"Acme Renamed"`, `"revoke_after_use":true`, `"pkce":true`, `"client_secret_set":true`, `"token_url":"{acme}/token"`}},
		{name: "patch away the revocation endpoint revoke after use needs", method: "PATCH", path: "/api/v1/upstreams/{id}", body: `{"revocation_url":""}`, wantStatus: 400,
			wantField: "revoke_after_use", wantContains: []string{"needs a revocation endpoint"}},
		{name: "revoke after use without a revocation endpoint", method: "POST", path: "/api/v1/upstreams", wantStatus: 400, wantField: "revoke_after_use",
			body:         `{"slug":"single","name":"Single","base_url":"{acme}","authorize_url":"{acme}/authorize","token_url":"{acme}/token","client_id":"locksmith","revoke_after_use":true}`,
			wantContains: []string{"needs a revocation endpoint"}},
		{name: "patch validates", method: "PATCH", path: "/api/v1/upstreams/{id}", body: `{"base_url":"ftp://x"}`, wantStatus: 400, wantField: "base_url"},
		{name: "patch to a taken slug", method: "PATCH", path: "/api/v1/upstreams/{id}", body: `{"slug":"plain"}`, wantStatus: 409, wantField: "slug"},
		{name: "first page", method: "GET", path: "/api/v1/upstreams?limit=2", wantStatus: 200, wantContains: []string{`"slug":"acme"`, `"slug":"gh"`, `"next_cursor":"Z2g"`}},
		{name: "second page", method: "GET", path: "/api/v1/upstreams?limit=2&cursor=Z2g", wantStatus: 200, wantContains: []string{`"slug":"plain"`, `"next_cursor":""`}},
		{name: "bad limit", method: "GET", path: "/api/v1/upstreams?limit=0", wantStatus: 400, wantField: "limit"},
		{name: "bad cursor", method: "GET", path: "/api/v1/upstreams?cursor=!!!", wantStatus: 400, wantField: "cursor"},
		{name: "delete", method: "DELETE", path: "/api/v1/upstreams/{gh}", wantStatus: 204},
		{name: "gone", method: "GET", path: "/api/v1/upstreams/{gh}", wantStatus: 404},
		{name: "patch gone", method: "PATCH", path: "/api/v1/upstreams/{gh}", body: `{"name":"x"}`, wantStatus: 404},
	})
}

func TestAPITools(t *testing.T) {
	t.Parallel()
	b := setupAPI(t, apiPermissive())
	tn := b.tenant(t)
	fx := b.fixtures(t, tn.id)
	vars := map[string]string{"up": fx.upstream.String(), "fixture_tool": fx.tool.String()}
	schema := `{"type":"object","properties":{"id":{"type":"string"},"title":{"type":"string"}},"required":["id"]}`
	b.runSteps(t, tn, vars, []apiCase{
		{name: "list", method: "GET", path: "/api/v1/tools", wantStatus: 200, wantContains: []string{`"name":"list_things"`, `"upstream_slug":"fixture"`}},
		{name: "unknown field", method: "POST", path: "/api/v1/tools", body: `{"upstream_id":"{up}","nam":"x"}`, wantStatus: 400, wantField: "nam"},
		{name: "wrong type", method: "POST", path: "/api/v1/tools", body: `{"upstream_id":"{up}","approvals_required":"two"}`, wantStatus: 400, wantField: "approvals_required", wantContains: []string{"an integer"}},
		{name: "bad upstream id", method: "POST", path: "/api/v1/tools", body: `{"upstream_id":"nope"}`, wantStatus: 400, wantField: "upstream_id"},
		{name: "unknown upstream", method: "POST", path: "/api/v1/tools", body: `{"upstream_id":"` + uuid.NewString() + `","name":"x","method":"GET","path_template":"/x"}`, wantStatus: 404, wantField: "upstream_id"},
		{name: "bad path", method: "POST", path: "/api/v1/tools", body: `{"upstream_id":"{up}","name":"get_thing","method":"GET","path_template":"/things/{id}"}`, wantStatus: 400, wantField: "path_template"},
		{name: "scope not offered", method: "POST", path: "/api/v1/tools", body: `{"upstream_id":"{up}","name":"x","method":"GET","path_template":"/x","required_scopes":["admin"]}`, wantStatus: 400, wantField: "required_scopes"},
		{name: "schema not an object", method: "POST", path: "/api/v1/tools", body: `{"upstream_id":"{up}","name":"x","method":"GET","path_template":"/x","input_schema":{"type":"string"}}`, wantStatus: 400, wantField: "input_schema"},
		{name: "create", method: "POST", path: "/api/v1/tools", save: "tool", wantStatus: 201,
			body:         `{"upstream_id":"{up}","name":"update_thing","method":"patch","path_template":"/things/{id}","body_params":["title"],"input_schema":` + schema + `,"required_scopes":["tasks:write"],"approvals_required":2}`,
			wantContains: []string{`"method":"PATCH"`, `"risk":"write"`, `"enabled":true`, `"approvals_required":2`, `"body_params":["title"]`, `"input_schema":{"type":"object"`}},
		{name: "taken name", method: "POST", path: "/api/v1/tools", body: `{"upstream_id":"{up}","name":"update_thing","method":"GET","path_template":"/x"}`, wantStatus: 409, wantField: "name"},
		{name: "get", method: "GET", path: "/api/v1/tools/{tool}", wantStatus: 200, wantContains: []string{`"name":"update_thing"`}},
		{name: "patch keeps absent fields", method: "PATCH", path: "/api/v1/tools/{tool}", body: `{"enabled":false,"risk":"destructive"}`, wantStatus: 200,
			wantContains: []string{`"enabled":false`, `"risk":"destructive"`, `"path_template":"/things/{id}"`, `"approvals_required":2`, `"required_scopes":["tasks:write"]`}},
		{name: "patch null approvals means the default", method: "PATCH", path: "/api/v1/tools/{tool}", body: `{"approvals_required":null}`, wantStatus: 200, wantContains: []string{`"approvals_required":null`, `"enabled":false`}},
		{name: "patch validates", method: "PATCH", path: "/api/v1/tools/{tool}", body: `{"query_params":["nope"]}`, wantStatus: 400, wantField: "query_params"},
		{name: "patch to a taken name", method: "PATCH", path: "/api/v1/tools/{tool}", body: `{"name":"list_things"}`, wantStatus: 409, wantField: "name"},
		{name: "filter by upstream", method: "GET", path: "/api/v1/tools?upstream_id={up}", wantStatus: 200, wantContains: []string{`"update_thing"`, `"list_things"`}},
		{name: "filter by another upstream", method: "GET", path: "/api/v1/tools?upstream_id=" + uuid.NewString(), wantStatus: 200, wantContains: []string{`"items":[]`}},
		{name: "first page", method: "GET", path: "/api/v1/tools?limit=1", wantStatus: 200, wantContains: []string{`"list_things"`, `"next_cursor":"bGlzdF90aGluZ3M"`}},
		{name: "second page", method: "GET", path: "/api/v1/tools?limit=1&cursor=bGlzdF90aGluZ3M", wantStatus: 200, wantContains: []string{`"update_thing"`, `"next_cursor":"dXBkYXRlX3RoaW5n"`}},
		{name: "last page", method: "GET", path: "/api/v1/tools?limit=1&cursor=dXBkYXRlX3RoaW5n", wantStatus: 200, wantContains: []string{`"items":[]`, `"next_cursor":""`}},
		{name: "delete", method: "DELETE", path: "/api/v1/tools/{tool}", wantStatus: 204},
		{name: "gone", method: "GET", path: "/api/v1/tools/{tool}", wantStatus: 404},
		{name: "deleting the upstream deletes its tools", method: "DELETE", path: "/api/v1/upstreams/{up}", wantStatus: 204},
		{name: "tool gone with it", method: "GET", path: "/api/v1/tools/{fixture_tool}", wantStatus: 404},
	})
}

func TestAPIImport(t *testing.T) {
	t.Parallel()
	b := setupAPI(t, apiPermissive())
	tn := b.tenant(t)
	fx := b.fixtures(t, tn.id) // offers tasks:read and tasks:write, not tasks:delete
	acme, err := tasks.New(tasks.Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, acme.Start("127.0.0.1:0"))
	t.Cleanup(func() { _ = acme.Close(context.Background()) })
	up, err := b.svc.CreateUpstream(context.Background(), tn.id, tenants.UpstreamInput{
		Slug: "acme", Name: "Acme Tasks", BaseURL: acme.URL(), AuthMode: tenants.AuthNone,
		ScopesOffered: tasks.SupportedScopes(),
	})
	require.NoError(t, err)
	doc := string(tasks.OpenAPIDocument(acme.URL()))
	docString, err := json.Marshal(doc)
	require.NoError(t, err)
	vars := map[string]string{"fixture": fx.upstream.String(), "acme_id": up.ID.String(), "acme": acme.URL()}

	b.runSteps(t, tn, vars, []apiCase{
		{name: "no source", method: "POST", path: "/api/v1/tools/import", body: `{"upstream_id":"{acme_id}"}`, wantStatus: 400, wantField: "url"},
		{name: "both sources", method: "POST", path: "/api/v1/tools/import", body: `{"upstream_id":"{acme_id}","url":"{acme}/openapi.json","document":{}}`, wantStatus: 400, wantField: "document"},
		{name: "no upstream", method: "POST", path: "/api/v1/tools/import", body: `{"url":"{acme}/openapi.json"}`, wantStatus: 400, wantField: "upstream_id"},
		{name: "unknown field", method: "POST", path: "/api/v1/tools/import", body: `{"upstream_id":"{acme_id}","dryrun":true}`, wantStatus: 400, wantField: "dryrun"},
		{name: "wrong type", method: "POST", path: "/api/v1/tools/import", body: `{"upstream_id":"{acme_id}","dry_run":"yes"}`, wantStatus: 400, wantField: "dry_run"},
		{name: "unreadable document", method: "POST", path: "/api/v1/tools/import", body: `{"upstream_id":"{acme_id}","document":"openapi: [3"}`, wantStatus: 400, wantField: "document"},
		{name: "not a document", method: "POST", path: "/api/v1/tools/import", body: `{"upstream_id":"{acme_id}","document":{"hello":"world"}}`, wantStatus: 400, wantField: "document"},
		{name: "url that fails", method: "POST", path: "/api/v1/tools/import", body: `{"upstream_id":"{acme_id}","url":"{acme}/missing.json"}`, wantStatus: 400, wantField: "url"},
		{name: "dry run from url", method: "POST", path: "/api/v1/tools/import", body: `{"upstream_id":"{acme_id}","url":"{acme}/openapi.json","dry_run":true}`, wantStatus: 200,
			wantContains: []string{`"listTasks"`, `"createTask"`, `"getTask"`, `"updateTask"`, `"deleteTask"`, `"risk":"destructive"`, `"warnings":[]`}},
		{name: "dry run stores nothing", method: "GET", path: "/api/v1/tools?upstream_id={acme_id}", wantStatus: 200, wantContains: []string{`"items":[]`}},
		{name: "select an unknown name", method: "POST", path: "/api/v1/tools/import", body: `{"upstream_id":"{acme_id}","url":"{acme}/openapi.json","select":["nope"]}`, wantStatus: 400, wantField: "select"},
		{name: "a failing import saves nothing", method: "POST", path: "/api/v1/tools/import", body: `{"upstream_id":"{fixture}","document":` + doc + `}`, wantStatus: 400,
			wantField: "required_scopes", wantContains: []string{"deleteTask", "tasks:delete"}},
		{name: "nothing half-saved", method: "GET", path: "/api/v1/tools?upstream_id={fixture}", wantStatus: 200, wantContains: []string{`"list_things"`, `"next_cursor":""`},
			wantAbsent: []string{"listTasks", "createTask"}},
		{name: "select", method: "POST", path: "/api/v1/tools/import", body: `{"upstream_id":"{acme_id}","document":` + string(docString) + `,"select":["listTasks","getTask"]}`, wantStatus: 201,
			wantContains: []string{`"name":"listTasks"`, `"name":"getTask"`, `"upstream_slug":"acme"`}},
		{name: "a name clash saves nothing", method: "POST", path: "/api/v1/tools/import", body: `{"upstream_id":"{acme_id}","url":"{acme}/openapi.json"}`, wantStatus: 409, wantField: "name"},
		{name: "still two", method: "GET", path: "/api/v1/tools?upstream_id={acme_id}", wantStatus: 200, wantContains: []string{`"listTasks"`, `"getTask"`, `"next_cursor":""`},
			wantAbsent: []string{"createTask", "updateTask", "deleteTask"}},
		{name: "the rest", method: "POST", path: "/api/v1/tools/import", body: `{"upstream_id":"{acme_id}","url":"{acme}/openapi.json","select":["createTask","updateTask","deleteTask"]}`, wantStatus: 201,
			wantContains: []string{`"createTask"`, `"updateTask"`, `"deleteTask"`}},
	})
	r := b.do(t, tn.admin, "GET", "/api/v1/tools?upstream_id="+up.ID.String(), "")
	var page apiToolPage
	require.NoError(t, json.Unmarshal([]byte(r.body), &page))
	require.Len(t, page.Items, 5)
}

// TestAPITenantIsolation: tenant A's admin key gets 404 for every one of
// tenant B's objects, whatever it tries, and B's objects are unchanged.
func TestAPITenantIsolation(t *testing.T) {
	t.Parallel()
	b := setupAPI(t, apiPermissive())
	ta, tb := b.tenant(t), b.tenant(t)
	fa, fb := b.fixtures(t, ta.id), b.fixtures(t, tb.id)
	vars := map[string]string{"idp": fb.idp.String(), "upstream": fb.upstream.String(), "tool": fb.tool.String(), "own_upstream": fa.upstream.String()}
	var cases []apiCase
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/api/v1/idps/{idp}", ""},
		{"PATCH", "/api/v1/idps/{idp}", `{"audience":"https://evil.example"}`},
		{"POST", "/api/v1/idps/{idp}/recheck", ""},
		{"DELETE", "/api/v1/idps/{idp}", ""},
		{"GET", "/api/v1/upstreams/{upstream}", ""},
		{"PATCH", "/api/v1/upstreams/{upstream}", `{"name":"Taken over"}`},
		{"DELETE", "/api/v1/upstreams/{upstream}", ""},
		{"GET", "/api/v1/tools/{tool}", ""},
		{"PATCH", "/api/v1/tools/{tool}", `{"enabled":false}`},
		{"DELETE", "/api/v1/tools/{tool}", ""},
		{"POST", "/api/v1/tools", `{"upstream_id":"{upstream}","name":"sneaky","method":"GET","path_template":"/x"}`},
		{"PATCH", "/api/v1/tools/{tool}", `{"upstream_id":"{own_upstream}"}`},
		{"POST", "/api/v1/tools/import", `{"upstream_id":"{upstream}","document":{"openapi":"3.0.0","info":{"title":"x","version":"1"},"paths":{}}}`},
		{"POST", "/api/v1/tools/import", `{"upstream_id":"{upstream}","url":"http://127.0.0.1:1/openapi.json"}`},
	} {
		cases = append(cases, apiCase{name: "A: " + c.method + " " + c.path + " " + c.body, method: c.method, path: c.path, body: c.body, wantStatus: 404})
	}
	// A's own tool can't be moved onto B's upstream either.
	cases = append(cases, apiCase{name: "A moves its tool to B's upstream", method: "PATCH", path: "/api/v1/tools/" + fa.tool.String(),
		body: `{"upstream_id":"{upstream}"}`, wantStatus: 404, wantField: "upstream_id"})
	b.runSteps(t, ta, vars, cases)

	// Lists show only A's objects.
	for _, p := range []string{"/api/v1/idps", "/api/v1/upstreams", "/api/v1/tools"} {
		r := b.do(t, ta.admin, "GET", p, "")
		require.Equal(t, 200, r.status)
		for _, id := range []uuid.UUID{fb.idp, fb.upstream, fb.tool} {
			require.NotContains(t, r.body, id.String(), p)
		}
	}
	// B's objects are as they were.
	r := b.do(t, tb.admin, "GET", "/api/v1/idps/"+fb.idp.String(), "")
	require.Equal(t, 200, r.status)
	require.NotContains(t, r.body, "evil")
	r = b.do(t, tb.admin, "GET", "/api/v1/upstreams/"+fb.upstream.String(), "")
	require.Equal(t, 200, r.status)
	require.Contains(t, r.body, `"name":"Fixture"`)
	r = b.do(t, tb.admin, "GET", "/api/v1/tools/"+fb.tool.String(), "")
	require.Equal(t, 200, r.status)
	require.Contains(t, r.body, `"enabled":true`)
	r = b.do(t, tb.admin, "GET", "/api/v1/tools", "")
	require.NotContains(t, r.body, "sneaky")
}

// TestAPIEgressGuard: IdP issuers and upstream URLs on loopback, private,
// link-local and cloud-metadata addresses are refused by a strict service
// and allowed by one that permits private targets.
func TestAPIEgressGuard(t *testing.T) {
	t.Parallel()
	strict := setupAPI(t, egress.Options{})
	loose := setupAPI(t, apiPermissive())
	demo := idp.NewTestServer(t)
	forbidden := []struct{ name, host, reason string }{
		{"loopback", "127.0.0.1", "loopback"},
		{"loopback v6", "[::1]", "loopback"},
		{"private", "10.1.2.3", "private"},
		{"private 192.168", "192.168.0.10", "private"},
		{"link-local", "169.254.10.10", "link-local"},
		{"cloud metadata", "169.254.169.254", "metadata"},
		{"link-local v6", "[fe80::1]", "link-local"},
	}
	for _, f := range forbidden {
		t.Run("strict "+f.name, func(t *testing.T) {
			t.Parallel()
			tn := strict.tenant(t)
			strict.runSteps(t, tn, map[string]string{"h": f.host}, []apiCase{
				{name: "idp", method: "POST", path: "/api/v1/idps", body: `{"issuer":"https://{h}"}`, wantStatus: 400, wantField: "issuer", wantContains: []string{"not allowed", f.reason}},
				{name: "check", method: "POST", path: "/api/v1/idps/check", body: `{"issuer":"https://{h}"}`, wantStatus: 200, wantContains: []string{`"ok":false`, "not allowed"}},
				{name: "upstream base url", method: "POST", path: "/api/v1/upstreams", body: `{"slug":"up","name":"U","auth_mode":"none","base_url":"https://{h}/api"}`, wantStatus: 400, wantField: "base_url", wantContains: []string{"not allowed"}},
				{name: "upstream token url", method: "POST", path: "/api/v1/upstreams", body: `{"slug":"up","name":"U","base_url":"https://93.184.215.14","authorize_url":"https://93.184.215.14/a","token_url":"https://{h}/token","client_id":"c"}`, wantStatus: 400, wantField: "token_url"},
				{name: "upstream discovery", method: "POST", path: "/api/v1/upstreams/discover", body: `{"issuer":"https://{h}"}`, wantStatus: 400, wantField: "issuer", wantContains: []string{"not allowed"}},
				{name: "nothing stored", method: "GET", path: "/api/v1/idps", wantStatus: 200, wantContains: []string{`"items":[]`}},
			})
		})
	}
	t.Run("strict refuses the demo IdP on loopback", func(t *testing.T) {
		t.Parallel()
		tn := strict.tenant(t)
		strict.runSteps(t, tn, map[string]string{"iss": demo.URL()}, []apiCase{
			{name: "idp", method: "POST", path: "/api/v1/idps", body: `{"issuer":"{iss}"}`, wantStatus: 400, wantField: "issuer"},
		})
	})
	t.Run("permissive allows the demo IdP on loopback", func(t *testing.T) {
		t.Parallel()
		tn := loose.tenant(t)
		loose.runSteps(t, tn, map[string]string{"iss": demo.URL()}, []apiCase{
			{name: "idp", method: "POST", path: "/api/v1/idps", body: `{"issuer":"{iss}"}`, wantStatus: 201, wantContains: []string{`"check_ok":true`}},
		})
	})
	for _, host := range []string{"10.1.2.3", "169.254.169.254"} {
		t.Run("permissive stores "+host, func(t *testing.T) {
			t.Parallel()
			tn := loose.tenant(t)
			r := loose.do(t, tn.admin, "POST", "/api/v1/idps", `{"issuer":"http://`+host+`"}`)
			require.Equal(t, 201, r.status, r.body)
			require.NotContains(t, r.body, "not allowed")
			r = loose.do(t, tn.admin, "POST", "/api/v1/upstreams", `{"slug":"up","name":"U","auth_mode":"none","base_url":"http://`+host+`/api"}`)
			require.Equal(t, 201, r.status, r.body)
		})
	}
}

func TestAPIRequests(t *testing.T) {
	t.Parallel()
	b := setupAPI(t, apiPermissive())
	tn := b.tenant(t)
	fx := b.fixtures(t, tn.id)
	tool := "/api/v1/tools/" + fx.tool.String()

	send := func(method, path, contentType string, body io.Reader) apiResponse {
		req, err := http.NewRequest(method, b.url+path, body)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tn.admin)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		r := apiResponse{status: resp.StatusCode, body: string(raw), header: resp.Header}
		if r.status >= 400 {
			apiRequireProblem(t, r)
		}
		return r
	}
	big := `{"description":"` + strings.Repeat("a", DefaultMaxBodyBytes) + `"}`
	tests := []struct {
		name, method, path, contentType, body string
		wantStatus                            int
		wantContains                          string
	}{
		{"body over 1 MiB", "PATCH", tool, "application/json", big, 413, "too large"},
		{"not json", "PATCH", tool, "text/plain", `{"enabled":false}`, 415, "application/json"},
		{"json with charset", "PATCH", tool, "application/json; charset=utf-8", `{"enabled":true}`, 200, `"enabled":true`},
		{"no content type", "PATCH", tool, "", `{"enabled":true}`, 200, `"enabled":true`},
		{"empty body", "PATCH", tool, "application/json", ``, 400, "empty"},
		{"trailing data", "PATCH", tool, "application/json", `{"enabled":true} {}`, 400, "nothing after it"},
		{"syntax error", "PATCH", tool, "application/json", `{"enabled":tru}`, 400, "not valid JSON"},
		{"truncated", "PATCH", tool, "application/json", `{"enabled":`, 400, "ends too early"},
		{"unknown route", "GET", "/api/v1/nope", "", "", 404, "openapi.json"},
		{"unknown version", "GET", "/api/v2/tools", "", "", 404, "no API route"},
		{"method not allowed", "PUT", tool, "application/json", `{}`, 405, "GET, PATCH, DELETE"},
		{"method not allowed on a list", "DELETE", "/api/v1/tools", "", "", 405, "GET, POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			r := send(tt.method, tt.path, tt.contentType, body)
			require.Equal(t, tt.wantStatus, r.status, r.body)
			require.Contains(t, r.body, tt.wantContains)
			if tt.wantStatus == 405 {
				require.NotEmpty(t, r.header.Get("Allow"))
			}
			if tt.wantStatus < 300 {
				require.Equal(t, "no-store", r.header.Get("Cache-Control"))
				require.Equal(t, "application/json", r.header.Get("Content-Type"))
			}
		})
	}
	// The problem of a validation error names the field.
	r := send("PATCH", tool, "application/json", strings.NewReader(`{"method":"TRACE"}`))
	require.Equal(t, 400, r.status)
	var p map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.body), &p))
	require.Equal(t, "method", p["field"])
	require.Equal(t, r.header.Get("X-Request-Id"), p["request_id"])
}

// TestAPIOpenAPIDocument: the document is public, OpenAPI 3.1, describes
// every route (each answering 401 without a key), resolves all its
// references, and Locksmith's own importer reads it.
func TestAPIOpenAPIDocument(t *testing.T) {
	t.Parallel()
	b := setupAPI(t, apiPermissive())
	r := b.do(t, "", "GET", "/api/v1/openapi.json", "")
	require.Equal(t, 200, r.status)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.body), &doc))
	require.Equal(t, "3.1.0", doc["openapi"])
	require.Equal(t, b.url, doc["servers"].([]any)[0].(map[string]any)["url"])
	schemes := doc["components"].(map[string]any)["securitySchemes"].(map[string]any)
	require.Equal(t, "bearer", schemes["apiKey"].(map[string]any)["scheme"])

	paths := doc["paths"].(map[string]any)
	documented := 0
	for _, rt := range (&Server{}).apiRouteTable() {
		item, ok := paths[rt.path].(map[string]any)
		require.True(t, ok, "path %s missing", rt.path)
		op, ok := item[strings.ToLower(rt.method)].(map[string]any)
		require.True(t, ok, "%s %s missing", rt.method, rt.path)
		require.NotEmpty(t, op["operationId"])
		require.Contains(t, op["responses"], "401")
		documented++
	}
	ops := 0
	idRE := regexp.MustCompile(`\{id\}`)
	for path, item := range paths {
		for method := range item.(map[string]any) {
			ops++
			if path == "/api/v1/openapi.json" {
				continue
			}
			resp := b.do(t, "", strings.ToUpper(method), idRE.ReplaceAllString(path, uuid.NewString()), "")
			require.Equal(t, 401, resp.status, "%s %s", method, path)
		}
	}
	require.Equal(t, documented+1, ops, "every documented operation is a route")

	// Every $ref resolves.
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if apiSchemaRef, ok := x["$ref"].(string); ok {
				var cur any = doc
				for _, tok := range strings.Split(strings.TrimPrefix(apiSchemaRef, "#/"), "/") {
					m, ok := cur.(map[string]any)
					require.True(t, ok, apiSchemaRef)
					cur, ok = m[tok]
					require.True(t, ok, "unresolved %s", apiSchemaRef)
				}
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(doc)

	// Locksmith imports its own admin API: one tool per authenticated
	// operation, with no operation skipped.
	tn := b.tenant(t)
	up, err := b.svc.CreateUpstream(context.Background(), tn.id, tenants.UpstreamInput{
		Slug: "self", Name: "Locksmith", BaseURL: b.url, AuthMode: tenants.AuthNone,
	})
	require.NoError(t, err)
	preview, warnings, err := b.svc.ImportPreview(context.Background(), tn.id, up.ID, []byte(r.body))
	require.NoError(t, err)
	for _, w := range warnings {
		require.NotContains(t, w, "skipped", w)
	}
	require.Len(t, preview, ops, fmt.Sprint(warnings))
}
