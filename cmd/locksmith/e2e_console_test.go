package main

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
)

// TestBrowserOnboarding drives the real console in headless Chromium: a new
// admin signs up, creates a tenant, registers the demo IdP (live check
// green) and Acme Tasks (endpoints discovered), imports its tools from its
// OpenAPI document and finds the MCP URL. Screenshots of each step go to
// screenshots/ (git-ignored).
func TestBrowserOnboarding(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	ctx := browser(t)
	email := "admin-" + uuid.NewString()[:8] + "@example.com"
	slug := "onb-" + uuid.NewString()[:8]

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(st.URL+"/signup"),
		chromedp.WaitVisible(tid("signup-email")),
		chromedp.SendKeys(tid("signup-email"), email),
		chromedp.SendKeys(tid("signup-password"), "a long enough password"),
	))
	screenshot(t, ctx, "signup")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("signup-submit")),
		chromedp.WaitVisible(tid("tenant-slug")),
		chromedp.SendKeys(tid("tenant-name"), "Onboarding <script>alert(1)</script> Co"),
		chromedp.SendKeys(tid("tenant-slug"), slug),
	))
	screenshot(t, ctx, "create-tenant")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("tenant-create")),
		chromedp.WaitVisible(tid("onboarding")),
	))
	title := text(t, ctx, "current-tenant")
	require.Contains(t, title, "<script>alert(1)</script>", "the name is shown as text, not run")
	screenshot(t, ctx, "overview")

	// Identity provider: the demo IdP, checked live, then saved.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("nav-idp")),
		chromedp.WaitVisible(tid("idp-issuer")),
		chromedp.SendKeys(tid("idp-issuer"), st.IdP.URL()),
		chromedp.Click(tid("idp-check")),
		chromedp.WaitVisible(tid("idp-check-result")),
	))
	require.Empty(t, count(t, ctx, "idp-check-problem"), text(t, ctx, "idp-check-result"))
	require.Contains(t, text(t, ctx, "idp-check-ok"), "signing keys")
	screenshot(t, ctx, "idp-check")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("idp-save")),
		chromedp.WaitVisible(tid("notice")),
		chromedp.WaitVisible(tid("idp-check-ok")),
	))
	screenshot(t, ctx, "idp-saved")

	// Upstream: Acme Tasks, its endpoints discovered (RFC 8414).
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("nav-upstreams")),
		chromedp.WaitVisible(tid("upstreams-empty")),
		chromedp.Click(chromedp.CSS(`[data-testid="upstreams-empty"] a.button`)),
		chromedp.WaitVisible(tid("upstream-name")),
		chromedp.SendKeys(tid("upstream-name"), "Acme Tasks"),
		chromedp.SendKeys(tid("upstream-slug"), "acme-tasks"),
		chromedp.SendKeys(tid("upstream-base-url"), st.Tasks.URL()),
		chromedp.SendKeys(tid("upstream-issuer"), st.Tasks.URL()),
		chromedp.Click(tid("upstream-discover")),
		chromedp.WaitVisible(tid("upstream-discover-result")),
	))
	require.Empty(t, count(t, ctx, "upstream-discover-problem"), text(t, ctx, "upstream-discover-result"))
	require.Equal(t, st.Tasks.URL()+"/token", value(t, ctx, "upstream-token-url"))
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys(tid("upstream-client-id"), tasks.DefaultClientID),
		chromedp.SendKeys(tid("upstream-client-secret"), tasks.DefaultClientSecret),
	))
	screenshot(t, ctx, "upstream-discovered")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("upstream-save")),
		chromedp.WaitVisible(tid("notice")),
		chromedp.WaitVisible(tid("upstream-client-secret-state")),
	))
	require.Equal(t, st.URL+"/oauth/callback", value(t, ctx, "upstream-redirect-uri"))
	screenshot(t, ctx, "upstream-saved")

	// Tools: imported from Acme Tasks' OpenAPI document, previewed, then all imported.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("nav-tools")),
		chromedp.WaitVisible(tid("tools-empty")),
		chromedp.Click(tid("tools-import")),
		chromedp.WaitVisible(tid("import-url")),
		chromedp.SendKeys(tid("import-url"), st.Tasks.URL()+"/openapi.json"),
		chromedp.Click(tid("import-preview")),
		chromedp.WaitVisible(tid("import-table")),
	))
	require.Equal(t, 5, count(t, ctx, "import-row"))
	screenshot(t, ctx, "import-preview")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("import-submit")),
		chromedp.WaitVisible(tid("tools-table")),
	))
	require.Equal(t, 5, count(t, ctx, "tool-row"))
	risk, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`[data-tool="deleteTask"] [data-testid="risk-badge"]`)))
	require.NoError(t, err)
	require.Equal(t, "Destructive", strings.TrimSpace(risk))
	screenshot(t, ctx, "tools")

	// The checklist has the first three steps done.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("nav-overview")),
		chromedp.WaitVisible(tid("onboarding")),
	))
	require.Contains(t, text(t, ctx, "onboarding-progress"), "3 of 5 steps done")

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("nav-mcp")),
		chromedp.WaitVisible(tid("mcp-url")),
	))
	mcpURL := value(t, ctx, "mcp-url")
	require.Equal(t, st.URL+"/t/"+slug+"/mcp", strings.TrimSpace(mcpURL))
	require.Empty(t, count(t, ctx, "mcp-needs-idp"))
	require.Contains(t, text(t, ctx, "snippet-claude-code"), "claude mcp add --transport http locksmith-"+slug+" "+mcpURL)
	screenshot(t, ctx, "mcp-endpoint")

	// Test a token the demo IdP issued for this tenant.
	tok, err := st.IdP.MintAccessToken(idp.MintRequest{User: idp.UsernameEngineer, Audience: []string{mcpURL}, Scopes: []string{"tasks:read"}})
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(tid("token-test-token"), tok),
		chromedp.Click(tid("token-test-submit")),
		chromedp.WaitVisible(tid("token-test-result")),
	))
	require.Empty(t, count(t, ctx, "token-test-problem"), text(t, ctx, "token-test-result"))
	require.Contains(t, text(t, ctx, "token-test-ok"), "verifies")
	require.Empty(t, value(t, ctx, "token-test-token"), "the token is not echoed back")
	screenshot(t, ctx, "token-test")

	// The pages work at 375 px wide.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.EmulateViewport(375, 812),
		chromedp.Click(tid("nav-menu")),
		chromedp.WaitVisible(tid("nav-tools")),
		chromedp.Click(tid("nav-tools")),
		chromedp.WaitVisible(tid("tools-table")),
	))
	screenshot(t, ctx, "tools-narrow")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(st.URL+"/console/t/"+slug+"/idp"),
		chromedp.WaitVisible(tid("idp-check")),
	))
	screenshot(t, ctx, "idp-narrow")
}

// count returns how many elements have that data-testid.
func count(t *testing.T, ctx context.Context, id string) int {
	t.Helper()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('[data-testid="`+id+`"]').length`))
	require.NoError(t, err)
	return n
}
