package main

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// TestBrowserOnboarding drives the real console in headless Chromium: a new
// admin signs up, creates a tenant and finds the MCP URL. Screenshots of each
// step go to screenshots/ (git-ignored).
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

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("nav-mcp")),
		chromedp.WaitVisible(tid("mcp-url")),
	))
	mcpURL := value(t, ctx, "mcp-url")
	require.Equal(t, st.URL+"/t/"+slug+"/mcp", strings.TrimSpace(mcpURL))
	screenshot(t, ctx, "mcp-endpoint")
}
