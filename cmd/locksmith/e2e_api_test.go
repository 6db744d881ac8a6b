package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
)

// TestAPIOnboardingWithTenantCreate onboards a company without a browser:
// `locksmith tenant create` prints an API key, and the admin API alone
// registers the demo IdP (live check green), registers Acme Tasks
// (endpoints discovered) and imports its tools from its OpenAPI document.
func TestAPIOnboardingWithTenantCreate(t *testing.T) {
	t.Parallel()
	st := startStack(t)

	// The CLI writes to the stack's database (both use the package
	// database) and prints URLs under the stack's base URL.
	env := goodEnv(t)
	env["LOCKSMITH_BASE_URL"] = st.URL
	slug := "api-onb-" + uuid.NewString()[:8]
	cmd := exec.Command(binary, "tenant", "create", "--slug", slug, "--name", "API Onboarding Co",
		"--owner-email", "owner-"+slug+"@example.com")
	cmd.Env = envList(env)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), stderr.String())
	var created struct {
		TenantID string `json:"tenant_id"`
		APIKey   string `json:"api_key"`
		MCPURL   string `json:"mcp_url"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout.String()), &created))
	require.True(t, strings.HasPrefix(created.APIKey, "lsk_"))
	require.Equal(t, st.URL+"/t/"+slug+"/mcp", created.MCPURL)

	call := func(method, path string, body any, wantStatus int) map[string]any {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, err := json.Marshal(body)
			require.NoError(t, err)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, st.URL+path, rd)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+created.APIKey)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, wantStatus, resp.StatusCode, "%s %s: %s", method, path, raw)
		for _, secret := range []string{idp.DefaultLocksmithSecret, tasks.DefaultClientSecret} {
			require.NotContains(t, string(raw), secret, "%s %s returned a secret", method, path)
		}
		var out map[string]any
		require.NoError(t, json.Unmarshal(raw, &out), string(raw))
		return out
	}

	// The document is public.
	resp, err := http.Get(st.URL + "/api/v1/openapi.json")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// The IdP: a live check, then the registration.
	check := call("POST", "/api/v1/idps/check", map[string]any{"issuer": st.IdP.URL()}, http.StatusOK)
	require.Equal(t, true, check["ok"], check)
	reg := call("POST", "/api/v1/idps", map[string]any{
		"issuer": st.IdP.URL(), "preset": "generic",
		"client_id": idp.ClientLocksmith, "client_secret": idp.DefaultLocksmithSecret,
	}, http.StatusCreated)
	require.Equal(t, true, reg["check_ok"], reg)
	require.Equal(t, true, reg["client_secret_set"])
	list := call("GET", "/api/v1/idps", nil, http.StatusOK)
	require.Len(t, list["items"], 1)

	// Acme Tasks: its authorization server is discovered, then registered.
	found := call("POST", "/api/v1/upstreams/discover", map[string]any{"issuer": st.Tasks.URL()}, http.StatusOK)
	require.Equal(t, st.Tasks.URL()+"/token", found["token_url"])
	up := call("POST", "/api/v1/upstreams", map[string]any{
		"slug": "acme-tasks", "name": "Acme Tasks", "kind": "rest", "base_url": st.Tasks.URL(),
		"auth_mode": "oauth2", "issuer": st.Tasks.URL(), "client_id": tasks.DefaultClientID,
		"client_secret": tasks.DefaultClientSecret, "scopes_offered": tasks.SupportedScopes(),
		"pkce": true, "refresh_narrows": true,
	}, http.StatusCreated)
	require.Equal(t, st.Tasks.URL()+"/authorize", up["authorize_url"])
	require.Equal(t, st.URL+"/oauth/callback", up["redirect_uri"])
	upstreamID := up["id"].(string)

	// Its tools: a preview first (nothing stored), then the import.
	preview := call("POST", "/api/v1/tools/import", map[string]any{
		"upstream_id": upstreamID, "url": st.Tasks.URL() + "/openapi.json", "dry_run": true,
	}, http.StatusOK)
	require.Len(t, preview["tools"], 5)
	require.Empty(t, call("GET", "/api/v1/tools", nil, http.StatusOK)["items"])
	imported := call("POST", "/api/v1/tools/import", map[string]any{
		"upstream_id": upstreamID, "url": st.Tasks.URL() + "/openapi.json",
	}, http.StatusCreated)
	require.Len(t, imported["tools"], 5)

	tools := call("GET", "/api/v1/tools", nil, http.StatusOK)
	items := tools["items"].([]any)
	require.Len(t, items, 5)
	var names []string
	for _, it := range items {
		tool := it.(map[string]any)
		require.Equal(t, "acme-tasks", tool["upstream_slug"])
		names = append(names, tool["name"].(string))
	}
	require.ElementsMatch(t, []string{"createTask", "deleteTask", "getTask", "listTasks", "updateTask"}, names)
}
