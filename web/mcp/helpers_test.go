package mcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/seal"
	"github.com/locksmithhq/locksmith/tenants/tokena"
	webmcp "github.com/locksmithhq/locksmith/web/mcp"
)

func TestMain(m *testing.M) { os.Exit(sqltest.Main(m)) }

// The endpoint's seams are satisfied by the real pieces.
var (
	_ webmcp.Verifier    = (*tokena.Verifier)(nil)
	_ webmcp.StateSealer = (*seal.Sealer)(nil)
	_ webmcp.Registry    = webmcp.TenantsRegistry{}
	_ webmcp.Broker      = webmcp.ConsentBroker{}
)

// Scopes the tests' IdP registrations require of every MCP request.
const endpointScope = "mcp:tools"

func testLogger() *slog.Logger {
	if os.Getenv("LOCKSMITH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// shared holds what every test's bundle reuses: one database, sealer and
// River inserter per package.
var shared struct {
	once     sync.Once
	err      error
	db       *lsql.DB
	sealer   *seal.Sealer
	egress   *egress.Client
	inserter *river.Client[pgx.Tx]
}

func sharedDeps(t *testing.T) {
	t.Helper()
	db := sqltest.DB(t)
	shared.once.Do(func() {
		key, err := seal.GenerateMasterKey("test")
		if err != nil {
			shared.err = err
			return
		}
		mk, err := seal.ParseMasterKeys(key)
		if err != nil {
			shared.err = err
			return
		}
		shared.db = db
		if shared.sealer, shared.err = seal.New(db, mk); shared.err != nil {
			return
		}
		if shared.egress, shared.err = egress.New(egress.Options{AllowPrivate: true, Timeout: 5 * time.Second}); shared.err != nil {
			return
		}
		shared.inserter, shared.err = river.NewClient(riverpgxv5.New(db.Pool()), &river.Config{Logger: testLogger()})
	})
	require.NoError(t, shared.err)
}

// testBundle is one Locksmith endpoint on port 0 with two tenants: A (the
// demo IdP, Acme Tasks and its tools) and B (its own IdP), plus everything
// the tests reach into.
type testBundle struct {
	base     string
	srv      *httptest.Server
	handler  *webmcp.Handler
	svc      *tenants.Service
	vault    *consent.Vault
	idpA     *idp.IdP
	idpB     *idp.IdP
	acme     *tasks.Server
	acmeURL  string
	tenantA  tenants.Tenant
	tenantB  tenants.Tenant
	upA      tenants.Upstream
	resource string // tenant A's MCP URL
	resB     string // tenant B's MCP URL
}

type setupOpts struct {
	configure func(*webmcp.Config)
	// serve wraps the handler the test server serves (e.g. in web.Server).
	serve func(b *testBundle) http.Handler
}

// setup builds a bundle. Every call gets fresh tenants, IdPs and upstreams.
func setup(t *testing.T, opts ...setupOpts) *testBundle {
	t.Helper()
	sharedDeps(t)
	ctx := context.Background()
	b := &testBundle{}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b.base = "http://" + l.Addr().String()

	b.svc, err = tenants.New(tenants.Config{DB: shared.db, Sealer: shared.sealer, Egress: shared.egress, Logger: testLogger(), BaseURL: b.base})
	require.NoError(t, err)
	b.vault, err = consent.NewVault(consent.VaultConfig{DB: shared.db, Sealer: shared.sealer, Inserter: shared.inserter, Logger: testLogger()})
	require.NoError(t, err)
	slugs := map[uuid.UUID]string{}
	var slugMu sync.Mutex
	broker, err := consent.NewBroker(consent.BrokerConfig{
		Vault: b.vault, Upstreams: b.svc, Egress: shared.egress, Logger: testLogger(),
		ConsentURL: func(_ context.Context, tenantID uuid.UUID, up tenants.Upstream, scopes []string) string {
			slugMu.Lock()
			defer slugMu.Unlock()
			return consent.ConsentURL(b.base, slugs[tenantID], up.Slug, scopes)
		},
	})
	require.NoError(t, err)

	b.idpA = idp.NewTestServer(t)
	b.idpB = idp.NewTestServer(t)
	b.acme, err = tasks.New(tasks.Config{Logger: testLogger()})
	require.NoError(t, err)
	require.NoError(t, b.acme.Start("127.0.0.1:0"))
	t.Cleanup(func() { _ = b.acme.Close(context.Background()) })
	b.acmeURL = b.acme.URL()

	b.tenantA = newTenant(t, "a")
	b.tenantB = newTenant(t, "b")
	slugMu.Lock()
	slugs[b.tenantA.ID], slugs[b.tenantB.ID] = b.tenantA.Slug, b.tenantB.Slug
	slugMu.Unlock()
	b.resource = b.base + "/t/" + b.tenantA.Slug + "/mcp"
	b.resB = b.base + "/t/" + b.tenantB.Slug + "/mcp"
	for _, x := range []struct {
		tenant tenants.Tenant
		issuer string
	}{{b.tenantA, b.idpA.URL()}, {b.tenantB, b.idpB.URL()}} {
		_, err := b.svc.SaveIdP(ctx, x.tenant.ID, tenants.IdPInput{Issuer: x.issuer, RequiredScopes: []string{endpointScope}})
		require.NoError(t, err)
	}
	secret := tasks.DefaultClientSecret
	b.upA, err = b.svc.CreateUpstream(ctx, b.tenantA.ID, tenants.UpstreamInput{
		Slug: "acme-tasks", Name: "Acme Tasks", Kind: tenants.UpstreamREST, BaseURL: b.acmeURL, AuthMode: tenants.AuthOAuth2,
		AuthorizeURL: b.acme.AuthURL(), TokenURL: b.acme.TokenURL(), RevocationURL: b.acme.RevocationURL(),
		ClientID: tasks.DefaultClientID, ClientSecret: &secret, ScopesOffered: tasks.SupportedScopes(), PKCE: true,
	})
	require.NoError(t, err)
	b.addTool(t, b.tenantA.ID, tenants.ToolInput{UpstreamID: b.upA.ID, Name: "list_tasks", Title: "List tasks", Description: "Lists your tasks.",
		Method: "GET", PathTemplate: "/tasks", RequiredScopes: []string{tasks.ScopeRead}, Risk: tenants.RiskRead, Enabled: true})
	b.addTool(t, b.tenantA.ID, tenants.ToolInput{UpstreamID: b.upA.ID, Name: "create_task", Title: "Create a task",
		Method: "POST", PathTemplate: "/tasks", BodyParams: []string{"title"},
		InputSchema:    json.RawMessage(`{"type":"object","properties":{"title":{"type":"string"}},"required":["title"]}`),
		RequiredScopes: []string{tasks.ScopeWrite}, Risk: tenants.RiskWrite, Enabled: true})
	b.addTool(t, b.tenantA.ID, tenants.ToolInput{UpstreamID: b.upA.ID, Name: "get_task", Method: "GET", PathTemplate: "/tasks/{id}",
		InputSchema:    json.RawMessage(`{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}`),
		RequiredScopes: []string{tasks.ScopeRead}, Risk: tenants.RiskRead, Enabled: true})
	b.addTool(t, b.tenantA.ID, tenants.ToolInput{UpstreamID: b.upA.ID, Name: "delete_task", Method: "DELETE", PathTemplate: "/tasks/{id}",
		InputSchema:    json.RawMessage(`{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}`),
		RequiredScopes: []string{tasks.ScopeDelete}, Risk: tenants.RiskDestructive, Enabled: true})
	b.addTool(t, b.tenantA.ID, tenants.ToolInput{UpstreamID: b.upA.ID, Name: "archived_tool", Method: "GET", PathTemplate: "/tasks",
		RequiredScopes: []string{tasks.ScopeRead}, Risk: tenants.RiskRead, Enabled: false})

	verifier, err := tokena.New(tokena.Config{HTTP: shared.egress.HTTPClient(), Logger: testLogger()})
	require.NoError(t, err)
	baseURL, err := url.Parse(b.base)
	require.NoError(t, err)
	cfg := webmcp.Config{
		BaseURL: baseURL, Logger: testLogger(), Registry: webmcp.TenantsRegistry{Service: b.svc}, Verifier: verifier,
		HTTPClient: shared.egress.HTTPClient(), Broker: webmcp.ConsentBroker{Broker: broker}, Sealer: shared.sealer,
		TenantTTL: 50 * time.Millisecond,
	}
	for _, o := range opts {
		if o.configure != nil {
			o.configure(&cfg)
		}
	}
	b.handler, err = webmcp.New(cfg)
	require.NoError(t, err)
	var served http.Handler = b.handler
	for _, o := range opts {
		if o.serve != nil {
			served = o.serve(b)
		}
	}
	b.srv = httptest.NewUnstartedServer(served)
	b.srv.Listener.Close()
	b.srv.Listener = l
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	return b
}

func newTenant(t *testing.T, prefix string) tenants.Tenant {
	t.Helper()
	id := uuid.New()
	slug := prefix + "-" + strings.ReplaceAll(id.String(), "-", "")[:12]
	require.NoError(t, shared.db.InTx(context.Background(), func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $3)", id, slug, "Tenant "+strings.ToUpper(prefix))
		return err
	}))
	return tenants.Tenant{ID: id, Slug: slug, Name: "Tenant " + strings.ToUpper(prefix)}
}

func (b *testBundle) addTool(t *testing.T, tenantID uuid.UUID, in tenants.ToolInput) tenants.Tool {
	t.Helper()
	tl, err := b.svc.CreateTool(context.Background(), tenantID, in)
	require.NoError(t, err)
	return tl
}

// tokenA mints a Token A for tenant A's endpoint (demo engineer, endpoint
// scope) with edits applied.
func (b *testBundle) tokenA(t *testing.T, edit ...func(*idp.MintRequest)) string {
	t.Helper()
	req := idp.MintRequest{User: idp.UsernameEngineer, Audience: []string{b.resource}, Scopes: []string{endpointScope, "openid"}}
	for _, e := range edit {
		e(&req)
	}
	tok, err := b.idpA.MintAccessToken(req)
	require.NoError(t, err)
	return tok
}

// grant connects the demo engineer's Acme Tasks account, as a completed
// consent would, and returns the Token B Acme issued.
func (b *testBundle) grant(t *testing.T, scopes ...string) string {
	t.Helper()
	if len(scopes) == 0 {
		scopes = []string{tasks.ScopeRead, tasks.ScopeWrite}
	}
	resp, err := b.acme.IssueTokens("engineer", tasks.DefaultClientID, scopes)
	require.NoError(t, err)
	user, ok := b.idpA.LookupUser(idp.UsernameEngineer)
	require.True(t, ok)
	_, err = b.vault.SaveGrant(context.Background(), b.tenantA.ID, b.upA.ID,
		consent.User{Issuer: b.idpA.URL(), Subject: user.Subject, Email: user.Email},
		consent.Tokens{AccessToken: resp.AccessToken, RefreshToken: resp.RefreshToken,
			ExpiresAt: time.Now().Add(time.Duration(resp.ExpiresIn) * time.Second), Scopes: strings.Fields(resp.Scope)})
	require.NoError(t, err)
	return resp.AccessToken
}

// rpc posts a raw JSON-RPC body to url with headers and returns the
// response and its body.
func rpc(t *testing.T, method, target, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// sseJSON extracts the JSON-RPC message of an SSE (or plain JSON) answer.
func sseJSON(t *testing.T, body string) map[string]any {
	t.Helper()
	payload := body
	if strings.Contains(body, "data: ") {
		var last string
		for _, line := range strings.Split(body, "\n") {
			if d, ok := strings.CutPrefix(line, "data: "); ok && strings.Contains(d, `"id"`) {
				last = d
			}
		}
		payload = last
	}
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(payload), &m), "body: %s", body)
	return m
}

// bearer is an http.RoundTripper that adds a bearer token, as an MCP
// client configured with a token does.
type bearer struct {
	token string
	base  http.RoundTripper
	mu    sync.Mutex
	seen  []int
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	base := b.base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(r)
	if err == nil {
		b.mu.Lock()
		b.seen = append(b.seen, resp.StatusCode)
		b.mu.Unlock()
	}
	return resp, err
}

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}
