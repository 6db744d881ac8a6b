package mcp_test

import (
	"context"
	"encoding/json"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/audit"
)

// TestAuditBodiesOnlyWhenToolOptsIn: a tool with log_bodies has its
// arguments (redacted) and the upstream's answer recorded; a tool without
// records neither.
func TestAuditBodiesOnlyWhenToolOptsIn(t *testing.T) {
	t.Parallel()
	g := setupGoverned(t, nil)
	schema := json.RawMessage(`{"type":"object","properties":{"q":{"type":"string"},"api_key":{"type":"string"}}}`)
	for _, tc := range []struct {
		name string
		log  bool
	}{{"search_logged", true}, {"search_plain", false}} {
		g.addTool(t, g.tenantA.ID, tenants.ToolInput{UpstreamID: g.upA.ID, Name: tc.name, Method: "GET", PathTemplate: "/tasks",
			QueryParams: []string{"q", "api_key"}, InputSchema: schema,
			RequiredScopes: []string{tasks.ScopeRead}, Risk: tenants.RiskRead, Enabled: true, LogBodies: tc.log})
	}
	g.grant(t)
	cs := connect(t, g.resource, g.tokenA(t), nil)
	ctx := context.Background()
	args := map[string]any{"q": "groceries", "api_key": "sk-live-123"}
	for _, name := range []string{"search_logged", "search_plain"} {
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
		require.NoError(t, err)
		require.False(t, res.IsError, textOf(res))
	}

	logged := g.events(t, audit.Filter{Tool: "search_logged"})
	require.Len(t, logged, 1)
	require.JSONEq(t, `{"q": "groceries", "api_key": "[redacted]"}`, string(logged[0].RequestBody))
	require.NotContains(t, string(logged[0].RequestBody), "sk-live-123")
	require.NotNil(t, logged[0].Outcome)
	require.NotEmpty(t, logged[0].Outcome.ResponseBody, "the upstream's answer is recorded")
	require.True(t, json.Valid(logged[0].Outcome.ResponseBody))

	plain := g.events(t, audit.Filter{Tool: "search_plain"})
	require.Len(t, plain, 1)
	require.Nil(t, plain[0].RequestBody)
	require.NotNil(t, plain[0].Outcome)
	require.Nil(t, plain[0].Outcome.ResponseBody)

	rep, err := g.store.Verify(ctx, g.tenantA.ID)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
}
