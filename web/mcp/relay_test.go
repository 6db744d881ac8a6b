package mcp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/tenants"
)

// upstreamMCP is an MCP server on a test server that records the
// Authorization header of every request and, when wantToken is set,
// refuses any other with 401.
type upstreamMCP struct {
	url       string
	mu        sync.Mutex
	auths     []string
	wantToken string
}

func (u *upstreamMCP) authorizations() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.auths...)
}

type echoIn struct {
	Text string `json:"text" jsonschema:"what to echo"`
}

type echoOut struct {
	Echo string `json:"echo"`
}

func startUpstreamMCP(t *testing.T, wantToken string) *upstreamMCP {
	t.Helper()
	u := &upstreamMCP{wantToken: wantToken}
	srv := sdk.NewServer(&sdk.Implementation{Name: "upstream", Version: "1"}, nil)
	sdk.AddTool(srv, &sdk.Tool{Name: "echo", Description: "Echoes text."}, func(ctx context.Context, req *sdk.CallToolRequest, in echoIn) (*sdk.CallToolResult, echoOut, error) {
		return nil, echoOut{Echo: in.Text}, nil
	})
	sdk.AddTool(srv, &sdk.Tool{Name: "slow", Description: "Reports progress."}, func(ctx context.Context, req *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, any, error) {
		if tok := req.Params.GetProgressToken(); tok != nil {
			for i := 1; i <= 3; i++ {
				_ = req.Session.NotifyProgress(ctx, &sdk.ProgressNotificationParams{ProgressToken: tok, Progress: float64(i), Total: 3, Message: "step"})
			}
		}
		_ = req.Session.Log(ctx, &sdk.LoggingMessageParams{Level: "info", Data: "slow tool ran"})
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "done"}}}, nil, nil
	})
	yes := true
	sdk.AddTool(srv, &sdk.Tool{Name: "danger", Annotations: &sdk.ToolAnnotations{DestructiveHint: &yes}}, func(ctx context.Context, req *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, any, error) {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "boom"}}}, nil, nil
	})
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return srv }, nil)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := r.Header.Get("Authorization")
		u.mu.Lock()
		u.auths = append(u.auths, a)
		u.mu.Unlock()
		if u.wantToken != "" && a != "Bearer "+u.wantToken {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	u.url = ts.URL + "/mcp"
	return u
}

func TestRelayUpstreamMCPWithoutAuth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	up := startUpstreamMCP(t, "")
	_, err := b.svc.CreateUpstream(context.Background(), b.tenantA.ID, tenants.UpstreamInput{Slug: "tools", Name: "Tool Box", Kind: tenants.UpstreamMCP, BaseURL: up.url, AuthMode: tenants.AuthNone})
	require.NoError(t, err)
	time.Sleep(60 * time.Millisecond) // past the tenant cache TTL

	tokenA := b.tokenA(t)
	var mu sync.Mutex
	var progress []float64
	cs := connect(t, b.resource, tokenA, &sdk.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *sdk.ProgressNotificationClientRequest) {
			mu.Lock()
			defer mu.Unlock()
			progress = append(progress, r.Params.Progress)
		},
	})
	ctx := context.Background()
	list, err := cs.ListTools(ctx, nil)
	require.NoError(t, err)
	names := map[string]*sdk.Tool{}
	for _, tl := range list.Tools {
		names[tl.Name] = tl
	}
	require.Contains(t, names, "tools.echo")
	require.Contains(t, names, "tools.slow")
	require.Contains(t, names, "tools.danger")
	require.Contains(t, names, "list_tasks", "catalog tools are listed alongside")

	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "tools.echo", Arguments: map[string]any{"text": "hello"}})
	require.NoError(t, err)
	require.False(t, res.IsError, textOf(res))
	require.Equal(t, map[string]any{"echo": "hello"}, res.StructuredContent)

	p := &sdk.CallToolParams{Name: "tools.slow", Arguments: map[string]any{}}
	p.SetProgressToken("agent-progress-1")
	res, err = cs.CallTool(ctx, p)
	require.NoError(t, err)
	require.Equal(t, "done", textOf(res))
	// The client handles notifications asynchronously.
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(progress) == 3
	}, 5*time.Second, 10*time.Millisecond, "progress notifications are relayed")
	mu.Lock()
	require.ElementsMatch(t, []float64{1, 2, 3}, progress)
	mu.Unlock()

	// A 2025-11-25 request (log level info by default) gets the upstream's
	// log message and progress on the same response stream.
	_, body := rpc(t, http.MethodPost, b.resource, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"tools.slow","arguments":{},"_meta":{"progressToken":"p-7"}}}`,
		map[string]string{"Authorization": "Bearer " + tokenA, "Mcp-Protocol-Version": "2025-11-25"})
	require.Contains(t, body, `"method":"notifications/progress"`)
	require.Contains(t, body, `"progressToken":"p-7"`)
	require.Contains(t, body, `"method":"notifications/message"`)
	require.Contains(t, body, "slow tool ran")
	require.Contains(t, body, `"done"`)

	// A numeric progress token works too (it arrives as a JSON number).
	_, body = rpc(t, http.MethodPost, b.resource, `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"tools.slow","arguments":{},"_meta":{"progressToken":42}}}`,
		map[string]string{"Authorization": "Bearer " + tokenA, "Mcp-Protocol-Version": "2025-11-25"})
	require.Contains(t, body, `"progressToken":42`)
	require.Contains(t, body, `"done"`)

	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "tools.danger"})
	require.NoError(t, err)
	require.True(t, res.IsError)
	require.Contains(t, textOf(res), "needs 2 approvals")

	_, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "tools.nope"})
	require.NoError(t, err, "an unknown upstream tool is the upstream's error, as a tool error")

	for _, a := range up.authorizations() {
		require.Empty(t, a, "no credential is sent to an auth-mode-none upstream, and never Token A")
	}
}

func TestRelayUpstreamMCPWithTokenB(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, err := b.acme.IssueTokens("engineer", tasks.DefaultClientID, []string{tasks.ScopeRead})
	require.NoError(t, err)
	tokenB := resp.AccessToken
	up := startUpstreamMCP(t, tokenB)
	secret := tasks.DefaultClientSecret
	reg, err := b.svc.CreateUpstream(context.Background(), b.tenantA.ID, tenants.UpstreamInput{Slug: "secure", Name: "Secure Box", Kind: tenants.UpstreamMCP,
		BaseURL: up.url, AuthMode: tenants.AuthOAuth2, AuthorizeURL: b.acme.AuthURL(), TokenURL: b.acme.TokenURL(),
		ClientID: tasks.DefaultClientID, ClientSecret: &secret, ScopesOffered: []string{tasks.ScopeRead}, PKCE: true})
	require.NoError(t, err)
	time.Sleep(60 * time.Millisecond)

	tokenA := b.tokenA(t)
	cs := connect(t, b.resource, tokenA, nil)
	ctx := context.Background()

	// Not connected yet: a connect tool stands in for the upstream's tools.
	list, err := cs.ListTools(ctx, nil)
	require.NoError(t, err)
	var names []string
	for _, tl := range list.Tools {
		names = append(names, tl.Name)
	}
	require.Contains(t, names, "secure.connect")
	require.NotContains(t, names, "secure.echo")
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "secure.connect"})
	require.NoError(t, err)
	require.True(t, res.IsError)
	require.Contains(t, textOf(res), b.base+"/t/"+b.tenantA.Slug+"/connect/secure")
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "secure.echo", Arguments: map[string]any{"text": "x"}})
	require.NoError(t, err)
	require.True(t, res.IsError)
	require.Contains(t, textOf(res), "/connect/secure")
	require.Empty(t, up.authorizations(), "nothing reached the upstream without a grant")

	user, _ := b.idpA.LookupUser(idp.UsernameEngineer)
	_, err = b.vault.SaveGrant(ctx, b.tenantA.ID, reg.ID, consent.User{Issuer: b.idpA.URL(), Subject: user.Subject, Email: user.Email},
		consent.Tokens{AccessToken: tokenB, RefreshToken: resp.RefreshToken, ExpiresAt: time.Now().Add(time.Hour), Scopes: []string{tasks.ScopeRead}})
	require.NoError(t, err)

	list, err = cs.ListTools(ctx, nil)
	require.NoError(t, err)
	names = nil
	for _, tl := range list.Tools {
		names = append(names, tl.Name)
	}
	require.Contains(t, names, "secure.echo")
	require.NotContains(t, names, "secure.connect")
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "secure.echo", Arguments: map[string]any{"text": "with token B"}})
	require.NoError(t, err)
	require.False(t, res.IsError, textOf(res))
	require.Contains(t, textOf(res), "with token B")

	auths := up.authorizations()
	require.NotEmpty(t, auths)
	for _, a := range auths {
		require.Equal(t, "Bearer "+tokenB, a)
		require.False(t, strings.Contains(a, tokenA), "Token A never goes upstream")
	}
}
