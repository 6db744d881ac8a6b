package mcp_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/tenants"
	webmcp "github.com/locksmithhq/locksmith/web/mcp"
)

// flaky is a REST upstream (auth mode none) whose answers the test picks
// per path, recording what it received.
type flaky struct {
	mu   sync.Mutex
	seen []*http.Request
	body []string
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.seen = append(f.seen, r.Clone(context.Background()))
	f.body = append(f.body, string(b))
	f.mu.Unlock()
	switch r.URL.Path {
	case "/forbidden":
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"message":"only project owners may do that"}`))
	case "/broken":
		w.WriteHeader(http.StatusServiceUnavailable)
	case "/limited":
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
	case "/slow":
		time.Sleep(3 * time.Second)
	case "/invalid":
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = w.Write([]byte(`{"error_description":"due must be a date"}`))
	case "/list":
		_, _ = w.Write([]byte(`[1,2,3]`))
	case "/text":
		_, _ = w.Write([]byte(`plain words`))
	case "/empty":
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "query": r.URL.RawQuery})
	}
}

func TestUpstreamAnswersBecomeActionableToolResults(t *testing.T) {
	t.Parallel()
	f := &flaky{}
	up := httptest.NewServer(f)
	t.Cleanup(up.Close)
	b := setup(t)
	ctx := context.Background()
	reg, err := b.svc.CreateUpstream(ctx, b.tenantA.ID, tenants.UpstreamInput{Slug: "flaky", Name: "Flaky API", BaseURL: up.URL + "/", AuthMode: tenants.AuthNone})
	require.NoError(t, err)
	for _, p := range []string{"forbidden", "broken", "limited", "invalid", "list", "text", "empty"} {
		b.addTool(t, b.tenantA.ID, tenants.ToolInput{UpstreamID: reg.ID, Name: "f_" + p, Method: "GET", PathTemplate: "/" + p, Risk: tenants.RiskRead, Enabled: true})
	}
	b.addTool(t, b.tenantA.ID, tenants.ToolInput{UpstreamID: reg.ID, Name: "f_search", Method: "POST", PathTemplate: "/items/{kind}/search",
		QueryParams: []string{"tag", "limit"}, BodyParams: []string{"filter"},
		InputSchema: json.RawMessage(`{"type":"object","properties":{"kind":{"type":"string"},"tag":{"type":"array"},"limit":{"type":"integer"},"filter":{"type":"object"}},"required":["kind"]}`),
		Risk:        tenants.RiskRead, Enabled: true})
	time.Sleep(60 * time.Millisecond)

	tokenA := b.tokenA(t)
	cs := connect(t, b.resource, tokenA, nil)
	call := func(name string, args map[string]any) *sdk.CallToolResult {
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
		require.NoError(t, err)
		return res
	}
	errOf := func(res *sdk.CallToolResult) map[string]any {
		require.True(t, res.IsError, textOf(res))
		return res.StructuredContent.(map[string]any)["error"].(map[string]any)
	}

	res := call("f_forbidden", nil)
	require.Contains(t, textOf(res), "the upstream refused: your account lacks permission")
	require.Contains(t, textOf(res), "only project owners may do that")
	require.Equal(t, "permission", errOf(res)["kind"])

	res = call("f_broken", nil)
	require.Equal(t, true, errOf(res)["retryable"])
	require.Contains(t, textOf(res), "HTTP 503")

	res = call("f_invalid", nil)
	require.Contains(t, textOf(res), "HTTP 422")
	require.Contains(t, textOf(res), "due must be a date")

	res = call("f_list", nil)
	require.False(t, res.IsError)
	require.Equal(t, map[string]any{"result": []any{1.0, 2.0, 3.0}}, res.StructuredContent)

	res = call("f_text", nil)
	require.False(t, res.IsError)
	require.Equal(t, "plain words", textOf(res))

	res = call("f_empty", nil)
	require.False(t, res.IsError)
	require.Contains(t, textOf(res), "HTTP 204")

	res = call("f_search", map[string]any{"kind": "a b/c", "tag": []any{"x", "y z"}, "limit": 5, "filter": map[string]any{"done": false}})
	require.False(t, res.IsError, textOf(res))
	sc := res.StructuredContent.(map[string]any)
	require.Equal(t, "/items/a b/c/search", sc["path"])
	require.Equal(t, "limit=5&tag=x&tag=y+z", sc["query"])
	f.mu.Lock()
	last := f.seen[len(f.seen)-1]
	require.Equal(t, "/items/a%20b%2Fc/search", last.URL.EscapedPath())
	require.JSONEq(t, `{"filter":{"done":false}}`, f.body[len(f.body)-1])
	for _, r := range f.seen {
		require.Empty(t, r.Header.Get("Authorization"), "no credential for auth mode none, and never Token A")
	}
	f.mu.Unlock()

	res = call("f_search", map[string]any{"kind": "k", "limit": "five"})
	require.Contains(t, textOf(res), `argument "limit" must be of type integer`)

	// A 429 reaches the agent as retryable with the upstream's Retry-After
	// (and does not count against the upstream's circuit: breaker_test.go).
	res = call("f_limited", nil)
	require.Equal(t, true, errOf(res)["retryable"])
	require.EqualValues(t, 7, errOf(res)["retry_after_seconds"])
	require.Contains(t, textOf(res), "HTTP 429")
}

func TestUpstreamTimeoutIsRetryable(t *testing.T) {
	t.Parallel()
	f := &flaky{}
	up := httptest.NewServer(f)
	t.Cleanup(up.Close)
	b := setup(t, setupOpts{configure: func(c *webmcp.Config) { c.HTTPClient = &http.Client{Timeout: 300 * time.Millisecond} }})
	reg, err := b.svc.CreateUpstream(context.Background(), b.tenantA.ID, tenants.UpstreamInput{Slug: "slow", Name: "Slow API", BaseURL: up.URL, AuthMode: tenants.AuthNone})
	require.NoError(t, err)
	b.addTool(t, b.tenantA.ID, tenants.ToolInput{UpstreamID: reg.ID, Name: "s_slow", Method: "GET", PathTemplate: "/slow", Risk: tenants.RiskRead, Enabled: true})
	time.Sleep(60 * time.Millisecond)
	cs := connect(t, b.resource, b.tokenA(t), nil)
	res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "s_slow"})
	require.NoError(t, err)
	require.True(t, res.IsError)
	require.Contains(t, textOf(res), "timeout")
	require.Equal(t, true, res.StructuredContent.(map[string]any)["error"].(map[string]any)["retryable"])
}
