package web

import (
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/audit"
	"github.com/locksmithhq/locksmith/web/views"
)

// The Audit pages: every call agents made, searchable, exportable and
// verifiable.
//
//	GET  /console/t/{tenant}/audit[?user=&agent=&tool=&upstream=&decision=&from=&to=&cursor=]  calls, newest first, 50 a page, under a chart of decisions per day
//	GET  /console/t/{tenant}/audit/export.csv[?same filters]    every matching call as CSV (attachment, streamed)
//	GET  /console/t/{tenant}/audit/export.jsonl[?same filters]  the same as JSON Lines
//	GET  /console/t/{tenant}/audit/{seq}                        one call
//	GET  /console/t/{tenant}/audit/verify                       verify the hash chain and show the report
//	POST /console/t/{tenant}/audit/retention                    how many days events are kept

// auditPageSize is how many calls one page of the list shows.
const auditPageSize = 50

// auditExportDeadline is how long an export may take to stream.
const auditExportDeadline = 30 * time.Minute

func auditHref(slug string) string { return views.SectionHref(slug, "audit") }

// auditRoutes registers the Audit pages under t.
func (s *Server) auditRoutes(t string) {
	viewer, admin := tenants.RoleViewer, tenants.RoleAdmin
	s.browser("GET "+t+"/audit", s.tenantAccess(viewer, s.auditPage))
	s.browser("GET "+t+"/audit/export.csv", s.tenantAccess(viewer, s.exportAudit("csv")))
	s.browser("GET "+t+"/audit/export.jsonl", s.tenantAccess(viewer, s.exportAudit("jsonl")))
	s.browser("GET "+t+"/audit/verify", s.tenantAccess(viewer, s.verifyAudit))
	s.browser("POST "+t+"/audit/retention", s.tenantAccess(admin, s.saveRetention))
	s.browser("GET "+t+"/audit/{seq}", s.tenantAccess(viewer, s.auditEventPage))
}

// auditFilterFrom reads the audit search from a query string, for the
// console and the API alike. Times are RFC 3339, or a date and time
// without zone (as a datetime-local input sends it) read as UTC. Errors
// are *tenants.Error naming the parameter.
func auditFilterFrom(q url.Values) (audit.Filter, views.AuditFilterForm, error) {
	get := func(k string) string { return strings.TrimSpace(q.Get(k)) }
	form := views.AuditFilterForm{User: get("user"), Agent: get("agent"), Tool: get("tool"), Upstream: get("upstream"),
		Decision: get("decision"), From: get("from"), To: get("to")}
	f := audit.Filter{User: form.User, Agent: form.Agent, Tool: form.Tool, Upstream: form.Upstream, Decision: form.Decision}
	switch f.Decision {
	case "", audit.DecisionAllow, audit.DecisionDeny, audit.DecisionApproval:
	default:
		return f, form, tenants.Invalid("decision", `the decision is "allow", "deny" or "approval"`)
	}
	for _, t := range []struct {
		name string
		raw  *string
		dst  *time.Time
	}{{"from", &form.From, &f.From}, {"to", &form.To, &f.To}} {
		if *t.raw == "" {
			continue
		}
		v, err := parseLocalTime(*t.raw, time.UTC)
		if err != nil {
			return f, form, tenants.Invalid(t.name, "enter a date and time such as 2026-03-04T10:30 (UTC) or an RFC 3339 time")
		}
		*t.dst = v
		*t.raw = localInputValue(v)
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return f, form, tenants.Invalid("to", "the end of the time range must be after its start")
	}
	return f, form, nil
}

// localInputValue is t in UTC as a datetime-local input shows it.
func localInputValue(t time.Time) string {
	t = t.UTC()
	if t.Second() != 0 || t.Nanosecond() != 0 {
		return t.Format("2006-01-02T15:04:05")
	}
	return t.Format("2006-01-02T15:04")
}

// values is the filter as a query string (without the page cursor).
func auditFilterValues(form views.AuditFilterForm) url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"user": form.User, "agent": form.Agent, "tool": form.Tool, "upstream": form.Upstream,
		"decision": form.Decision, "from": form.From, "to": form.To} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// sentenceParts tells an event as audit.Sentence does, with the names
// (who, agent, tool, upstream) marked for emphasis. The parts always join
// to exactly audit.Sentence(e).
func sentenceParts(e audit.Event) []views.SentencePart {
	var parts []views.SentencePart
	add := func(text string, em bool) { parts = append(parts, views.SentencePart{Text: text, Em: em}) }
	add(cmp.Or(e.User.Email, e.User.Subject, "someone"), true)
	if e.Agent != "" {
		add(" via ", false)
		add(e.Agent, true)
	}
	add(" called ", false)
	add(e.Tool, true)
	if on := cmp.Or(e.UpstreamName, e.Upstream); on != "" {
		add(" on ", false)
		add(on, true)
	}
	full := audit.Sentence(e)
	var prefix strings.Builder
	for _, p := range parts {
		prefix.WriteString(p.Text)
	}
	rest, ok := strings.CutPrefix(full, prefix.String())
	if !ok {
		return []views.SentencePart{{Text: full}}
	}
	add(rest, false)
	return parts
}

// auditRows lays events out as sentences.
func auditRows(slug string, events []audit.Event) []views.AuditRow {
	rows := make([]views.AuditRow, 0, len(events))
	for _, e := range events {
		seq := strconv.FormatInt(e.Seq, 10)
		rows = append(rows, views.AuditRow{
			Seq: seq, Href: auditHref(slug) + "/" + seq, At: formatSeconds(e.At), AtISO: e.At.UTC().Format(time.RFC3339),
			Parts: sentenceParts(e), Decision: e.Decision, Result: e.Result,
		})
	}
	return rows
}

// formatSeconds is formatTime to the second, for events.
func formatSeconds(t time.Time) string { return t.UTC().Format("2 Jan 2006 15:04:05 UTC") }

// auditModel builds the list for the query q. A filter the domain refuses
// shows under its field with no rows, and status 422.
func (s *Server) auditModel(r *http.Request, c consoleCtx, q url.Values) (views.AuditPage, int, error) {
	ctx := r.Context()
	f, err := s.governFrame(r, c, "audit")
	if err != nil {
		return views.AuditPage{}, 0, err
	}
	ups, err := s.cfg.Tenants.Upstreams(ctx, c.Tenant.ID)
	if err != nil {
		return views.AuditPage{}, 0, err
	}
	tools, err := s.cfg.Tenants.Tools(ctx, c.Tenant.ID)
	if err != nil {
		return views.AuditPage{}, 0, err
	}
	days, err := s.cfg.AuditLog.Retention(ctx, c.Tenant.ID)
	if err != nil {
		return views.AuditPage{}, 0, err
	}
	slug := c.Tenant.Slug
	base := auditHref(slug)
	p := views.AuditPage{Frame: f, Retention: strconv.Itoa(days), RetentionAction: base + "/retention", VerifyHref: base + "/verify",
		Errors: views.Errors{}}
	for _, u := range ups {
		p.Upstreams = append(p.Upstreams, views.Option{Value: u.Slug, Label: u.Name})
	}
	for _, t := range tools {
		p.Tools = append(p.Tools, t.Name)
	}
	flt, form, err := auditFilterFrom(q)
	p.Filter = form
	p.Filtered = len(auditFilterValues(form)) > 0
	fields := []string{"user", "agent", "tool", "upstream", "decision", "from", "to"}
	if err != nil {
		errs, status, ok := formErrors(err, fields...)
		if !ok {
			return p, 0, err
		}
		p.Errors = errs
		return p, status, nil
	}
	filter := auditFilterValues(form)
	p.ExportCSV = base + "/export.csv" + queryString(filter)
	p.ExportJSONL = base + "/export.jsonl" + queryString(filter)
	flt.Limit, flt.Cursor = auditPageSize, q.Get("cursor")
	page, err := s.cfg.AuditLog.Query(ctx, c.Tenant.ID, flt)
	var pub *tenants.Error
	if errors.As(err, &pub) && pub.Field == "cursor" {
		// A stale or edited cursor: start from the first page.
		flt.Cursor = ""
		page, err = s.cfg.AuditLog.Query(ctx, c.Tenant.ID, flt)
	}
	if err != nil {
		errs, status, ok := formErrors(err, fields...)
		if !ok {
			return p, 0, err
		}
		p.Errors = errs
		return p, status, nil
	}
	if flt.Cursor != "" {
		p.FirstHref = base + queryString(filter)
	}
	if page.Next != "" {
		next := auditFilterValues(form)
		next.Set("cursor", page.Next)
		p.NextHref = base + queryString(next)
	}
	p.Rows = auditRows(slug, page.Events)
	if len(p.Rows) > 0 {
		// Something matches: chart it per day (over the filter's time
		// range, the last two weeks without one).
		flt.Cursor = ""
		days, err := s.cfg.AuditLog.DecisionsPerDay(ctx, c.Tenant.ID, flt)
		var refused *tenants.Error
		if err != nil && (!errors.Is(err, tenants.ErrInvalid) || !errors.As(err, &refused)) {
			return p, 0, err
		}
		p.ShowDecisions = true
		p.Decisions = decisionsChart(days, flt.From.IsZero() && flt.To.IsZero(), refused)
	}
	return p, http.StatusOK, nil
}

// decisionsChart lays out the audit's decisions per day as stacked bars
// (allowed, denied, held for approval; see layoutBars) with a legend, a
// summary sentence and a table. lastDays says the range is the default
// one (the last audit.DefaultDecisionDays days). With no calls in the
// range, or a range the chart refuses (refused, shown in words), it is an
// empty state.
func decisionsChart(days []audit.DayDecisions, lastDays bool, refused *tenants.Error) views.Chart {
	c := views.Chart{
		ID:    "decisions-chart",
		Title: "Decisions per day",
		Series: []views.ChartSeries{
			{Key: "allow", Label: "Allowed", Tone: "success"},
			{Key: "deny", Label: "Denied", Tone: "danger", Pattern: "hatch"},
			{Key: "approval", Label: "Held for approval", Tone: "warning", Pattern: "dots"},
		},
		Columns: []string{"Day", "Allowed", "Denied", "Held for approval"},
	}
	if refused != nil {
		c.IsEmpty = true
		c.Empty = views.EmptyState{TestID: "decisions-refused", Title: "No chart for this range",
			Body: sentence(refused.Message) + " The list below still shows every matching call."}
		return c
	}
	// span names the range: "Last 14 days", "2 Mar 2026 – 4 Mar 2026" or
	// "4 Mar 2026"; empty says it has no calls.
	span, empty := "Last "+plural(len(days), "day"), "No calls in the last "+plural(len(days), "day")
	if !lastDays && len(days) > 0 {
		span, empty = formatDate(days[0].Day), "No calls on "+formatDate(days[0].Day)
		if len(days) > 1 {
			span += " – " + formatDate(days[len(days)-1].Day)
			empty = "No calls from " + formatDate(days[0].Day) + " to " + formatDate(days[len(days)-1].Day)
		}
	}
	var sum audit.DayDecisions
	data := chartData{Days: make([]time.Time, len(days)), Values: make([][]int, len(days)), BarLabel: func(i int) string {
		return days[i].Day.UTC().Format("2 Jan") + ": " + decisionCounts(days[i])
	}}
	for i, d := range days {
		sum.Allow, sum.Deny, sum.Approval = sum.Allow+d.Allow, sum.Deny+d.Deny, sum.Approval+d.Approval
		data.Days[i], data.Values[i] = d.Day, []int{d.Allow, d.Deny, d.Approval}
	}
	if sum.Total() == 0 {
		c.IsEmpty = true
		c.Empty = views.EmptyState{TestID: "decisions-empty", Title: empty,
			Body: "The matching calls listed below are outside this range; choose a time range that includes them to chart them."}
		return c
	}
	for i, v := range []int{sum.Allow, sum.Deny, sum.Approval} {
		c.Series[i].Total = strconv.Itoa(v)
	}
	layoutBars(&c, data)
	for _, d := range days {
		c.Rows = append(c.Rows, views.ChartRow{Label: formatDate(d.Day),
			Values: []string{strconv.Itoa(d.Allow), strconv.Itoa(d.Deny), strconv.Itoa(d.Approval)}})
	}
	c.Summary = span + ": " + decisionCounts(sum) + "."
	return c
}

// decisionCounts is "12 calls — 9 allowed, 2 denied, 1 held for approval".
func decisionCounts(d audit.DayDecisions) string {
	return fmt.Sprintf("%s — %d allowed, %d denied, %d held for approval", plural(d.Total(), "call"), d.Allow, d.Deny, d.Approval)
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	p, status, err := s.auditModel(r, c, r.URL.Query())
	if err != nil {
		return err
	}
	return s.render(w, r, status, views.Audit(p))
}

// attachment is a ResponseWriter that sends the download's headers with
// its first byte, so an error before any data can still be an error page.
type attachment struct {
	w           http.ResponseWriter
	contentType string
	filename    string
	started     bool
}

func (a *attachment) start() {
	a.started = true
	h := a.w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": a.filename}))
	h.Set("Cache-Control", "no-store")
	a.w.WriteHeader(http.StatusOK)
}

func (a *attachment) Write(p []byte) (int, error) {
	if !a.started {
		a.start()
	}
	return a.w.Write(p)
}

// exportAudit streams every call matching the filter as CSV or JSON Lines,
// newest first, as a download. An error after the download started cuts
// the connection, so a truncated file is never mistaken for a whole one.
func (s *Server) exportAudit(format string) tenantHandler {
	return func(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
		ctx := r.Context()
		flt, _, err := auditFilterFrom(r.URL.Query())
		if err != nil {
			return err
		}
		name := fmt.Sprintf("audit-%s-%s.%s", c.Tenant.Slug, time.Now().UTC().Format("20060102-150405"), format)
		a := &attachment{w: w, filename: name, contentType: "text/csv; charset=utf-8"}
		export := s.cfg.AuditLog.ExportCSV
		if format == "jsonl" {
			a.contentType, export = "application/jsonl; charset=utf-8", s.cfg.AuditLog.ExportJSONL
		}
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(auditExportDeadline))
		if err := export(ctx, c.Tenant.ID, flt, a); err != nil {
			if !a.started {
				return err
			}
			s.cfg.Logger.ErrorContext(ctx, "audit export cut short", "tenant_id", c.Tenant.ID, "err", err, "request_id", RequestID(ctx))
			panic(http.ErrAbortHandler)
		}
		if !a.started {
			a.start()
		}
		return nil
	}
}

func (s *Server) auditEventPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	notFound := &statusError{status: http.StatusNotFound, msg: "there is no such call in this tenant's audit trail"}
	seq, err := strconv.ParseInt(r.PathValue("seq"), 10, 64)
	if err != nil || seq <= 0 {
		return notFound
	}
	e, err := s.cfg.AuditLog.Event(r.Context(), c.Tenant.ID, seq)
	if errors.Is(err, tenants.ErrNotFound) {
		return notFound
	}
	if err != nil {
		return err
	}
	f, err := s.governFrame(r, c, "audit")
	if err != nil {
		return err
	}
	f.Head.Title = "Call " + strconv.FormatInt(seq, 10) + " · Audit · " + c.Tenant.Name
	return s.render(w, r, http.StatusOK, views.AuditEvent(auditEventModel(f, c.Tenant.Slug, e)))
}

// auditEventModel lays one event out as facts.
func auditEventModel(f views.Frame, slug string, e audit.Event) views.AuditEventPage {
	p := views.AuditEventPage{Frame: f, Seq: strconv.FormatInt(e.Seq, 10), At: formatSeconds(e.At), Parts: sentenceParts(e),
		Decision: e.Decision, Result: e.Result, BackHref: auditHref(slug)}
	p.Who = []views.Fact{
		{Label: "Email", Value: orDash(e.User.Email)},
		{Label: "Subject", Value: orDash(e.User.Subject), Mono: true},
		{Label: "Issuer", Value: orDash(e.User.Issuer), Mono: true},
		{Label: "Agent", Value: orDash(e.Agent), Mono: true},
	}
	if len(e.Act) > 0 {
		p.Who = append(p.Who, views.Fact{Label: "Acting for", Value: strings.Join(e.Act, " → "), Mono: true})
	}
	upstream := e.Upstream
	if e.UpstreamName != "" && e.UpstreamName != e.Upstream {
		upstream = e.UpstreamName + " (" + e.Upstream + ")"
	}
	scopes := orDash(strings.Join(e.Scopes, " "))
	if e.Narrowed {
		scopes += " (narrowed to what the tool needs)"
	}
	p.Call = []views.Fact{
		{Label: "Time", Value: formatSeconds(e.At)},
		{Label: "Tool", Value: e.Tool, Mono: true},
		{Label: "Upstream", Value: orDash(upstream)},
		{Label: "Request", Value: orDash(strings.TrimSpace(e.Method + " " + e.PathTemplate)), Mono: true},
		{Label: "Scopes used", Value: scopes, Mono: true},
		{Label: "MCP request id", Value: orDash(e.RequestID), Mono: true},
	}
	p.Policy = []views.Fact{
		{Label: "Decision", Value: views.DecisionLabel(e.Decision)},
		{Label: "Rule", Value: orDash(e.Rule)},
		{Label: "Reason", Value: orDash(e.Reason)},
	}
	if e.ApprovalID != nil {
		p.ApprovalHref = approvalsHref(slug) + "/" + e.ApprovalID.String()
	}
	p.Outcome = []views.Fact{{Label: "Result", Value: views.ResultLabel(e.Result)}}
	if o := e.Outcome; o != nil {
		status := "none received"
		if o.Status != 0 {
			status = strconv.Itoa(o.Status) + " " + http.StatusText(o.Status)
		}
		p.Outcome = append(p.Outcome,
			views.Fact{Label: "Upstream status", Value: status},
			views.Fact{Label: "Latency", Value: o.Latency.Round(time.Microsecond).String()},
			views.Fact{Label: "Recorded", Value: formatSeconds(o.At)},
		)
		if o.Error != "" {
			p.Outcome = append(p.Outcome, views.Fact{Label: "Error", Value: o.Error})
		}
	}
	if len(e.Detail) > 0 {
		p.Detail = jsonLines(e.Detail)
	}
	return p
}

// verifyAudit recomputes the tenant's hash chain and shows the report.
func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	rep, err := s.cfg.AuditLog.Verify(r.Context(), c.Tenant.ID)
	if err != nil {
		return err
	}
	f, err := s.governFrame(r, c, "audit")
	if err != nil {
		return err
	}
	f.Head.Title = "Verify · Audit · " + c.Tenant.Name
	return s.render(w, r, http.StatusOK, views.AuditVerify(views.AuditVerifyPage{Frame: f, Report: verifyPanel(rep, time.Now())}))
}

// verifyPanel turns a Verify report into a check panel.
func verifyPanel(rep audit.Report, now time.Time) views.CheckPanel {
	p := views.CheckPanel{TestID: "verify", Ran: true, OK: rep.OK(),
		Note: "Verified " + formatSeconds(now) + " in " + rep.Duration.Round(time.Millisecond).String() + "."}
	head := "none yet"
	if len(rep.Head) > 0 {
		head = hex.EncodeToString(rep.Head)
	}
	p.Facts = []views.Fact{
		{Label: "Records read", Value: strconv.FormatInt(rep.Events, 10) + " (calls and their outcomes)"},
		{Label: "Records sealed", Value: strconv.FormatInt(rep.Sealed, 10)},
		{Label: "Seals", Value: strconv.Itoa(rep.Seals)},
		{Label: "Newest seal hash", Value: head, Mono: true},
	}
	if p.OK {
		p.Title = "The audit trail verifies: no call or outcome was edited, deleted or inserted"
	} else {
		n := int64(len(rep.Problems)) + rep.MoreProblems
		p.Title = fmt.Sprintf("The audit trail does not verify: %s", plural(int(n), "problem"))
		for _, pr := range rep.Problems {
			p.Problems = append(p.Problems, views.Problem{Message: sentence(pr.String())})
		}
		if rep.MoreProblems > 0 {
			p.Problems = append(p.Problems, views.Problem{Message: fmt.Sprintf("…and %d more.", rep.MoreProblems)})
		}
		if len(p.Problems) > 0 {
			p.Problems[0].Fix = "Compare the named events with a backup and with the seal hash you anchored outside the database, and find out who could write to the audit tables."
		}
	}
	if unsealed := rep.Events - rep.Sealed; unsealed > 0 {
		p.Warnings = append(p.Warnings, fmt.Sprintf("%s newer than the last seal; the seal job runs every minute, and they are covered from then on.",
			pluralVerb(int(unsealed), "record is", "records are")))
	}
	return p
}

func pluralVerb(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// saveRetention sets how many days events are kept.
func (s *Server) saveRetention(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	raw := strings.TrimSpace(r.PostFormValue("retention_days"))
	days, err := strconv.Atoi(raw)
	if err != nil {
		err = tenants.Invalid("retention_days", fmt.Sprintf("enter a whole number of days from %d to %d", audit.MinRetentionDays, audit.MaxRetentionDays))
	} else {
		err = s.cfg.AuditLog.SetRetention(r.Context(), c.Tenant.ID, days)
	}
	if err != nil {
		errs, status, ok := formErrors(err, "retention_days")
		if !ok {
			return err
		}
		p, _, perr := s.auditModel(r, c, url.Values{})
		if perr != nil {
			return perr
		}
		p.Errors, p.Retention = errs, raw
		return s.render(w, r, status, views.Audit(p))
	}
	return redirect(w, r, auditHref(c.Tenant.Slug)+"?done=retention-saved#retention")
}
