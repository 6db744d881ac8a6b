package mcp_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/web"
)

// TestMountedInWebServer checks the routes through web's route table and
// middleware (its own 1 MiB body limit, request ids).
func TestMountedInWebServer(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{serve: func(b *testBundle) http.Handler {
		base, err := url.Parse(b.base)
		require.NoError(t, err)
		ws, err := web.New(web.Config{Logger: testLogger(), BaseURL: base, Ready: readyOK{}, Registry: web.NewRegistry(), Tenants: b.svc, MCP: b.handler})
		require.NoError(t, err)
		return ws
	}})

	resp, body := rpc(t, http.MethodGet, b.base+"/.well-known/oauth-protected-resource/t/"+b.tenantA.Slug+"/mcp", "", nil)
	require.Equal(t, 200, resp.StatusCode, body)
	require.Contains(t, body, b.resource)

	resp, body = rpc(t, http.MethodPost, b.resource, listBody, nil)
	require.Equal(t, 401, resp.StatusCode, body)
	require.NotEmpty(t, resp.Header.Get("X-Request-Id"))
	require.Contains(t, body, resp.Header.Get("X-Request-Id"))

	resp, body = rpc(t, http.MethodPost, b.resource, listBody, map[string]string{"Authorization": "Bearer " + b.tokenA(t)})
	require.Equal(t, 200, resp.StatusCode, body)
	require.Contains(t, body, "list_tasks")

	big := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"pad":"` + strings.Repeat("x", 1<<20) + `"}}`
	resp, body = rpc(t, http.MethodPost, b.resource, big, map[string]string{"Authorization": "Bearer " + b.tokenA(t)})
	require.Equal(t, 413, resp.StatusCode, body)
}

type readyOK struct{}

func (readyOK) Ready(context.Context) error { return nil }
