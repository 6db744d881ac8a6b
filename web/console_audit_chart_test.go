package web

import (
	"bytes"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/audit"
	"github.com/locksmithhq/locksmith/web/views"
)

// TestDecisionsChart checks the stacked layout of decisions per day, its
// legend and text fallback, and its empty and refused states.
func TestDecisionsChart(t *testing.T) {
	t.Parallel()
	day := func(d int) time.Time { return time.Date(2026, 3, d, 0, 0, 0, 0, time.UTC) }
	days := []audit.DayDecisions{
		{Day: day(2), Allow: 3, Deny: 1, Approval: 1},
		{Day: day(3)},
		{Day: day(4), Allow: 1, Deny: 2},
	}

	c := decisionsChart(days, false, nil)
	require.False(t, c.IsEmpty)
	require.Equal(t, "Decisions per day", c.Title)
	require.Equal(t, "2 Mar 2026 – 4 Mar 2026: 8 calls — 4 allowed, 3 denied, 1 held for approval.", c.Summary)
	require.Equal(t, []string{"4", "3", "1"}, []string{c.Series[0].Total, c.Series[1].Total, c.Series[2].Total})
	require.Equal(t, []string{"0", "2", "5"}, []string{c.YTicks[0].Label, c.YTicks[1].Label, c.YTicks[2].Label})
	require.Len(t, c.Bars, 3)
	// 5 calls fill the 160-unit plot: allowed 96, then denied and held 32 each, bottom up.
	b := c.Bars[0]
	require.Equal(t, "2 Mar: 5 calls — 3 allowed, 1 denied, 1 held for approval", b.Label)
	require.Equal(t, []string{"12.0", "160.0"}, []string{b.Y, b.H})
	require.Equal(t, []views.Segment{
		{Y: "76.0", H: "96.0", Class: "bar tone-success"},
		{Y: "44.0", H: "32.0", Class: "bar", Fill: "url(#decisions-chart-deny)"},
		{Y: "12.0", H: "32.0", Class: "bar", Fill: "url(#decisions-chart-approval)"},
	}, b.Segments)
	require.Empty(t, c.Bars[1].Segments, "a day without calls has no segments")
	require.Equal(t, "0.0", c.Bars[1].H)
	require.Len(t, c.Bars[2].Segments, 2)
	require.Equal(t, []string{"2 Mar", "3 Mar", "4 Mar"}, []string{c.XTicks[0].Label, c.XTicks[1].Label, c.XTicks[2].Label})
	require.Equal(t, views.ChartRow{Label: "3 Mar 2026", Values: []string{"0", "0", "0"}}, c.Rows[1])
	require.Equal(t, views.ChartRow{Label: "4 Mar 2026", Values: []string{"1", "2", "0"}}, c.Rows[2])

	// The default range says so; one day is named alone.
	require.True(t, strings.HasPrefix(decisionsChart(days, true, nil).Summary, "Last 3 days: 8 calls — "))
	require.Equal(t, "4 Mar 2026: 3 calls — 1 allowed, 2 denied, 0 held for approval.", decisionsChart(days[2:], false, nil).Summary)
	require.Equal(t, "4 Mar 2026: 1 call — 1 allowed, 0 denied, 0 held for approval.",
		decisionsChart([]audit.DayDecisions{{Day: day(4), Allow: 1}}, false, nil).Summary)

	// No calls in range: words, no bars.
	zeros := []audit.DayDecisions{{Day: day(3)}, {Day: day(4)}}
	e := decisionsChart(zeros, true, nil)
	require.True(t, e.IsEmpty)
	require.Empty(t, e.Bars)
	require.Equal(t, "decisions-empty", e.Empty.TestID)
	require.Equal(t, "No calls in the last 2 days", e.Empty.Title)
	require.Equal(t, "No calls from 3 Mar 2026 to 4 Mar 2026", decisionsChart(zeros, false, nil).Empty.Title)
	r := decisionsChart(nil, false, tenants.Invalid("from", "the chart covers at most 366 days; narrow the time range"))
	require.True(t, r.IsEmpty)
	require.Equal(t, "decisions-refused", r.Empty.TestID)
	require.Contains(t, r.Empty.Body, "The chart covers at most 366 days")

	// Rendered: an SVG image named and described, a legend in words, no NaN.
	f := views.Frame{Tenant: views.TenantRef{Slug: "acme", Name: "Acme"}, Active: "audit"}
	var buf bytes.Buffer
	require.NoError(t, views.Audit(views.AuditPage{Frame: f, ShowDecisions: true, Decisions: c, Errors: views.Errors{}}).Render(t.Context(), &buf))
	html := buf.String()
	require.Contains(t, html, `role="img" aria-labelledby="decisions-chart-title decisions-chart-desc"`)
	require.Contains(t, html, `<title id="decisions-chart-title">Decisions per day</title>`)
	require.Contains(t, html, `<desc id="decisions-chart-desc">2 Mar 2026 – 4 Mar 2026: 8 calls — 4 allowed, 3 denied, 1 held for approval.</desc>`)
	require.Contains(t, html, `<pattern id="decisions-chart-deny"`)
	require.Contains(t, html, `<pattern id="decisions-chart-approval"`)
	require.Contains(t, html, `Denied: <strong>3</strong>`)
	require.NotContains(t, html, "NaN")
	buf.Reset()
	require.NoError(t, views.Audit(views.AuditPage{Frame: f, ShowDecisions: true, Decisions: e, Errors: views.Errors{}}).Render(t.Context(), &buf))
	require.Contains(t, buf.String(), `data-testid="decisions-empty"`)
	require.NotContains(t, buf.String(), "<svg")
}

var (
	decisionsDescRE = regexp.MustCompile(`<desc id="decisions-chart-desc">([^<]*)</desc>`)
	chartRowRE      = regexp.MustCompile(`<tr><th scope="row">([^<]*)</th><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td></tr>`)
)

// TestGovernAuditDecisionsChart: the Audit page charts the calls matching
// its filters per day: the last 14 days by default, the chosen range
// otherwise; another tenant's calls are not counted; no calls in range is
// said in words, and nothing matching shows no chart at all.
func TestGovernAuditDecisionsChart(t *testing.T) {
	t.Parallel()
	b, g := setupGovern(t)
	owner, slug, _ := b.newOwner(t, "Chart Co")
	tp := "/console/t/" + slug + "/audit"
	tid := tenantID(t, b, slug)

	// A tenant without calls has a list empty state and no chart.
	r := owner.get(tp)
	require.Contains(t, r.body, `data-testid="audit-empty"`)
	require.NotContains(t, r.body, `data-testid="audit-decisions"`)

	// The page counts days from the real clock: don't start within a
	// minute of UTC midnight, so "today" is the same day for the whole test.
	if left := time.Until(time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)); left < time.Minute {
		time.Sleep(left + time.Second)
	}
	// Recent calls: today, yesterday and three days ago; one 20 days ago.
	today := time.Now().UTC().Truncate(24 * time.Hour)
	at := func(daysAgo int, minute int) time.Time {
		return today.AddDate(0, 0, -daysAgo).Add(time.Duration(minute) * time.Minute)
	}
	g.record(t, tid, at(0, 1), auditCall("engineer@acme.example", "claude-desktop", "tasks.list", "tasks", audit.DecisionAllow))
	g.record(t, tid, at(0, 2), auditCall("engineer@acme.example", "cursor", "tasks.list", "tasks", audit.DecisionAllow))
	g.record(t, tid, at(0, 3), auditCall("engineer@acme.example", "claude-desktop", "tasks.delete", "tasks", audit.DecisionApproval))
	g.record(t, tid, at(1, 1), auditCall("analyst@acme.example", "cursor", "invoices.pay", "billing", audit.DecisionDeny))
	g.record(t, tid, at(1, 2), auditCall("analyst@acme.example", "cursor", "invoices.list", "billing", audit.DecisionAllow))
	g.record(t, tid, at(3, 1), auditCall("analyst@acme.example", "claude-desktop", "invoices.pay", "billing", audit.DecisionDeny))
	g.record(t, tid, at(20, 1), auditCall("engineer@acme.example", "claude-desktop", "tasks.archive", "tasks", audit.DecisionAllow))
	// Another tenant's calls today.
	_, otherSlug, _ := b.newOwner(t, "Other Co")
	otherID := tenantID(t, b, otherSlug)
	for range 4 {
		g.record(t, otherID, at(0, 5), auditCall("engineer@acme.example", "claude-desktop", "tasks.list", "tasks", audit.DecisionDeny))
	}

	summary := func(query string) (string, response) {
		t.Helper()
		r := owner.get(tp + query)
		require.Equal(t, http.StatusOK, r.status, query)
		require.Contains(t, r.body, `data-testid="audit-decisions"`, query)
		m := decisionsDescRE.FindStringSubmatch(r.body)
		if m == nil {
			return "", r
		}
		require.Contains(t, r.body, `<figcaption data-testid="decisions-chart-summary">`+m[1]+`</figcaption>`, query)
		return m[1], r
	}

	s, r := summary("")
	require.Equal(t, "Last 14 days: 6 calls — 3 allowed, 2 denied, 1 held for approval.", s)
	require.Contains(t, r.body, `<title id="decisions-chart-title">Decisions per day</title>`)
	require.Contains(t, r.body, `data-testid="decisions-chart-legend"`)
	require.Contains(t, r.body, `Allowed: <strong>3</strong>`)
	require.Contains(t, r.body, `Held for approval: <strong>1</strong>`)
	require.Equal(t, 2, strings.Count(r.body, `class="bar tone-success"`), "today and yesterday have allowed calls")
	require.Equal(t, 2, strings.Count(r.body, `fill="url(#decisions-chart-deny)"`))
	require.Equal(t, 1, strings.Count(r.body, `fill="url(#decisions-chart-approval)"`))
	require.NotContains(t, r.body, "NaN")
	rows := chartRowRE.FindAllStringSubmatch(r.body, -1)
	require.Len(t, rows, 14, "every day of the range, zeros included")
	require.Equal(t, []string{formatDate(at(0, 0)), "2", "0", "1"}, rows[13][1:])
	require.Equal(t, []string{formatDate(at(1, 0)), "1", "1", "0"}, rows[12][1:])
	require.Equal(t, []string{formatDate(at(2, 0)), "0", "0", "0"}, rows[11][1:])
	require.Equal(t, []string{formatDate(at(3, 0)), "0", "1", "0"}, rows[10][1:])
	require.Equal(t, []string{formatDate(at(13, 0)), "0", "0", "0"}, rows[0][1:])

	// The chart follows the page's filters.
	for _, tc := range []struct{ query, want string }{
		{"?decision=deny", "Last 14 days: 2 calls — 0 allowed, 2 denied, 0 held for approval."},
		{"?agent=cursor", "Last 14 days: 3 calls — 2 allowed, 1 denied, 0 held for approval."},
		{"?user=analyst@acme.example", "Last 14 days: 3 calls — 1 allowed, 2 denied, 0 held for approval."},
		{"?upstream=tasks", "Last 14 days: 3 calls — 2 allowed, 0 denied, 1 held for approval."},
		{"?tool=invoices.pay&agent=cursor", "Last 14 days: 1 call — 0 allowed, 1 denied, 0 held for approval."},
		{"?from=" + at(1, 0).Format("2006-01-02T15:04") + "&to=" + at(0, 0).Format("2006-01-02T15:04"),
			formatDate(at(1, 0)) + ": 2 calls — 1 allowed, 1 denied, 0 held for approval."},
		{"?from=" + at(3, 0).Format("2006-01-02T15:04") + "&to=" + at(0, 3).Format("2006-01-02T15:04"),
			formatDate(at(3, 0)) + " – " + formatDate(at(0, 0)) + ": 5 calls — 3 allowed, 2 denied, 0 held for approval."},
	} {
		s, _ := summary(tc.query)
		require.Equal(t, tc.want, s, tc.query)
	}

	// Matching calls, none in the last 14 days: said in words, no SVG.
	_, r = summary("?tool=tasks.archive")
	require.Len(t, auditRowRE.FindAllStringSubmatch(r.body, -1), 1)
	require.Contains(t, r.body, `data-testid="decisions-empty"`)
	require.Contains(t, r.body, "No calls in the last 14 days.")
	require.NotContains(t, r.body, "<svg")
	// A range too long to chart: said in words, the list still shown.
	_, r = summary("?from=" + at(800, 0).Format("2006-01-02T15:04"))
	require.Contains(t, r.body, `data-testid="decisions-refused"`)
	require.Contains(t, r.body, "The chart covers at most 366 days")
	require.Len(t, auditRowRE.FindAllStringSubmatch(r.body, -1), 7)
	// Nothing matches: the list says so, and there is no chart.
	r = owner.get(tp + "?agent=nobody")
	require.Contains(t, r.body, `data-testid="audit-no-match"`)
	require.NotContains(t, r.body, `data-testid="audit-decisions"`)
}
