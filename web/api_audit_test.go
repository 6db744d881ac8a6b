package web

import (
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/tenants/audit"
)

// setupAuditAPI is setupAPI with the audit trail, approvals and policy
// engine configured; it returns the services to write fixtures with.
func setupAuditAPI(t *testing.T) (*apiBundle, *governServices) {
	t.Helper()
	hs := httptest.NewUnstartedServer(nil)
	base := "http://" + hs.Listener.Addr().String()
	u, err := url.Parse(base)
	require.NoError(t, err)
	logs := &strings.Builder{}
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	svc := newTenantsService(t, logger, base)
	g := newGovernServices(t, logger, base)
	s, err := New(Config{Logger: logger, BaseURL: u, Ready: apiReady{}, Registry: NewRegistry(), Tenants: svc,
		Policy: g.policy, Approvals: g.approvals, AuditLog: g.store})
	require.NoError(t, err)
	hs.Config.Handler = s
	hs.Start()
	t.Cleanup(hs.Close)
	return &apiBundle{t: t, url: base, svc: svc, logs: logs}, g
}

// auditPageOf decodes a page of the audit API.
func auditPageOf(t *testing.T, r apiResponse) apiAuditPage {
	t.Helper()
	require.Equal(t, 200, r.status, r.body)
	var p apiAuditPage
	require.NoError(t, json.Unmarshal([]byte(r.body), &p), r.body)
	return p
}

// TestAuditAPIFilters: the same filters as the console, as JSON.
func TestAuditAPIFilters(t *testing.T) {
	t.Parallel()
	b, g := setupAuditAPI(t)
	tn := b.tenant(t)
	fixtureTrail(t, g, tn.id)

	tests := []struct {
		name      string
		query     string
		wantItems int
		wantEvery func(apiAuditEvent) bool
	}{
		{"all", "", 6, nil},
		{"user", "?user=analyst@acme.example", 3, func(e apiAuditEvent) bool { return e.User.Email == "analyst@acme.example" }},
		{"agent", "?agent=cursor", 3, func(e apiAuditEvent) bool { return e.Agent == "cursor" }},
		{"tool", "?tool=tasks.list", 2, func(e apiAuditEvent) bool { return e.Tool == "tasks.list" }},
		{"upstream", "?upstream=billing", 3, func(e apiAuditEvent) bool { return e.Upstream == "billing" }},
		{"decision", "?decision=deny", 2, func(e apiAuditEvent) bool {
			return e.Decision == "deny" && e.Outcome == nil && e.Result == "not_called"
		}},
		{"allowed calls carry their outcome", "?decision=allow", 3, func(e apiAuditEvent) bool {
			return e.Outcome != nil && e.Outcome.Status == 200 && e.Outcome.LatencyUS == 12000 && e.Result == "ok"
		}},
		{"time range", "?from=2026-03-04T09:02:00Z&to=2026-03-04T09:04:00Z", 2, func(e apiAuditEvent) bool {
			return !e.At.Before(time.Date(2026, 3, 4, 9, 2, 0, 0, time.UTC)) && e.At.Before(time.Date(2026, 3, 4, 9, 4, 0, 0, time.UTC))
		}},
		{"combined", "?user=engineer@acme.example&agent=claude-desktop&decision=approval", 1, func(e apiAuditEvent) bool {
			return e.Tool == "tasks.delete" && e.Summary == "engineer@acme.example via claude-desktop called tasks.delete on Tasks — denied: needs 2 approvals"
		}},
		{"none", "?tool=nope", 0, nil},
	}
	for _, key := range []string{tn.admin, tn.viewer} {
		for _, tc := range tests {
			p := auditPageOf(t, b.do(t, key, "GET", "/api/v1/audit"+tc.query, ""))
			require.Len(t, p.Items, tc.wantItems, tc.name)
			require.Empty(t, p.NextCursor, tc.name)
			for i, e := range p.Items {
				if i > 0 {
					require.Less(t, e.Seq, p.Items[i-1].Seq, "newest first")
				}
				if tc.wantEvery != nil {
					require.True(t, tc.wantEvery(e), "%s: %+v", tc.name, e)
				}
			}
		}
	}
	r := b.do(t, tn.admin, "GET", "/api/v1/audit?decision=deny", "")
	require.Contains(t, r.body, `"act":[]`, "lists are [] not null")
	require.Contains(t, r.body, `"approval_id":null`)

	for _, tc := range []struct{ query, field string }{
		{"?decision=maybe", "decision"},
		{"?from=yesterday", "from"},
		{"?from=2026-03-04T10:00:00Z&to=2026-03-04T09:00:00Z", "to"},
		{"?limit=0", "limit"},
		{"?limit=201", "limit"},
		{"?limit=ten", "limit"},
		{"?cursor=not-a-cursor", "cursor"},
	} {
		r := b.do(t, tn.admin, "GET", "/api/v1/audit"+tc.query, "")
		require.Equal(t, 400, r.status, "%s: %s", tc.query, r.body)
		var p struct{ Field string }
		require.NoError(t, json.Unmarshal([]byte(r.body), &p))
		require.Equal(t, tc.field, p.Field, tc.query)
	}
	require.Equal(t, 401, b.do(t, tn.revoked, "GET", "/api/v1/audit", "").status)
	require.Equal(t, 401, b.do(t, "", "GET", "/api/v1/audit", "").status)
}

// TestAuditAPIPagination: keyset pages cover every matching call once and
// keep the filter.
func TestAuditAPIPagination(t *testing.T) {
	t.Parallel()
	b, g := setupAuditAPI(t)
	tn := b.tenant(t)
	t0 := time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)
	for i := range 7 {
		g.record(t, tn.id, t0.Add(time.Duration(i)*time.Second), auditCall("engineer@acme.example", "cursor", "tasks.list", "tasks", audit.DecisionDeny))
		g.record(t, tn.id, t0.Add(time.Duration(i)*time.Second), auditCall("engineer@acme.example", "cursor", "tasks.list", "tasks", audit.DecisionAllow))
	}
	seen := map[int64]bool{}
	path := "/api/v1/audit?decision=deny&limit=3"
	pages := 0
	for path != "" {
		p := auditPageOf(t, b.do(t, tn.viewer, "GET", path, ""))
		pages++
		require.LessOrEqual(t, len(p.Items), 3)
		for _, e := range p.Items {
			require.Equal(t, "deny", e.Decision)
			require.False(t, seen[e.Seq])
			seen[e.Seq] = true
		}
		path = ""
		if p.NextCursor != "" {
			path = "/api/v1/audit?decision=deny&limit=3&cursor=" + url.QueryEscape(p.NextCursor)
		}
	}
	require.Len(t, seen, 7)
	require.Equal(t, 3, pages)
}

// TestAuditAPITenantIsolation: a tenant's key sees only its own calls and
// approval requests, whatever it filters on.
func TestAuditAPITenantIsolation(t *testing.T) {
	t.Parallel()
	b, g := setupAuditAPI(t)
	a, other := b.tenant(t), b.tenant(t)
	g.record(t, a.id, time.Now(), auditCall("alpha@a.example", "agent-a", "a.tool", "a-up", audit.DecisionAllow))
	g.record(t, other.id, time.Now(), auditCall("beta@b.example", "agent-b", "b.tool", "b-up", audit.DecisionAllow))
	rqB := newApproval(t, g, other.id, `{"id": 7}`)

	for _, q := range []string{"", "?user=beta@b.example", "?agent=agent-b", "?tool=b.tool", "?upstream=b-up"} {
		r := b.do(t, a.admin, "GET", "/api/v1/audit"+q, "")
		require.Equal(t, 200, r.status)
		require.NotContains(t, r.body, "beta@b.example", q)
		require.NotContains(t, r.body, "b.tool", q)
	}
	p := auditPageOf(t, b.do(t, a.admin, "GET", "/api/v1/audit", ""))
	require.Len(t, p.Items, 1)
	require.Equal(t, "alpha@a.example", p.Items[0].User.Email)

	r := b.do(t, a.admin, "GET", "/api/v1/approvals", "")
	require.Equal(t, 200, r.status)
	require.JSONEq(t, `{"items":[],"next_cursor":""}`, r.body)

	r = b.do(t, other.viewer, "GET", "/api/v1/approvals?status=pending", "")
	require.Equal(t, 200, r.status, r.body)
	var ap apiApprovalPage
	require.NoError(t, json.Unmarshal([]byte(r.body), &ap))
	require.Len(t, ap.Items, 1)
	got := ap.Items[0]
	require.Equal(t, rqB.ID, got.ID)
	require.Equal(t, "pending", got.Status)
	require.JSONEq(t, `{"id":7}`, string(got.Args))
	require.Equal(t, 2, got.ApprovalsRequired)
	require.Equal(t, "engineer@acme.example", got.Requester.Email)
	require.Contains(t, got.ApprovalURL, "/approvals/"+rqB.ID.String())

	r = b.do(t, other.admin, "GET", "/api/v1/approvals?status=rejected", "")
	require.JSONEq(t, `{"items":[],"next_cursor":""}`, r.body)
	r = b.do(t, other.admin, "GET", "/api/v1/approvals?status=nope", "")
	require.Equal(t, 400, r.status)
	require.Contains(t, r.body, `"field":"status"`)
}

// TestAuditAPIUnconfigured: a server built without the audit trail says
// so rather than pretending the trail is empty.
func TestAuditAPIUnconfigured(t *testing.T) {
	t.Parallel()
	b := setupAPI(t, apiPermissive())
	tn := b.tenant(t)
	require.Equal(t, 503, b.do(t, tn.admin, "GET", "/api/v1/audit", "").status)
	require.Equal(t, 503, b.do(t, tn.admin, "GET", "/api/v1/approvals", "").status)

	// Both routes are in the OpenAPI document either way.
	r := b.do(t, "", "GET", "/api/v1/openapi.json", "")
	var doc struct {
		Paths      map[string]map[string]struct{ OperationID string }
		Components struct{ Schemas map[string]any }
	}
	require.NoError(t, json.Unmarshal([]byte(r.body), &doc))
	require.Equal(t, "listAuditEvents", doc.Paths["/api/v1/audit"]["get"].OperationID)
	require.Equal(t, "listApprovals", doc.Paths["/api/v1/approvals"]["get"].OperationID)
	for _, name := range []string{"AuditPage", "AuditEvent", "AuditUser", "AuditOutcome", "ApprovalPage", "Approval", "ApprovalPerson"} {
		require.Contains(t, doc.Components.Schemas, name)
	}
}
