package web

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/web/views"
)

// dashboardDays is how many UTC days the calls chart covers (today last).
const dashboardDays = 14

// activity is what the dashboard shows besides setup: whether agents have
// connected and called (from the audit trail and grants), calls per day,
// and the grants, denials and approvals cards.
type activity struct {
	// CallsPerDay is one entry per day, oldest first.
	CallsPerDay []dayCount
	// ActiveGrants and PendingApprovals are counts; RecentDenials newest first.
	ActiveGrants     int
	PendingApprovals int
	RecentDenials    []tenants.Denial
	// AgentConnected is true once any agent presented a valid token.
	AgentConnected bool
	// CallSucceeded is true once any tool call succeeded.
	CallSucceeded bool
}

// dayCount is the number of tool calls on one (UTC) day; Denied of them
// were denied.
type dayCount struct {
	Day    time.Time
	Calls  int
	Denied int
}

// overviewModel builds the Overview page: the checklist from the setup
// counts and activity, the dashboard from activity.
func overviewModel(f views.Frame, counts tenants.SetupCounts, act activity) views.OverviewPage {
	slug := f.Tenant.Slug
	p := views.OverviewPage{
		Frame: f,
		Steps: []views.Step{
			{N: 1, Key: "idp", Title: "Connect your IdP", Href: views.SectionHref(slug, "idp"), Done: counts.IdPs > 0,
				Body: "Register your company's identity provider (Okta, Entra ID, Auth0, Keycloak, Google or any OIDC provider). Agents present tokens it issues."},
			{N: 2, Key: "upstream", Title: "Add an upstream", Href: views.SectionHref(slug, "upstreams"), Done: counts.Upstreams > 0,
				Body: "Register an API that agents act on, and how users grant access to it."},
			{N: 3, Key: "tools", Title: "Add tools", Href: views.SectionHref(slug, "tools"), Done: counts.Tools > 0,
				Body: "Define the operations agents may call, by hand or imported from an OpenAPI document."},
			{N: 4, Key: "agent", Title: "Connect an agent", Href: views.SectionHref(slug, "mcp"), Done: act.AgentConnected,
				Body: "Point an MCP client at this tenant's MCP URL."},
			{N: 5, Key: "call", Title: "Try a call", Href: views.SectionHref(slug, "audit"), Done: act.CallSucceeded,
				Body: "Ask the agent to use a tool, then see the call in the audit trail."},
		},
		Calls: callsChart(act.CallsPerDay),
		Grants: views.EmptyState{TestID: "grants-empty", Title: "No active grants yet",
			Body: "When someone allows an agent to use an upstream on their behalf, the grant appears here with its scopes and when it was last used."},
		Denials: views.EmptyState{TestID: "denials-empty", Title: "No denials",
			Body: "Calls refused by a policy appear here with the reason, so you can tell a misconfiguration from an agent overreaching."},
		Approvals: views.EmptyState{TestID: "approvals-empty", Title: "Nothing waiting for approval",
			Body: "Destructive tool calls that need a second person wait here until enough approvers agree."},
	}
	for _, s := range p.Steps {
		if s.Done {
			p.StepsDone++
		}
	}
	return p
}

// callsChart lays out calls per day as bars (see layoutBars), with a
// summary sentence and a table. With no calls at all it is an empty state.
func callsChart(days []dayCount) views.Chart {
	c := views.Chart{
		ID:    "calls-chart",
		Title: "Tool calls per day",
		Empty: views.EmptyState{TestID: "calls-empty", Title: "No calls yet",
			Body: "Calls appear here once agents connect and start using tools. Follow the steps above to connect your first agent."},
		Series:  []views.ChartSeries{{Key: "calls", Label: "Calls", Tone: "accent"}},
		Columns: []string{"Day", "Calls"},
	}
	total, denied, peak, peakDay := 0, 0, 0, time.Time{}
	data := chartData{Days: make([]time.Time, len(days)), Values: make([][]int, len(days)), BarLabel: func(i int) string {
		d := days[i]
		return fmt.Sprintf("%s: %s%s", d.Day.UTC().Format("2 Jan"), plural(d.Calls, "call"), deniedNote(d.Denied))
	}}
	for i, d := range days {
		total += d.Calls
		denied += d.Denied
		if d.Calls > peak {
			peak, peakDay = d.Calls, d.Day
		}
		data.Days[i], data.Values[i] = d.Day, []int{d.Calls}
	}
	if total == 0 {
		c.IsEmpty = true
		return c
	}
	c.Series[0].Total = strconv.Itoa(total)
	layoutBars(&c, data)
	for _, d := range days {
		c.Rows = append(c.Rows, views.ChartRow{Label: formatDate(d.Day), Values: []string{strconv.Itoa(d.Calls) + deniedNote(d.Denied)}})
	}
	c.Summary = fmt.Sprintf("%s in the last %s; the busiest day was %s with %s.",
		plural(total, "call"), plural(len(days), "day"), peakDay.UTC().Format("2 Jan"), plural(peak, "call"))
	if denied > 0 {
		c.Summary += fmt.Sprintf(" %d of them denied.", denied)
	}
	return c
}

// deniedNote is " (n denied)", or "" for none.
func deniedNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d denied)", n)
}

// dashboardCards fills the Overview's grants, denials and approvals cards.
func dashboardCards(slug string, act activity) views.DashboardCards {
	d := views.DashboardCards{
		ActiveGrants:     act.ActiveGrants,
		GrantsHref:       views.SectionHref(slug, "audit"),
		PendingApprovals: act.PendingApprovals,
		ApprovalsHref:    views.SectionHref(slug, "approvals"),
		DenialsHref:      views.SectionHref(slug, "audit") + "?decision=deny",
	}
	for _, x := range act.RecentDenials {
		d.Denials = append(d.Denials, views.DenialRow{
			At: x.At.UTC().Format(time.RFC3339), When: formatTime(x.At),
			UserEmail: x.UserEmail, Agent: x.Agent, Tool: x.Tool, Reason: x.Reason,
		})
	}
	return d
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func itoa(n int) string { return strconv.Itoa(n) }

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// overview is a tenant's home page.
func (s *Server) overview(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	f, err := s.consoleFrame(r, c, "overview")
	if err != nil {
		return err
	}
	f.Head.Title = c.Tenant.Name
	counts, err := s.cfg.Tenants.SetupCounts(r.Context(), c.Tenant.ID)
	if err != nil {
		return err
	}
	ca, err := s.cfg.Tenants.ConsoleActivity(r.Context(), c.Tenant.ID)
	if err != nil {
		return err
	}
	dash, err := s.cfg.Tenants.Dashboard(r.Context(), c.Tenant.ID, dashboardDays)
	if err != nil {
		return err
	}
	act := activity{AgentConnected: ca.AgentConnected, CallSucceeded: ca.CallSucceeded,
		ActiveGrants: dash.ActiveGrants, PendingApprovals: dash.PendingApprovals, RecentDenials: dash.RecentDenials}
	for _, d := range dash.CallsPerDay {
		act.CallsPerDay = append(act.CallsPerDay, dayCount{Day: d.Day, Calls: d.Allowed + d.Denied, Denied: d.Denied})
	}
	return s.render(w, r, http.StatusOK, views.OverviewDashboard(overviewModel(f, counts, act), dashboardCards(c.Tenant.Slug, act)))
}
