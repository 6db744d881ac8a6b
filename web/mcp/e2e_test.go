package mcp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/idp"
)

// connect opens an MCP client session with the Go SDK client, its HTTP
// client adding the bearer token.
func connect(t *testing.T, endpoint, token string, opts *sdk.ClientOptions) *sdk.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := sdk.NewClient(&sdk.Implementation{Name: "test-agent", Version: "1"}, opts)
	cs, err := c.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: endpoint, HTTPClient: &http.Client{Transport: &bearer{token: token}}, MaxRetries: -1}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

func textOf(res *sdk.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func TestEndToEndWithGoSDKClient(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tokenB := b.grant(t)
	tokenA := b.tokenA(t)
	cs := connect(t, b.resource, tokenA, nil)
	ctx := context.Background()
	t.Logf("negotiated protocol %s", cs.InitializeResult().ProtocolVersion)

	list, err := cs.ListTools(ctx, nil)
	require.NoError(t, err)
	byName := map[string]*sdk.Tool{}
	for _, tl := range list.Tools {
		byName[tl.Name] = tl
	}
	require.Contains(t, byName, "list_tasks")
	require.Contains(t, byName, "create_task")
	require.Contains(t, byName, "delete_task")
	require.NotContains(t, byName, "archived_tool", "disabled tools are not listed")
	require.True(t, byName["list_tasks"].Annotations.ReadOnlyHint)
	require.True(t, *byName["delete_task"].Annotations.DestructiveHint)
	require.False(t, *byName["create_task"].Annotations.DestructiveHint)
	schema, err := json.Marshal(byName["create_task"].InputSchema)
	require.NoError(t, err)
	require.Contains(t, string(schema), `"required":["title"]`)

	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "create_task", Arguments: map[string]any{"title": "Write the quarterly report"}})
	require.NoError(t, err)
	require.False(t, res.IsError, textOf(res))
	created, ok := res.StructuredContent.(map[string]any)
	require.True(t, ok, "structuredContent is an object: %#v", res.StructuredContent)
	require.Equal(t, "Write the quarterly report", created["title"])

	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "get_task", Arguments: map[string]any{"id": created["id"]}})
	require.NoError(t, err)
	require.False(t, res.IsError, textOf(res))
	require.Contains(t, textOf(res), "Write the quarterly report")

	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "list_tasks", Arguments: map[string]any{}})
	require.NoError(t, err)
	require.False(t, res.IsError, textOf(res))
	require.Contains(t, textOf(res), "Write the quarterly report")

	// Acme Tasks saw every call as the engineer, with Token B, never Token A.
	recs := b.acme.Requests()
	require.Len(t, recs, 3)
	for _, r := range recs {
		require.Equal(t, "Bearer "+tokenB, r.Authorization)
		require.NotContains(t, r.Authorization, tokenA)
		require.Equal(t, "engineer", r.Subject)
		require.Less(t, r.Status, 300)
	}
	require.Len(t, b.acme.TasksOf("engineer"), 1)

	// Destructive tools are listed but refused until approvals exist.
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "delete_task", Arguments: map[string]any{"id": created["id"]}})
	require.NoError(t, err)
	require.True(t, res.IsError)
	require.Contains(t, textOf(res), "needs 2 approvals, and this server has no approvals service")
	require.Len(t, b.acme.TasksOf("engineer"), 1)

	// A disabled tool is refused by name; an unknown tool is a clear error.
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "archived_tool"})
	require.NoError(t, err)
	require.True(t, res.IsError)
	require.Contains(t, textOf(res), "disabled")
	_, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "no_such_tool"})
	require.Error(t, err)
	require.Contains(t, err.Error(), `unknown tool "no_such_tool"`)

	// Bad arguments are tool errors the model can act on.
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "create_task", Arguments: map[string]any{}})
	require.NoError(t, err)
	require.True(t, res.IsError)
	require.Contains(t, textOf(res), `missing required argument "title"`)
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "create_task", Arguments: map[string]any{"title": "x", "owner": "someone-else"}})
	require.NoError(t, err)
	require.True(t, res.IsError)
	require.Contains(t, textOf(res), `unknown argument "owner"`)
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "get_task", Arguments: map[string]any{"id": ".."}})
	require.NoError(t, err)
	require.True(t, res.IsError)
	require.Len(t, b.acme.Requests(), 3, "refused calls never reach the upstream")
}

func TestPathArgumentsAreEscaped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.grant(t)
	cs := connect(t, b.resource, b.tokenA(t), nil)
	res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "get_task", Arguments: map[string]any{"id": "1/../../admin?x=1#y"}})
	require.NoError(t, err)
	require.True(t, res.IsError)
	require.Contains(t, textOf(res), "HTTP 404")
	recs := b.acme.Requests()
	require.Len(t, recs, 1)
	require.Equal(t, "/tasks/1/../../admin?x=1#y", recs[0].Path, "the id stays one path segment")
}

func TestConsentLinkBeforeGrant(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tokenA := b.tokenA(t)
	consentURL := b.base + "/t/" + b.tenantA.Slug + "/connect/acme-tasks"

	t.Run("client without URL elicitation gets a tool error with the link", func(t *testing.T) {
		t.Parallel()
		cs := connect(t, b.resource, tokenA, nil)
		res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "list_tasks"})
		require.NoError(t, err)
		require.True(t, res.IsError)
		require.Contains(t, textOf(res), consentURL)
		sc := res.StructuredContent.(map[string]any)["error"].(map[string]any)
		require.Equal(t, "consent_required", sc["kind"])
		require.True(t, strings.HasPrefix(sc["consent_url"].(string), consentURL), sc["consent_url"])
	})

	t.Run("2026-07-28 client with URL elicitation gets an input-required result", func(t *testing.T) {
		t.Parallel()
		var mu sync.Mutex
		var urls []string
		cs := connect(t, b.resource, tokenA, &sdk.ClientOptions{
			Capabilities: &sdk.ClientCapabilities{Elicitation: &sdk.ElicitationCapabilities{URL: &sdk.URLElicitationCapabilities{}}},
			ElicitationHandler: func(_ context.Context, req *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
				mu.Lock()
				defer mu.Unlock()
				urls = append(urls, req.Params.URL)
				return &sdk.ElicitResult{Action: "accept"}, nil
			},
		})
		require.Equal(t, "2026-07-28", cs.InitializeResult().ProtocolVersion)
		res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "list_tasks"})
		require.NoError(t, err)
		mu.Lock()
		require.Len(t, urls, 1, "one elicitation, then the retry gets the link as a tool error")
		require.True(t, strings.HasPrefix(urls[0], consentURL), urls[0])
		mu.Unlock()
		require.True(t, res.IsError)
		require.Contains(t, textOf(res), "still not granted")
	})

	t.Run("2025-11-25 client that declared URL elicitation gets -32042", func(t *testing.T) {
		t.Parallel()
		hdr := map[string]string{"Authorization": "Bearer " + tokenA, "Mcp-Protocol-Version": "2025-11-25"}
		resp, body := rpc(t, http.MethodPost, b.resource, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{"url":{}}},"clientInfo":{"name":"raw","version":"1"}}}`, hdr)
		require.Equal(t, 200, resp.StatusCode, body)
		resp, body = rpc(t, http.MethodPost, b.resource, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_tasks","arguments":{}}}`, hdr)
		require.Equal(t, 200, resp.StatusCode, body)
		m := sseJSON(t, body)
		e := m["error"].(map[string]any)
		require.EqualValues(t, -32042, e["code"])
		el := e["data"].(map[string]any)["elicitations"].([]any)[0].(map[string]any)
		require.Equal(t, "url", el["mode"])
		require.NotEmpty(t, el["elicitationId"])
		require.True(t, strings.HasPrefix(el["url"].(string), consentURL))
	})

	t.Run("2025-06-18 client gets the tool error", func(t *testing.T) {
		t.Parallel()
		hdr := map[string]string{"Authorization": "Bearer " + b.tokenA(t, func(r *idp.MintRequest) { r.Extra = map[string]any{"jti": "other"} }), "Mcp-Protocol-Version": "2025-06-18"}
		resp, body := rpc(t, http.MethodPost, b.resource, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_tasks","arguments":{}}}`, hdr)
		require.Equal(t, 200, resp.StatusCode, body)
		m := sseJSON(t, body)
		res := m["result"].(map[string]any)
		require.Equal(t, true, res["isError"])
		require.Contains(t, body, consentURL)
	})

	t.Run("tampered requestState is refused", func(t *testing.T) {
		t.Parallel()
		hdr := map[string]string{"Authorization": "Bearer " + tokenA, "Mcp-Protocol-Version": "2025-06-18"}
		_, body := rpc(t, http.MethodPost, b.resource, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"list_tasks","arguments":{},"requestState":"s1.AAAA","inputResponses":{}}}`, hdr)
		m := sseJSON(t, body)
		e := m["error"].(map[string]any)
		require.EqualValues(t, -32602, e["code"])
		require.Contains(t, e["message"], "requestState failed verification")
	})

	require.Empty(t, b.acme.Requests(), "nothing reached the upstream without a grant")
}

func TestMissingUpstreamScopesAskForIncrementalConsent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.grant(t, "tasks:read") // no tasks:write
	cs := connect(t, b.resource, b.tokenA(t), nil)
	res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "create_task", Arguments: map[string]any{"title": "x"}})
	require.NoError(t, err)
	require.True(t, res.IsError)
	require.Contains(t, textOf(res), "/connect/acme-tasks?scope=")
	require.Contains(t, textOf(res), "tasks%3Awrite")
	require.Contains(t, textOf(res), "(tasks:write)")
	require.Empty(t, b.acme.Requests())
}

func TestUpstreamRefusesTokenB(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tokenB := b.grant(t)
	cs := connect(t, b.resource, b.tokenA(t), nil)
	// Acme revokes the token family (the user disconnected at Acme).
	req, err := http.NewRequest(http.MethodPost, b.acme.RevocationURL(), strings.NewReader("token="+tokenB))
	require.NoError(t, err)
	req.SetBasicAuth("locksmith", "locksmith-dev-secret")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "list_tasks"})
	require.NoError(t, err)
	require.True(t, res.IsError)
	require.Contains(t, textOf(res), "reconnect Acme Tasks")
	require.Contains(t, textOf(res), "/connect/acme-tasks")
}
