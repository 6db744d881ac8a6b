package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/approvals"
	"github.com/locksmithhq/locksmith/tenants/audit"
	"github.com/locksmithhq/locksmith/tenants/policy"
)

// TestBrowserAuditExport drives the real console in headless Chromium: an
// admin opens the audit trail, filters it by user and decision, downloads
// the CSV of that filter and finds exactly the filtered calls in it; then
// looks at one call, verifies the chain, and visits Policies and
// Approvals. Screenshots of each step go to screenshots/ (git-ignored).
func TestBrowserAuditExport(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	ctx := browser(t)
	email := "admin-" + uuid.NewString()[:8] + "@example.com"
	slug := "aud-" + uuid.NewString()[:8]

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(st.URL+"/signup"),
		chromedp.WaitVisible(tid("signup-email")),
		chromedp.SendKeys(tid("signup-email"), email),
		chromedp.SendKeys(tid("signup-password"), "a long enough password"),
		chromedp.Click(tid("signup-submit")),
		chromedp.WaitVisible(tid("tenant-slug")),
		chromedp.SendKeys(tid("tenant-name"), "Audit Co"),
		chromedp.SendKeys(tid("tenant-slug"), slug),
		chromedp.Click(tid("tenant-create")),
		chromedp.WaitVisible(tid("onboarding")),
	))

	// The trail: calls recorded as the MCP endpoint records them.
	bg := context.Background()
	tn, err := st.Main.Tenants.TenantBySlug(bg, slug)
	require.NoError(t, err)
	type fixture struct {
		email, agent, tool, upstream, decision, reason string
	}
	fixtures := []fixture{
		{"engineer@acme.example", "claude-desktop", "tasks.list", "acme-tasks", audit.DecisionAllow, "allowed"},
		{"engineer@acme.example", "claude-desktop", "tasks.delete", "acme-tasks", audit.DecisionApproval, "needs 2 approvals"},
		{"analyst@acme.example", "cursor", "invoices.pay", "billing", audit.DecisionDeny, "kill switch: agent"},
		{"analyst@acme.example", "cursor", "invoices.list", "billing", audit.DecisionAllow, "allowed"},
		{"analyst@acme.example", "claude-desktop", "invoices.pay", "billing", audit.DecisionDeny, "condition"},
		{"engineer@acme.example", "cursor", "tasks.update", "acme-tasks", audit.DecisionDeny, "scope"},
	}
	names := map[string]string{"acme-tasks": "Acme Tasks", "billing": "Billing"}
	for i, f := range fixtures {
		seq, err := st.Main.Audit.Intent(bg, tn.ID, audit.Call{
			RequestID: "req-" + itoa(i+1), User: audit.User{Issuer: st.IdP.URL(), Subject: "sub-" + strings.Split(f.email, "@")[0], Email: f.email},
			Agent: f.agent, Tool: f.tool, Upstream: f.upstream, UpstreamName: names[f.upstream], Method: "POST", PathTemplate: "/v1/" + f.tool,
			Scopes: []string{"api"}, Decision: f.decision, Rule: f.reason, Reason: f.reason,
		})
		require.NoError(t, err)
		if f.decision == audit.DecisionAllow {
			_, err = st.Main.Audit.Outcome(bg, tn.ID, seq, audit.Outcome{Status: 200, Latency: 42 * time.Millisecond})
			require.NoError(t, err)
		}
	}
	// A request waiting for approvers, for the badge and the Approvals page.
	_, _, err = st.Main.Approval.Request(bg, tn.ID, approvals.NewRequest{
		Tool: "tasks.delete", Upstream: "acme-tasks", Risk: tenants.RiskDestructive,
		Args:      json.RawMessage(`{"id": 42, "comment": "` + strings.Repeat("Cleaning up the old sprint board. ", 8) + `"}`),
		Requester: approvals.Person{Issuer: st.IdP.URL(), Subject: "sub-engineer", Email: "engineer@acme.example"},
		Agent:     "claude-desktop", Rule: policy.RuleDestructive, Reason: "needs 2 approvals", RequestID: "req-2",
	})
	require.NoError(t, err)

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("nav-audit")),
		chromedp.WaitVisible(tid("audit-table")),
	))
	require.Equal(t, len(fixtures), count(t, ctx, "audit-row"))
	require.Contains(t, text(t, ctx, "nav-approvals-count"), "1")
	require.Contains(t, text(t, ctx, "audit-table"), "analyst@acme.example via cursor called invoices.pay on Billing — denied: kill switch: agent")
	screenshot(t, ctx, "audit")

	// Filter: the analyst's denied calls.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys(tid("audit-user"), "analyst@acme.example"),
		chromedp.SetValue(tid("audit-decision"), "deny"),
		chromedp.Click(tid("audit-filter-apply")),
		chromedp.WaitVisible(tid("audit-filter-clear")),
	))
	require.Equal(t, 2, count(t, ctx, "audit-row"))
	for _, s := range rowTexts(t, ctx) {
		require.Contains(t, s, "analyst@acme.example")
		require.Contains(t, s, "denied")
	}
	require.Equal(t, "analyst@acme.example", value(t, ctx, "audit-user"))
	screenshot(t, ctx, "audit-filtered")

	// Download the CSV of the filter.
	dir := t.TempDir()
	_, err = chromedp.CallBrowser(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir,
	})
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(tid("audit-export-csv"))))
	file := waitForDownload(t, dir, ".csv")
	require.True(t, strings.HasPrefix(filepath.Base(file), "audit-"+slug+"-"), file)
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	recs, err := csv.NewReader(strings.NewReader(string(raw))).ReadAll()
	require.NoError(t, err)
	require.Equal(t, audit.CSVHeader, recs[0])
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	require.Len(t, recs, 3, "the header and the two filtered calls:\n%s", raw)
	var tools []string
	for _, rec := range recs[1:] {
		require.Equal(t, "analyst@acme.example", rec[col["user_email"]])
		require.Equal(t, "deny", rec[col["decision"]])
		require.Equal(t, "not_called", rec[col["result"]])
		tools = append(tools, rec[col["agent"]]+" "+rec[col["tool"]])
	}
	require.Equal(t, []string{"claude-desktop invoices.pay", "cursor invoices.pay"}, tools, "newest first")
	screenshot(t, ctx, "audit-downloaded")

	// One call's page.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`[data-testid="audit-row"] [data-testid="audit-link"]`)),
		chromedp.WaitVisible(tid("event-who")),
	))
	require.Contains(t, text(t, ctx, "event-policy"), "condition")
	screenshot(t, ctx, "audit-event")

	// Verify the chain.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(st.URL+"/console/t/"+slug+"/audit"),
		chromedp.WaitVisible(tid("verify-chain")),
		chromedp.Click(tid("verify-chain")),
		chromedp.WaitVisible(tid("verify-result")),
	))
	require.Empty(t, count(t, ctx, "verify-problem"), text(t, ctx, "verify-result"))
	screenshot(t, ctx, "audit-verify")

	// Policies: a kill switch, and a condition checked.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("nav-policies")),
		chromedp.WaitVisible(tid("kill-agent-value")),
		chromedp.SendKeys(tid("kill-agent-value"), "cursor"),
		chromedp.SendKeys(tid("kill-agent-reason"), "Paying invoices it should not"),
		chromedp.Click(tid("kill-agent-submit")),
		chromedp.WaitVisible(tid("kill-table")),
	))
	require.Contains(t, text(t, ctx, "kill-table"), "Paying invoices it should not")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(tid("check-condition"), `"finance" in principle.groups`),
		chromedp.Click(tid("check-submit")),
		chromedp.WaitVisible(tid("check-condition-error")),
	))
	require.Contains(t, text(t, ctx, "check-condition-error"), "Line 1, column 14")
	screenshot(t, ctx, "policies-check-error")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(tid("check-condition"), `args.amount < 1000 ? "allow" : "approval"`),
		chromedp.Click(tid("check-submit")),
		chromedp.WaitVisible(tid("check-result")),
	))
	require.Contains(t, text(t, ctx, "check-effect"), "Allowed")
	screenshot(t, ctx, "policies")

	// Approvals: the waiting request and its detail.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("nav-approvals")),
		chromedp.WaitVisible(tid("approvals-table")),
	))
	screenshot(t, ctx, "approvals")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("approval-tool")),
		chromedp.WaitVisible(tid("approval-args-json")),
	))
	require.Equal(t, 1, count(t, ctx, "json-fold"))
	screenshot(t, ctx, "approval-detail")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(st.URL+"/console/t/"+slug+"/approvals/settings"),
		chromedp.WaitVisible(tid("approvals-group")),
	))
	screenshot(t, ctx, "approval-settings")

	// The audit trail at 375 px wide.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.EmulateViewport(375, 812),
		chromedp.Navigate(st.URL+"/console/t/"+slug+"/audit"),
		chromedp.WaitVisible(tid("audit-table")),
	))
	screenshot(t, ctx, "audit-narrow")
}

// rowTexts returns the text of every audit row.
func rowTexts(t *testing.T, ctx context.Context) []string {
	t.Helper()
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll('[data-testid="audit-row"]')).map(r => r.innerText)`))
	require.NoError(t, err)
	return rows
}

// waitForDownload waits until a finished file with the suffix is in dir.
func waitForDownload(t *testing.T, dir, suffix string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), suffix) {
				return filepath.Join(dir, e.Name())
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no %s file was downloaded into %s", suffix, dir)
	return ""
}
