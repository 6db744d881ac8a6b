package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants/audit"
)

// overviewAuditWriter is an audit writer on the test database.
func overviewAuditWriter(t *testing.T) *audit.Writer {
	t.Helper()
	w, err := audit.NewWriter(audit.WriterConfig{DB: sqltest.DB(t), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Close(context.Background())) })
	return w
}

// overviewCall records one tool call decision.
func overviewCall(t *testing.T, w *audit.Writer, tenantID uuid.UUID, tool, decision, reason string) {
	t.Helper()
	_, err := w.Intent(t.Context(), tenantID, audit.Call{
		User:  audit.User{Issuer: "https://idp.example", Subject: "u1", Email: "alice@acme.example"},
		Agent: "claude-desktop", Tool: tool, Decision: decision, Reason: reason,
	})
	require.NoError(t, err)
}

func TestOverviewDashboardShowsCallsAndDenials(t *testing.T) {
	b := setupConsole(t)
	br, slug, _ := b.newOwner(t, "Acme Corp")
	tid := b.tenantID(t, slug)
	w := overviewAuditWriter(t)

	// Before any call: every card in its empty state.
	r := br.get("/console/t/" + slug)
	require.Equal(t, http.StatusOK, r.status, r.body)
	for _, id := range []string{"calls-empty", "grants-empty", "denials-empty", "approvals-empty"} {
		require.Contains(t, r.body, `data-testid="`+id+`"`)
	}

	overviewCall(t, w, tid, "list_tasks", audit.DecisionAllow, "")
	overviewCall(t, w, tid, "list_tasks", audit.DecisionAllow, "")
	overviewCall(t, w, tid, "delete_project", audit.DecisionDeny, "destructive tools are off for agents")

	d, err := b.svc.Dashboard(t.Context(), tid, 14)
	require.NoError(t, err)
	require.Len(t, d.CallsPerDay, 14)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	require.Equal(t, today, d.CallsPerDay[13].Day)
	require.Equal(t, today.AddDate(0, 0, -13), d.CallsPerDay[0].Day)
	require.Equal(t, 2, d.CallsPerDay[13].Allowed)
	require.Equal(t, 1, d.CallsPerDay[13].Denied)
	require.Zero(t, d.CallsPerDay[12].Allowed+d.CallsPerDay[12].Denied)
	require.Len(t, d.RecentDenials, 1)
	require.Equal(t, "delete_project", d.RecentDenials[0].Tool)
	require.Equal(t, "alice@acme.example", d.RecentDenials[0].UserEmail)
	require.Zero(t, d.ActiveGrants)
	require.Zero(t, d.PendingApprovals)

	r = br.get("/console/t/" + slug)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, `data-testid="calls-chart"`)
	require.Contains(t, r.body, "<svg")
	require.Contains(t, r.body, "3 calls in the last 14 days")
	require.Contains(t, r.body, "1 of them denied.")
	require.NotContains(t, r.body, `data-testid="calls-empty"`)
	require.Contains(t, r.body, `data-testid="denials-list"`)
	require.NotContains(t, r.body, `data-testid="denials-empty"`)
	require.Contains(t, r.body, "delete_project")
	require.Contains(t, r.body, "destructive tools are off for agents")
	require.Contains(t, r.body, "alice@acme.example")
	require.Contains(t, r.body, `href="/console/t/`+slug+`/audit?decision=deny"`)
	// No grants or approvals yet: those cards keep their empty states.
	require.Contains(t, r.body, `data-testid="grants-empty"`)
	require.Contains(t, r.body, `data-testid="approvals-empty"`)
}

func TestOverviewDashboardIsPerTenant(t *testing.T) {
	b := setupConsole(t)
	brA, slugA, _ := b.newOwner(t, "Acme A")
	_, slugB, _ := b.newOwner(t, "Beta B")
	tidA, tidB := b.tenantID(t, slugA), b.tenantID(t, slugB)
	w := overviewAuditWriter(t)

	overviewCall(t, w, tidA, "list_tasks", audit.DecisionAllow, "")
	for range 4 {
		overviewCall(t, w, tidB, "beta_only_tool", audit.DecisionAllow, "")
	}
	overviewCall(t, w, tidB, "beta_denied_tool", audit.DecisionDeny, "beta-only reason")

	d, err := b.svc.Dashboard(t.Context(), tidA, 14)
	require.NoError(t, err)
	require.Equal(t, 1, d.CallsPerDay[13].Allowed)
	require.Zero(t, d.CallsPerDay[13].Denied)
	require.Empty(t, d.RecentDenials)

	r := brA.get("/console/t/" + slugA)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, "1 call in the last 14 days")
	require.NotContains(t, r.body, "beta_only_tool")
	require.NotContains(t, r.body, "beta_denied_tool")
	require.NotContains(t, r.body, "beta-only reason")
	require.Contains(t, r.body, `data-testid="denials-empty"`)
}
