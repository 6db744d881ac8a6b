package web

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/approvals"
	"github.com/locksmithhq/locksmith/tenants/audit"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/policy"
	"github.com/locksmithhq/locksmith/tenants/seal"
	"github.com/locksmithhq/locksmith/web/views"
)

// governServices are the policy engine, approvals and audit trail behind
// the governance pages, on the package's test database.
type governServices struct {
	policy    *policy.Engine
	approvals *approvals.Service
	store     *audit.Store
	writer    *audit.Writer
	clock     *testClock
}

// testClock is the time audit events are stamped with.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *testClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func newGovernServices(t *testing.T, logger *slog.Logger, base string) *governServices {
	t.Helper()
	db := sqltest.DB(t)
	key, err := seal.GenerateMasterKey("govern")
	require.NoError(t, err)
	mk, err := seal.ParseMasterKeys(key)
	require.NoError(t, err)
	sealer, err := seal.New(db, mk)
	require.NoError(t, err)
	eg, err := egress.New(egress.Options{AllowPrivate: true})
	require.NoError(t, err)
	rc, err := river.NewClient(riverpgxv5.New(db.Pool()), &river.Config{Logger: logger})
	require.NoError(t, err)
	g := &governServices{clock: &testClock{t: time.Now().UTC().Truncate(time.Second)}}
	g.policy, err = policy.New(policy.Config{DB: db, Logger: logger})
	require.NoError(t, err)
	g.approvals, err = approvals.New(approvals.Config{DB: db, Sealer: sealer, Egress: eg, Jobs: rc, Logger: logger, BaseURL: base})
	require.NoError(t, err)
	g.store, err = audit.New(audit.Config{DB: db, Logger: logger})
	require.NoError(t, err)
	g.writer, err = audit.NewWriter(audit.WriterConfig{DB: db, Logger: logger, Now: g.clock.Now})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, g.writer.Close(context.Background())) })
	return g
}

// setupGovern is setupConsole with the governance services configured.
func setupGovern(t *testing.T) (*consoleBundle, *governServices) {
	t.Helper()
	hs := httptest.NewUnstartedServer(nil)
	base := "https://" + hs.Listener.Addr().String()
	u, err := url.Parse(base)
	require.NoError(t, err)
	logs := &strings.Builder{}
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	svc := newTenantsService(t, logger, base)
	g := newGovernServices(t, logger, base)
	s, err := New(Config{Logger: logger, BaseURL: u, Ready: fakeReady{}, Registry: NewRegistry(), Tenants: svc,
		Policy: g.policy, Approvals: g.approvals, AuditLog: g.store})
	require.NoError(t, err)
	hs.Config.Handler = s
	hs.StartTLS()
	t.Cleanup(hs.Close)
	return &consoleBundle{srv: s, http: hs, svc: svc, base: base, logs: logs}, g
}

func tenantID(t *testing.T, b *consoleBundle, slug string) uuid.UUID {
	t.Helper()
	tn, err := b.svc.TenantBySlug(context.Background(), slug)
	require.NoError(t, err)
	return tn.ID
}

// auditCall is a call of the fixture trail.
func auditCall(email, agent, tool, upstream, decision string) audit.Call {
	return audit.Call{
		RequestID: "req-" + uniq(),
		User:      audit.User{Issuer: "https://idp.acme.example", Subject: "sub-" + strings.Split(email, "@")[0], Email: email},
		Agent:     agent, Tool: tool, Upstream: upstream, UpstreamName: strings.ToUpper(upstream[:1]) + upstream[1:],
		Method: "GET", PathTemplate: "/things", Scopes: []string{"things:read"},
		Decision: decision, Rule: "default", Reason: map[string]string{"allow": "allowed", "deny": "kill switch: agent", "approval": "needs 2 approvals"}[decision],
	}
}

// record writes a call at the given time, with an outcome if allowed.
func (g *governServices) record(t *testing.T, tenant uuid.UUID, at time.Time, c audit.Call) int64 {
	t.Helper()
	g.clock.Set(at)
	seq, err := g.writer.Intent(context.Background(), tenant, c)
	require.NoError(t, err)
	if c.Decision == audit.DecisionAllow {
		_, err = g.writer.Outcome(context.Background(), tenant, seq, audit.Outcome{Status: 200, Latency: 12 * time.Millisecond})
		require.NoError(t, err)
	}
	return seq
}

// TestGovernViewerCannotPost: a viewer reads the governance pages, sees no
// forms that change anything, and every POST is refused.
func TestGovernViewerCannotPost(t *testing.T) {
	t.Parallel()
	b, _ := setupGovern(t)
	owner, slug, _ := b.newOwner(t, "Viewer Co")
	viewer, _ := b.joinAs(t, owner, slug, "viewer")
	tp := "/console/t/" + slug

	for _, page := range []string{"/policies", "/approvals", "/approvals/settings", "/audit"} {
		r := viewer.get(tp + page)
		require.Equal(t, http.StatusOK, r.status, page)
		for _, form := range []string{"agent-form", "kill-agent-form", "check-form", "approval-settings-save", "retention-save", "policy-settings-save"} {
			require.NotContains(t, r.body, `data-testid="`+form+`"`, page)
		}
	}
	for _, path := range []string{"/policies/settings", "/policies/agents", "/policies/agents/remove", "/policies/kill-switches",
		"/policies/kill-switches/clear", "/policies/check", "/approvals/settings", "/audit/retention"} {
		r := viewer.post(tp+path, url.Values{"kind": {"agent"}, "value": {"x"}, "client_id": {"x"}, "condition": {"true"},
			"time_zone": {"UTC"}, "agent_default": {"deny"}, "approvals_default": {"2"}, "retention_days": {"30"}})
		require.Equal(t, http.StatusForbidden, r.status, path)
	}
	// Nothing changed.
	r := owner.get(tp + "/policies")
	require.Contains(t, r.body, `data-testid="agents-empty"`)
	require.Contains(t, r.body, `data-testid="kill-empty"`)
}

// TestGovernFieldErrors: refused input shows under its field (and in the
// summary), with 422, and the page keeps what was typed.
func TestGovernFieldErrors(t *testing.T) {
	t.Parallel()
	b, _ := setupGovern(t)
	owner, slug, _ := b.newOwner(t, "Errors Co")
	tp := "/console/t/" + slug + "/policies"

	tests := []struct {
		name         string
		path         string
		form         url.Values
		wantStatus   int
		wantContains []string
	}{
		{"bad time zone", "/settings", url.Values{"agent_default": {"allow"}, "approvals_default": {"2"}, "time_zone": {"Mars/Olympus_Mons"}},
			422, []string{`data-testid="policy-time-zone-error"`, "Unknown time zone", `value="Mars/Olympus_Mons"`, `data-testid="error-summary"`, `href="#policy-time-zone"`}},
		{"approvals not a number", "/settings", url.Values{"agent_default": {"allow"}, "approvals_default": {"two"}, "time_zone": {"UTC"}},
			422, []string{`data-testid="policy-approvals-default-error"`, "from 1 to 10"}},
		{"approvals out of range", "/settings", url.Values{"agent_default": {"allow"}, "approvals_default": {"11"}, "time_zone": {"UTC"}},
			422, []string{`data-testid="policy-approvals-default-error"`, "between 1 and 10"}},
		{"client id with a space", "/agents", url.Values{"client_id": {"claude desktop"}},
			422, []string{`data-testid="agent-client-id-error"`, "no spaces", `value="claude desktop"`}},
		{"empty client id", "/agents", url.Values{"client_id": {"  "}, "note": {"kept"}},
			422, []string{`data-testid="agent-client-id-error"`, "client id", `value="kept"`}},
		{"kill switch for a user without subject", "/kill-switches", url.Values{"kind": {"user"}, "issuer": {"https://idp.acme.example"}},
			422, []string{`data-testid="kill-user-value-error"`, "subject"}},
		{"kill switch for an agent with a bad id", "/kill-switches", url.Values{"kind": {"agent"}, "value": {"two words"}},
			422, []string{`data-testid="kill-agent-value-error"`, "no spaces"}},
		{"invalid CEL points at line and column", "/check", url.Values{"condition": {`"finance" in principle.groups`}},
			422, []string{`data-testid="check-condition-error"`, "Line 1, column 14", "undeclared reference to &#39;principle&#39;"}},
		{"invalid CEL on a second line", "/check", url.Values{"condition": {"args.amount < 1000 &&\n  principal.emial == \"x\""}},
			422, []string{`data-testid="check-condition-error"`, "Line 2, column"}},
		{"a condition that isn't a decision", "/check", url.Values{"condition": {`args.amount + 1`}},
			422, []string{`data-testid="check-condition-error"`}},
		{"sample JSON with a syntax error", "/check", url.Values{"condition": {"true"}, "principal": {"{\n  \"groups\": [}"}},
			422, []string{`data-testid="check-principal-error"`, "line 2, column"}},
		{"sample with an unknown field", "/check", url.Values{"condition": {"true"}, "principal": {`{"group": ["x"]}`}},
			422, []string{`data-testid="check-principal-error"`, "unknown field"}},
		{"empty condition", "/check", url.Values{"condition": {""}},
			422, []string{`data-testid="check-condition-error"`, "Enter a condition"}},
		{"a condition that holds for approval", "/check", url.Values{"condition": {`args.amount < 1000 ? "allow" : "approval"`}, "args": {`{"amount": 5000}`}},
			200, []string{`data-testid="check-result"`, `data-effect="approval"`, "Needs approval"}},
		{"working hours in the tenant's time zone", "/check", url.Values{
			"condition": {"now.getDayOfWeek(tz) >= 1 && now.getDayOfWeek(tz) <= 5 && now.getHours(tz) >= 9 && now.getHours(tz) < 18"},
			"at":        {"2026-03-07T10:00"}}, // a Saturday
			200, []string{`data-effect="deny"`, "Sat 7 Mar 2026 10:00 UTC"}},
		{"a missing argument denies and says why", "/check", url.Values{"condition": {"args.amount < 1000"}, "args": {`{}`}},
			200, []string{`data-effect="deny"`, `data-testid="check-problem"`, "amount"}},
		{"finance group allows", "/check", url.Values{"condition": {`"finance" in principal.groups`}, "principal": {`{"groups": ["finance"]}`}},
			200, []string{`data-effect="allow"`, "Allowed"}},
	}
	for _, tc := range tests {
		r := owner.post(tp+tc.path, tc.form)
		require.Equal(t, tc.wantStatus, r.status, "%s: %s", tc.name, r.body)
		for _, want := range tc.wantContains {
			require.Contains(t, r.body, want, tc.name)
		}
	}

	// A valid change saves and says so.
	r := owner.post(tp+"/settings", url.Values{"agent_default": {"deny"}, "approvals_default": {"3"}, "time_zone": {"Europe/Paris"}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	r = owner.get(r.location)
	require.Contains(t, r.body, `data-testid="notice"`)
	require.Contains(t, r.body, `value="Europe/Paris"`)
	require.NotContains(t, r.body, `data-testid="agents-open"`)

	// The approval settings page shows the same default and refuses a bad TTL.
	r = owner.get("/console/t/" + slug + "/approvals/settings")
	require.Equal(t, http.StatusOK, r.status)
	require.Regexp(t, `data-testid="approvals-default"[^>]*value="3"|value="3"[^>]*data-testid="approvals-default"`, r.body)
	r = owner.post("/console/t/"+slug+"/approvals/settings", url.Values{"approver_group": {"release-approvers"}, "ttl_minutes": {"0"}, "approvals_default": {"2"}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status, r.body)
	require.Contains(t, r.body, `data-testid="approvals-ttl-error"`)
	r = owner.post("/console/t/"+slug+"/approvals/settings", url.Values{"approver_group": {"release-approvers"}, "ttl_minutes": {"30"}, "approvals_default": {"2"}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	r = owner.get(r.location)
	require.Contains(t, r.body, `value="release-approvers"`)
	require.Contains(t, r.body, `value="30"`)
	r = owner.get(tp)
	require.Contains(t, r.body, `value="2"`, "the approvals default is shared with the Policies page")
}

// TestGovernKillSwitchAndAllowList: a kill switch turned on is listed and
// enforced by the engine; turned off, it is gone. The same for agents.
func TestGovernKillSwitchAndAllowList(t *testing.T) {
	t.Parallel()
	b, g := setupGovern(t)
	owner, slug, email := b.newOwner(t, "Kill Co")
	tp := "/console/t/" + slug + "/policies"
	tid := tenantID(t, b, slug)

	r := owner.post(tp+"/kill-switches", url.Values{"kind": {"agent"}, "value": {"rogue-agent"}, "reason": {"deleting <b>everything</b>"}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Equal(t, tp+"?done=kill-on#kill-switches", r.location)
	r = owner.get(tp + "?done=kill-on")
	require.Contains(t, r.body, `data-testid="kill-row" data-kind="agent" data-value="rogue-agent"`)
	require.Contains(t, r.body, "deleting &lt;b&gt;everything&lt;/b&gt;")
	require.Contains(t, r.body, "by "+email)
	require.Contains(t, r.body, "The kill switch is on")

	d, err := g.policy.Decide(context.Background(), tid, policy.Principal{Issuer: "https://idp", Subject: "u", Agent: "rogue-agent"},
		policy.ToolInfo{Name: "x", Risk: tenants.RiskRead}, nil)
	require.NoError(t, err)
	require.Equal(t, policy.EffectDeny, d.Effect)
	require.Equal(t, policy.RuleKillAgent, d.Rule)

	r = owner.post(tp+"/kill-switches", url.Values{"kind": {"user"}, "issuer": {"https://idp.acme.example"}, "value": {"sub-123"}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	r = owner.get(tp)
	require.Contains(t, r.body, `data-kind="user" data-value="sub-123"`)

	r = owner.post(tp+"/kill-switches/clear", url.Values{"kind": {"agent"}, "value": {"rogue-agent"}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	r = owner.get(tp)
	require.NotContains(t, r.body, `data-value="rogue-agent"`)
	r = owner.post(tp+"/kill-switches/clear", url.Values{"kind": {"agent"}, "value": {"rogue-agent"}})
	require.Equal(t, http.StatusNotFound, r.status)

	r = owner.post(tp+"/agents", url.Values{"client_id": {"claude-desktop"}, "note": {"Desktop app"}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	r = owner.get(tp)
	require.Contains(t, r.body, `data-testid="agent-row" data-client-id="claude-desktop"`)
	require.Contains(t, r.body, `data-testid="agents-open"`)
	r = owner.post(tp+"/agents/remove", url.Values{"client_id": {"claude-desktop"}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	r = owner.get(tp)
	require.Contains(t, r.body, `data-testid="agents-empty"`)
}

// fixtureTrail writes the calls the audit tests filter: returns the base
// time (the first call; one call per minute after it).
func fixtureTrail(t *testing.T, g *governServices, tenant uuid.UUID) time.Time {
	t.Helper()
	t0 := time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)
	calls := []audit.Call{
		auditCall("engineer@acme.example", "claude-desktop", "tasks.list", "tasks", audit.DecisionAllow),
		auditCall("engineer@acme.example", "claude-desktop", "tasks.delete", "tasks", audit.DecisionApproval),
		auditCall("engineer@acme.example", "cursor", "tasks.list", "tasks", audit.DecisionAllow),
		auditCall("analyst@acme.example", "claude-desktop", "invoices.pay", "billing", audit.DecisionDeny),
		auditCall("analyst@acme.example", "cursor", "invoices.list", "billing", audit.DecisionAllow),
		auditCall("analyst@acme.example", "cursor", "invoices.pay", "billing", audit.DecisionDeny),
	}
	for i, c := range calls {
		g.record(t, tenant, t0.Add(time.Duration(i)*time.Minute), c)
	}
	return t0
}

var auditRowRE = regexp.MustCompile(`data-testid="audit-row" data-seq="(\d+)" data-decision="(\w+)"`)

// TestGovernAuditFilters: each filter narrows the list; bad filters show
// under their field.
func TestGovernAuditFilters(t *testing.T) {
	t.Parallel()
	b, g := setupGovern(t)
	owner, slug, _ := b.newOwner(t, "Audit Co")
	tp := "/console/t/" + slug + "/audit"

	r := owner.get(tp)
	require.Contains(t, r.body, `data-testid="audit-empty"`)
	require.NotContains(t, r.body, `data-testid="audit-export-csv"`+"X")

	fixtureTrail(t, g, tenantID(t, b, slug))
	tests := []struct {
		name      string
		query     string
		wantRows  int
		wantEvery string // every row's decision, if set
		want      []string
	}{
		{"everything, newest first", "", 6, "", []string{"analyst@acme.example</em> via <em>cursor</em> called <em>invoices.pay</em> on <em>Billing</em> — denied: kill switch: agent"}},
		{"by user email", "?user=analyst@acme.example", 3, "", nil},
		{"by user email, any case", "?user=ANALYST@acme.example", 3, "", nil},
		{"by subject", "?user=sub-engineer", 3, "", nil},
		{"by agent", "?agent=cursor", 3, "", nil},
		{"by tool", "?tool=invoices.pay", 2, "deny", nil},
		{"by upstream", "?upstream=tasks", 3, "", nil},
		{"by decision", "?decision=allow", 3, "allow", []string{"allowed, 200 in 12 ms"}},
		{"held for approval", "?decision=approval", 1, "approval", []string{"Held for approval"}},
		{"combined", "?user=analyst@acme.example&agent=cursor&decision=deny", 1, "deny", nil},
		{"time range", "?from=2026-03-04T09:01&to=2026-03-04T09:03", 2, "", []string{`value="2026-03-04T09:01"`}},
		{"time range in RFC 3339", "?from=2026-03-04T10:01:00%2B01:00", 5, "", nil},
		{"nothing matches", "?agent=nobody", 0, "", []string{`data-testid="audit-no-match"`}},
	}
	for _, tc := range tests {
		r := owner.get(tp + tc.query)
		require.Equal(t, http.StatusOK, r.status, tc.name)
		rows := auditRowRE.FindAllStringSubmatch(r.body, -1)
		require.Len(t, rows, tc.wantRows, tc.name)
		for _, m := range rows {
			if tc.wantEvery != "" {
				require.Equal(t, tc.wantEvery, m[2], tc.name)
			}
		}
		for _, want := range tc.want {
			require.Contains(t, r.body, want, tc.name)
		}
		if tc.wantRows > 0 {
			// The export links carry the same filter, without a cursor.
			require.Contains(t, r.body, `data-testid="audit-export-csv"`, tc.name)
		}
	}

	for _, tc := range []struct{ query, testid string }{
		{"?decision=maybe", "audit-decision-error"},
		{"?from=yesterday", "audit-from-error"},
		{"?from=2026-03-04T10:00&to=2026-03-04T09:00", "audit-to-error"},
	} {
		r := owner.get(tp + tc.query)
		require.Equal(t, http.StatusUnprocessableEntity, r.status, tc.query)
		require.Contains(t, r.body, `data-testid="`+tc.testid+`"`, tc.query)
	}

	// One event's page; another number is a 404.
	first := auditRowRE.FindStringSubmatch(owner.get(tp + "?decision=approval").body)
	r = owner.get(tp + "/" + first[1])
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, "needs 2 approvals")
	require.Contains(t, r.body, "tasks.delete")
	require.Equal(t, http.StatusNotFound, owner.get(tp+"/999999").status)
	require.Equal(t, http.StatusNotFound, owner.get(tp+"/nope").status)

	// Retention: refused out of range, saved in range.
	r = owner.post(tp+"/retention", url.Values{"retention_days": {"3"}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.Contains(t, r.body, `data-testid="audit-retention-days-error"`)
	r = owner.post(tp+"/retention", url.Values{"retention_days": {"90"}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Contains(t, owner.get(tp).body, `value="90"`)

	// Verify: the unsealed trail verifies, and says what isn't sealed yet.
	r = owner.get(tp + "/verify")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `data-testid="verify-ok"`)
	require.Contains(t, r.body, "9 records are newer than the last seal")
}

// TestGovernAuditPagination: keyset pages of 50 cover every call once.
func TestGovernAuditPagination(t *testing.T) {
	t.Parallel()
	b, g := setupGovern(t)
	owner, slug, _ := b.newOwner(t, "Pages Co")
	tid := tenantID(t, b, slug)
	t0 := time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)
	for i := range 120 {
		g.record(t, tid, t0.Add(time.Duration(i)*time.Second), auditCall("engineer@acme.example", "cursor", "tasks.list", "tasks", audit.DecisionDeny))
	}
	seen := map[string]bool{}
	path := "/console/t/" + slug + "/audit?decision=deny"
	for pages := 0; path != ""; pages++ {
		require.Less(t, pages, 4)
		r := owner.get(path)
		require.Equal(t, http.StatusOK, r.status)
		for _, m := range auditRowRE.FindAllStringSubmatch(r.body, -1) {
			require.False(t, seen[m[1]], "call %s twice", m[1])
			seen[m[1]] = true
		}
		path = ""
		if m := regexp.MustCompile(`href="([^"]+)" data-testid="audit-next"`).FindStringSubmatch(r.body); m != nil {
			path = strings.ReplaceAll(m[1], "&amp;", "&")
			require.Contains(t, path, "decision=deny", "the next page keeps the filter")
		}
	}
	require.Len(t, seen, 120)
}

// TestGovernAuditExport: the CSV and JSON Lines exports are attachments
// of exactly the filtered calls.
func TestGovernAuditExport(t *testing.T) {
	t.Parallel()
	b, g := setupGovern(t)
	owner, slug, _ := b.newOwner(t, "Export Co")
	fixtureTrail(t, g, tenantID(t, b, slug))
	tp := "/console/t/" + slug + "/audit"

	r := owner.get(tp + "/export.csv?user=analyst@acme.example&decision=deny")
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Equal(t, "text/csv; charset=utf-8", r.header.Get("Content-Type"))
	require.Regexp(t, `^attachment; filename=audit-`+slug+`-\d{8}-\d{6}\.csv$`, r.header.Get("Content-Disposition"))
	recs, err := csv.NewReader(strings.NewReader(r.body)).ReadAll()
	require.NoError(t, err)
	require.Equal(t, audit.CSVHeader, recs[0])
	require.Len(t, recs, 3, "the header and the two matching calls")
	col := func(name string) int {
		for i, h := range recs[0] {
			if h == name {
				return i
			}
		}
		t.Fatalf("no column %s", name)
		return -1
	}
	for _, rec := range recs[1:] {
		require.Equal(t, "analyst@acme.example", rec[col("user_email")])
		require.Equal(t, "deny", rec[col("decision")])
		require.Equal(t, "invoices.pay", rec[col("tool")])
	}

	r = owner.get(tp + "/export.jsonl?agent=claude-desktop")
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.header.Get("Content-Disposition"), ".jsonl")
	sc := bufio.NewScanner(strings.NewReader(r.body))
	n := 0
	for sc.Scan() {
		var e audit.Event
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e))
		require.Equal(t, "claude-desktop", e.Agent)
		n++
	}
	require.Equal(t, 3, n)

	// An empty selection is still a file (the CSV has its header).
	r = owner.get(tp + "/export.csv?agent=nobody")
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, strings.Join(audit.CSVHeader, ",")+"\n", r.body)
	r = owner.get(tp + "/export.jsonl?agent=nobody")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.header.Get("Content-Disposition"), "attachment")
	require.Empty(t, r.body)

	// A bad filter is an error page, not a download.
	r = owner.get(tp + "/export.csv?decision=maybe")
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Empty(t, r.header.Get("Content-Disposition"))

	// Another tenant's owner exports nothing of this tenant.
	other, otherSlug, _ := b.newOwner(t, "Other Co")
	require.Equal(t, http.StatusNotFound, other.get(tp+"/export.csv").status)
	r = other.get("/console/t/" + otherSlug + "/audit/export.csv")
	require.Equal(t, strings.Join(audit.CSVHeader, ",")+"\n", r.body)
}

// TestGovernNamesRenderInert: names from tokens and tool registrations
// (emails, tool names, agents, reasons) are text in audit rows, never markup.
func TestGovernNamesRenderInert(t *testing.T) {
	t.Parallel()
	b, g := setupGovern(t)
	owner, slug, _ := b.newOwner(t, "Inert Co")
	tid := tenantID(t, b, slug)
	c := auditCall("x@acme.example", `agent"><img src=x onerror=alert(1)>`, "<script>alert(1)</script>", "tasks", audit.DecisionDeny)
	c.User.Email = "<script>alert(2)</script>@evil.example"
	c.Reason = "<b>bold</b>"
	seq := g.record(t, tid, time.Now(), c)

	for _, path := range []string{"/audit", "/audit/" + itoa(int(seq))} {
		r := owner.get("/console/t/" + slug + path)
		require.Equal(t, http.StatusOK, r.status, path)
		for _, raw := range []string{"<script>alert(1)", "<script>alert(2)", "<img src=x", "<b>bold</b>"} {
			require.NotContains(t, r.body, raw, path)
		}
		require.Contains(t, r.body, "&lt;script&gt;alert(1)&lt;/script&gt;", path)
		require.Contains(t, r.body, "&lt;script&gt;alert(2)&lt;/script&gt;@evil.example", path)
	}
}

// newApproval holds a call for approval in tenant.
func newApproval(t *testing.T, g *governServices, tenant uuid.UUID, args string) approvals.Request {
	t.Helper()
	rq, created, err := g.approvals.Request(context.Background(), tenant, approvals.NewRequest{
		Tool: "tasks.delete", Upstream: "acme-tasks", Risk: tenants.RiskDestructive, Args: json.RawMessage(args),
		Requester: approvals.Person{Issuer: "https://idp.acme.example", Subject: "u-req", Email: "engineer@acme.example"},
		Agent:     "claude-desktop", Rule: policy.RuleDestructive, Reason: "needs 2 approvals", RequestID: "req-1",
	})
	require.NoError(t, err)
	require.True(t, created)
	return rq
}

// TestGovernApprovals: the list, the detail with folded long values, the
// sidebar badge, and another tenant's request is a 404.
func TestGovernApprovals(t *testing.T) {
	t.Parallel()
	b, g := setupGovern(t)
	ownerA, slugA, _ := b.newOwner(t, "Tenant A")
	ownerB, slugB, _ := b.newOwner(t, "Tenant B")
	long := strings.Repeat("x", 500)
	rqB := newApproval(t, g, tenantID(t, b, slugB), `{"id": 42, "note": "`+long+`", "nested": {"ok": true, "list": [1, 2.50]}}`)

	// A sees nothing of B's request.
	r := ownerA.get("/console/t/" + slugA + "/approvals")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `data-testid="approvals-empty"`)
	require.NotContains(t, r.body, `data-testid="nav-approvals-count"`)
	require.Equal(t, http.StatusNotFound, ownerA.get("/console/t/"+slugA+"/approvals/"+rqB.ID.String()).status)
	require.Equal(t, http.StatusNotFound, ownerA.get("/console/t/"+slugA+"/approvals/not-an-id").status)
	// And A's owner is not a member of B.
	require.Equal(t, http.StatusNotFound, ownerA.get("/console/t/"+slugB+"/approvals/"+rqB.ID.String()).status)

	r = ownerB.get("/console/t/" + slugB + "/approvals")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `data-testid="approval-row" data-id="`+rqB.ID.String()+`" data-status="pending"`)
	require.Regexp(t, `data-testid="nav-approvals-count"><span class="visually-hidden">\(</span>1<`, r.body)
	require.Contains(t, r.body, `<strong>0</strong>/2`)
	require.Contains(t, r.body, "engineer@acme.example")
	require.Contains(t, r.body, "id=42")

	r = ownerB.get("/console/t/" + slugB + "/approvals?status=rejected")
	require.Contains(t, r.body, `data-testid="approvals-no-match"`)

	r = ownerB.get("/console/t/" + slugB + "/approvals/" + rqB.ID.String())
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `data-testid="json-fold"`)
	require.Contains(t, r.body, "500 characters")
	require.Contains(t, r.body, `<span class="json-number">2.50</span>`, "numbers are shown exactly as sent")
	require.Contains(t, r.body, policy.RuleDestructive)
	require.Contains(t, r.body, "/t/"+slugB+"/approvals/"+rqB.ID.String(), "the approver link")
	require.Contains(t, r.body, `data-testid="votes-empty"`)
}

func TestGovernJSONLines(t *testing.T) {
	t.Parallel()
	join := func(ls []views.JSONLine) string {
		var b strings.Builder
		for _, l := range ls {
			b.WriteString(l.Indent)
			if l.Key != "" {
				b.WriteString(l.Key + ": ")
			}
			b.WriteString(l.Value)
			if l.Comma {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
		return b.String()
	}
	require.Equal(t, "{\n  \"a\": 1,\n  \"b\": [\n    true,\n    null\n  ],\n  \"c\": {},\n  \"d\": \"x\"\n}\n",
		join(jsonLines(json.RawMessage(`{"a":1,"b":[true,null],"c":{},"d":"x"}`))))
	require.Equal(t, "{}\n", join(jsonLines(nil)))
	require.Equal(t, "[]\n", join(jsonLines(json.RawMessage(`[]`))))
}

// TestGovernSentenceParts: the emphasised parts always read as audit.Sentence.
func TestGovernSentenceParts(t *testing.T) {
	t.Parallel()
	for _, e := range []audit.Event{
		{User: audit.User{Email: "engineer@acme.example"}, Agent: "claude-desktop", Tool: "tasks.delete", UpstreamName: "Acme Tasks",
			Decision: audit.DecisionApproval, Reason: "needs 2 approvals"},
		{User: audit.User{Subject: "u-1"}, Tool: "tasks.list", Decision: audit.DecisionAllow,
			Outcome: &audit.OutcomeRecord{Status: 200, Latency: 3 * time.Millisecond}},
		{Tool: "x", Decision: audit.DecisionDeny},
	} {
		var b strings.Builder
		for _, p := range sentenceParts(e) {
			b.WriteString(p.Text)
		}
		require.Equal(t, audit.Sentence(e), b.String())
	}
	parts := sentenceParts(audit.Event{User: audit.User{Email: "a@b"}, Agent: "ag", Tool: "t", Upstream: "up", Decision: audit.DecisionDeny})
	var em []string
	for _, p := range parts {
		if p.Em {
			em = append(em, p.Text)
		}
	}
	require.Equal(t, []string{"a@b", "ag", "t", "up"}, em)
}
