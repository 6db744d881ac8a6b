package mcp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/tenants"
	webmcp "github.com/locksmithhq/locksmith/web/mcp"
)

// revokeAfterUse turns on narrowing and RevokeAfterUse for tenant A's Acme
// Tasks upstream, with revocationURL as its revocation endpoint.
func (b *testBundle) revokeAfterUse(t *testing.T, revocationURL string) {
	t.Helper()
	u := b.upA
	_, err := b.svc.UpdateUpstream(context.Background(), b.tenantA.ID, u.ID, tenants.UpstreamInput{
		Slug: u.Slug, Name: u.Name, Kind: u.Kind, BaseURL: u.BaseURL, AuthMode: u.AuthMode,
		AuthorizeURL: u.AuthorizeURL, TokenURL: u.TokenURL, RevocationURL: revocationURL, ClientID: u.ClientID,
		ScopesOffered: u.ScopesOffered, PKCE: u.PKCE, RefreshNarrows: true, RevokeAfterUse: true,
	})
	require.NoError(t, err)
}

// acmeStatus calls Acme Tasks' API with tok and returns the status.
func acmeStatus(t *testing.T, b *testBundle, tok string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.acmeURL+"/tasks", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// TestRevokeAfterUseThroughTheEndpoint: with RevokeAfterUse, each tool call
// (through the SDK path and the fast path) reaches Acme with its own
// narrowed token, which Acme then sees revoked exactly once; the user's
// grant keeps working.
func TestRevokeAfterUseThroughTheEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.revokeAfterUse(t, b.acme.RevocationURL())
	grantToken := b.grant(t, tasks.ScopeRead, tasks.ScopeWrite)
	tokenA := b.tokenA(t)

	// The SDK path.
	cs := connect(t, b.resource, tokenA, nil)
	res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "list_tasks", Arguments: map[string]any{}})
	require.NoError(t, err)
	require.False(t, res.IsError, textOf(res))
	// The fast path.
	fast := webmcp.FastCalls(b.handler)
	hdr := map[string]string{"Authorization": "Bearer " + tokenA, "Mcp-Protocol-Version": "2025-06-18"}
	resp, body := rpc(t, http.MethodPost, b.resource, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"list_tasks","arguments":{}}}`, hdr)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.NotContains(t, body, `"isError":true`, body)
	require.Equal(t, fast+1, webmcp.FastCalls(b.handler), "served by the fast path")

	recs := b.acme.Requests()
	require.Len(t, recs, 2)
	var used []string
	for _, r := range recs {
		tok := strings.TrimPrefix(r.Authorization, "Bearer ")
		require.NotEqual(t, grantToken, tok, "a narrowed token, not the grant's")
		require.Less(t, r.Status, 300)
		used = append(used, tok)
	}
	require.NotEqual(t, used[0], used[1], "each call had its own token")

	want := map[string]int{tasks.TokenHash(used[0]): 1, tasks.TokenHash(used[1]): 1}
	revoked := func() map[string]int {
		out := map[string]int{}
		for _, r := range b.acme.Stats().Revocations {
			out[r.TokenHash]++
		}
		return out
	}
	require.Eventually(t, func() bool { return len(revoked()) == 2 }, 5*time.Second, 10*time.Millisecond, "both tokens revoked after their calls")
	require.Equal(t, want, revoked(), "each revoked exactly once")
	for _, tok := range used {
		require.Equal(t, http.StatusUnauthorized, acmeStatus(t, b, tok), "a revoked token no longer works")
	}

	// The user stays connected: the grant's token works, no family was
	// revoked, and the next call gets a fresh token by refresh.
	require.Equal(t, http.StatusOK, acmeStatus(t, b, grantToken))
	res, err = cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "list_tasks", Arguments: map[string]any{}})
	require.NoError(t, err)
	require.False(t, res.IsError, textOf(res))
	require.Zero(t, b.acme.Stats().FamiliesRevoked)
}

// TestRevokeAfterUseFailureDoesNotFailTheCall: a revocation endpoint that
// answers 500 doesn't change the agent's answer.
func TestRevokeAfterUseFailureDoesNotFailTheCall(t *testing.T) {
	t.Parallel()
	var revocations atomic.Int64
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		revocations.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	b := setup(t)
	b.revokeAfterUse(t, failing.URL+"/revoke")
	b.grant(t, tasks.ScopeRead, tasks.ScopeWrite)

	cs := connect(t, b.resource, b.tokenA(t), nil)
	res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "list_tasks", Arguments: map[string]any{}})
	require.NoError(t, err)
	require.False(t, res.IsError, textOf(res))
	require.Eventually(t, func() bool { return revocations.Load() == 1 }, 5*time.Second, 10*time.Millisecond, "the revocation was attempted")
	recs := b.acme.Requests()
	require.Len(t, recs, 1)
	require.Equal(t, http.StatusOK, acmeStatus(t, b, strings.TrimPrefix(recs[0].Authorization, "Bearer ")),
		"the failed revocation left the token valid until it expires")
}
