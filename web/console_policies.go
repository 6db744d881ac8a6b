package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/policy"
	"github.com/locksmithhq/locksmith/web/views"
)

// The Policies page: the tenant's policy settings, the agent allow-list,
// kill switches and a box to check a CEL condition. Conditions themselves
// are edited on the tool form.
//
//	GET  /console/t/{tenant}/policies                        the page
//	POST /console/t/{tenant}/policies/settings               agent default, approvals default, time zone
//	POST /console/t/{tenant}/policies/agents                 allow an agent (client id)
//	POST /console/t/{tenant}/policies/agents/remove          take an agent off the allow-list
//	POST /console/t/{tenant}/policies/kill-switches          turn a kill switch on (agent, user or upstream)
//	POST /console/t/{tenant}/policies/kill-switches/clear    turn it off
//	POST /console/t/{tenant}/policies/check                  compile and evaluate a condition (nothing stored)

func policiesHref(slug string) string { return views.SectionHref(slug, "policies") }

// policiesRoutes registers the Policies page under t.
func (s *Server) policiesRoutes(t string) {
	viewer, admin := tenants.RoleViewer, tenants.RoleAdmin
	s.browser("GET "+t+"/policies", s.tenantAccess(viewer, s.policiesPage))
	s.browser("POST "+t+"/policies/settings", s.tenantAccess(admin, s.savePolicySettings))
	s.browser("POST "+t+"/policies/agents", s.tenantAccess(admin, s.allowAgent))
	s.browser("POST "+t+"/policies/agents/remove", s.tenantAccess(admin, s.removeAgent))
	s.browser("POST "+t+"/policies/kill-switches", s.tenantAccess(admin, s.setKillSwitch))
	s.browser("POST "+t+"/policies/kill-switches/clear", s.tenantAccess(admin, s.clearKillSwitch))
	s.browser("POST "+t+"/policies/check", s.tenantAccess(admin, s.checkCondition))
}

// governNotice is the fixed message a redirect of the governance pages
// asks for with ?done=key.
func governNotice(key string) string {
	switch key {
	case "policy-saved":
		return "The policy settings were saved. Every instance applies them within a second."
	case "agent-allowed":
		return "The agent was added to the allow-list."
	case "agent-removed":
		return "The agent was taken off the allow-list."
	case "kill-on":
		return "The kill switch is on: matching calls are refused from now on, on every instance."
	case "kill-off":
		return "The kill switch is off: matching calls are decided by the other rules again."
	case "approvals-saved":
		return "The approval settings were saved."
	case "retention-saved":
		return "The retention was saved. The purge job deletes sealed events older than that."
	}
	return ""
}

// governFrame is consoleFrame with the governance pages' notices.
func (s *Server) governFrame(r *http.Request, c consoleCtx, active string) (views.Frame, error) {
	f, err := s.consoleFrame(r, c, active)
	if err == nil && f.Notice == "" {
		f.Notice = governNotice(r.URL.Query().Get("done"))
	}
	return f, err
}

// formErrorsIn is formErrors for one of several forms on a page: the keys
// are "<form>.<field>", and an error about no known field is keyed by the
// form's first field (so it shows next to that form, not at the top of a
// long page).
func formErrorsIn(err error, form string, fields ...string) (views.Errors, int, bool) {
	errs, status, ok := formErrors(err, fields...)
	if !ok {
		return nil, 0, false
	}
	out := views.Errors{}
	for k, v := range errs {
		if k == "" && len(fields) > 0 {
			k = fields[0]
		}
		out[form+"."+k] = v
	}
	return out, status, true
}

// problemsOf lists errs for the summary at the top of the page; ids maps
// an error key to the id of its field.
func problemsOf(errs views.Errors, ids map[string]string, labels map[string]string) []views.FieldProblem {
	var out []views.FieldProblem
	for k, msg := range errs {
		id, ok := ids[k]
		if !ok {
			continue
		}
		out = append(out, views.FieldProblem{Href: "#" + id, Label: labels[k], Message: msg})
	}
	return out
}

// Field ids and labels of the Policies page's forms, by error key.
var (
	policyFieldIDs = map[string]string{
		"settings.agent_default": "policy-agent-default", "settings.approvals_default": "policy-approvals-default",
		"settings.time_zone": "policy-time-zone",
		"agent.client_id":    "agent-client-id", "agent.note": "agent-note",
		"kill-agent.value": "kill-agent-value", "kill-agent.reason": "kill-agent-reason",
		"kill-user.issuer": "kill-user-issuer", "kill-user.value": "kill-user-value", "kill-user.reason": "kill-user-reason",
		"kill-upstream.value": "kill-upstream-value", "kill-upstream.reason": "kill-upstream-reason",
		"check.condition": "check-condition", "check.principal": "check-principal", "check.tool": "check-tool",
		"check.args": "check-args", "check.at": "check-at",
	}
	policyFieldLabels = map[string]string{
		"settings.agent_default": "Agents", "settings.approvals_default": "Approvals a destructive call needs",
		"settings.time_zone": "Time zone",
		"agent.client_id":    "Client id", "agent.note": "Note",
		"kill-agent.value": "Agent client id", "kill-agent.reason": "Reason",
		"kill-user.issuer": "Issuer", "kill-user.value": "Subject", "kill-user.reason": "Reason",
		"kill-upstream.value": "Upstream", "kill-upstream.reason": "Reason",
		"check.condition": "Condition", "check.principal": "Principal", "check.tool": "Tool", "check.args": "Arguments",
		"check.at": "Time of the call",
	}
)

// conditionExamples are the documented conditions (package policy's
// examples, each tested there), with copy buttons.
func conditionExamples() []views.Snippet {
	return []views.Snippet{
		{ID: "example-finance", TestID: "example-finance", Title: "Only the finance group",
			Code: `"finance" in principal.groups`},
		{ID: "example-amount", TestID: "example-amount", Title: "Amount under 1000",
			Help: "A call without an amount is denied: conditions fail closed.", Code: `args.amount < 1000`},
		{ID: "example-amount-approval", TestID: "example-amount-approval", Title: "Larger amounts need approval",
			Help: `Both branches of ?: must be strings: "allow", "deny" or "approval".`,
			Code: `args.amount < 1000 ? "allow" : "approval"`},
		{ID: "example-hours", TestID: "example-hours", Title: "Working hours in the tenant's time zone",
			Help: "Monday to Friday, 09:00 to 18:00; tz is the time zone set above.",
			Code: "now.getDayOfWeek(tz) >= 1 && now.getDayOfWeek(tz) <= 5 &&\nnow.getHours(tz) >= 9 && now.getHours(tz) < 18"},
		{ID: "example-agent", TestID: "example-agent", Title: "Only one agent may call this",
			Code: `principal.agent == "claude-desktop"`},
	}
}

// Sample inputs of the condition check.
const (
	sampleTool = `{
  "name": "tasks.delete",
  "risk": "destructive",
  "upstream": "acme-tasks",
  "scopes": ["tasks:write"]
}`
	sampleArgs = `{
  "id": 42,
  "amount": 250
}`
)

func samplePrincipal(issuer string) string {
	if issuer == "" {
		issuer = "https://idp.acme.example"
	}
	b, _ := json.MarshalIndent(map[string]any{
		"issuer": issuer, "subject": "user-123", "email": "engineer@acme.example",
		"groups": []string{"engineering"}, "scopes": []string{"tasks:read", "tasks:write"},
		"agent": "claude-desktop", "act": []string{},
	}, "", "  ")
	return string(b)
}

// policiesModel builds the page from what is stored; the handlers then
// put back what was typed into a form that failed.
func (s *Server) policiesModel(r *http.Request, c consoleCtx) (views.PoliciesPage, error) {
	ctx := r.Context()
	f, err := s.governFrame(r, c, "policies")
	if err != nil {
		return views.PoliciesPage{}, err
	}
	set, err := s.cfg.Policy.Settings(ctx, c.Tenant.ID)
	if err != nil {
		return views.PoliciesPage{}, err
	}
	agents, err := s.cfg.Policy.Agents(ctx, c.Tenant.ID)
	if err != nil {
		return views.PoliciesPage{}, err
	}
	kills, err := s.cfg.Policy.KillSwitches(ctx, c.Tenant.ID)
	if err != nil {
		return views.PoliciesPage{}, err
	}
	ups, err := s.cfg.Tenants.Upstreams(ctx, c.Tenant.ID)
	if err != nil {
		return views.PoliciesPage{}, err
	}
	idp, _, err := s.loadIdP(r, c)
	if err != nil {
		return views.PoliciesPage{}, err
	}
	base := policiesHref(c.Tenant.Slug)
	p := views.PoliciesPage{
		Frame: f,
		Settings: views.PolicySettingsForm{AgentDefault: set.AgentDefault, ApprovalsDefault: strconv.Itoa(set.ApprovalsDefault),
			TimeZone: set.TimeZone},
		KillUser: views.KillSwitchForm{Issuer: idp.Issuer},
		Check: views.ConditionCheck{Principal: samplePrincipal(idp.Issuer), Tool: sampleTool, Args: sampleArgs,
			TimeZone: set.TimeZone},
		Examples:       conditionExamples(),
		Errors:         views.Errors{},
		SettingsAction: base + "/settings#policy-settings", AgentAction: base + "/agents#agents", AgentRemoveAction: base + "/agents/remove",
		KillAction: base + "/kill-switches#kill-switches", KillClearAction: base + "/kill-switches/clear", CheckAction: base + "/check#check",
	}
	if !set.UpdatedAt.IsZero() {
		p.SettingsSaved = formatTime(set.UpdatedAt)
	}
	for _, a := range agents {
		p.Agents = append(p.Agents, views.AgentRow{ClientID: a.ClientID, Note: a.Note, Added: formatDate(a.CreatedAt)})
	}
	names := map[string]string{}
	for _, u := range ups {
		names[u.Slug] = u.Name
		p.Upstreams = append(p.Upstreams, views.Option{Value: u.Slug, Label: u.Name + " (" + u.Slug + ")"})
	}
	for _, k := range kills {
		row := views.KillSwitchRow{Kind: string(k.Kind), Issuer: k.Issuer, Value: k.Value, Display: k.Value,
			Reason: k.Reason, By: orDash(k.CreatedBy), Since: formatTime(k.CreatedAt)}
		switch k.Kind {
		case policy.KillAgent:
			row.KindLabel = "Agent"
		case policy.KillUser:
			row.KindLabel = "User"
		case policy.KillUpstream:
			row.KindLabel = "Upstream"
			if n, ok := names[k.Value]; ok {
				row.Display = n + " (" + k.Value + ")"
			}
		}
		p.KillSwitches = append(p.KillSwitches, row)
	}
	return p, nil
}

func (s *Server) policiesPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	p, err := s.policiesModel(r, c)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, views.Policies(p))
}

// renderPoliciesError shows the page again with errs under their fields
// and in the summary at the top; fill puts back what was typed.
func (s *Server) renderPoliciesError(w http.ResponseWriter, r *http.Request, c consoleCtx, errs views.Errors, status int, fill func(*views.PoliciesPage)) error {
	p, err := s.policiesModel(r, c)
	if err != nil {
		return err
	}
	if fill != nil {
		fill(&p)
	}
	p.Errors = errs
	p.Summary = problemsOf(errs, policyFieldIDs, policyFieldLabels)
	return s.render(w, r, status, views.Policies(p))
}

// savePolicySettings saves the agent default, the default number of
// approvals and the time zone.
func (s *Server) savePolicySettings(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	form := views.PolicySettingsForm{AgentDefault: r.PostFormValue("agent_default"),
		ApprovalsDefault: strings.TrimSpace(r.PostFormValue("approvals_default")), TimeZone: strings.TrimSpace(r.PostFormValue("time_zone"))}
	fill := func(p *views.PoliciesPage) { p.Settings = form }
	n, err := strconv.Atoi(form.ApprovalsDefault)
	if err != nil {
		return s.renderPoliciesError(w, r, c, views.Errors{"settings.approvals_default": "Enter a whole number from 1 to 10."}, http.StatusUnprocessableEntity, fill)
	}
	_, err = s.cfg.Policy.SaveSettings(r.Context(), c.Tenant.ID, policy.Settings{AgentDefault: form.AgentDefault, ApprovalsDefault: n, TimeZone: form.TimeZone})
	if err != nil {
		errs, status, ok := formErrorsIn(err, "settings", "agent_default", "approvals_default", "time_zone")
		if !ok {
			return err
		}
		return s.renderPoliciesError(w, r, c, errs, status, fill)
	}
	return redirect(w, r, policiesHref(c.Tenant.Slug)+"?done=policy-saved#policy-settings")
}

// checkClientID refuses what can't be an OAuth client id as typed: it is
// copied from the IdP, so whitespace or control characters mean a slip.
func checkClientID(field, id string) error {
	if id == "" {
		return tenants.Invalid(field, "enter the agent's OAuth client id, as your IdP shows it")
	}
	if strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return tenants.Invalid(field, "a client id has no spaces or line breaks; copy it exactly as your IdP shows it")
	}
	return nil
}

// allowAgent puts a client id on the allow-list.
func (s *Server) allowAgent(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	form := views.AgentForm{ClientID: strings.TrimSpace(r.PostFormValue("client_id")), Note: strings.TrimSpace(r.PostFormValue("note"))}
	err := checkClientID("client_id", form.ClientID)
	if err == nil {
		_, err = s.cfg.Policy.AllowAgent(r.Context(), c.Tenant.ID, form.ClientID, form.Note)
	}
	if err != nil {
		errs, status, ok := formErrorsIn(err, "agent", "client_id", "note")
		if !ok {
			return err
		}
		return s.renderPoliciesError(w, r, c, errs, status, func(p *views.PoliciesPage) { p.AgentForm = form })
	}
	return redirect(w, r, policiesHref(c.Tenant.Slug)+"?done=agent-allowed#agents")
}

// removeAgent takes a client id off the allow-list.
func (s *Server) removeAgent(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	err := s.cfg.Policy.RemoveAgent(r.Context(), c.Tenant.ID, r.PostFormValue("client_id"))
	if errors.Is(err, tenants.ErrNotFound) {
		return &statusError{status: http.StatusNotFound, msg: "that agent is not on the allow-list (any more)"}
	}
	if err != nil {
		return err
	}
	return redirect(w, r, policiesHref(c.Tenant.Slug)+"?done=agent-removed#agents")
}

// setKillSwitch turns on a kill switch for an agent, a user or an upstream.
func (s *Server) setKillSwitch(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	kind := policy.KillKind(r.PostFormValue("kind"))
	form := views.KillSwitchForm{Issuer: strings.TrimSpace(r.PostFormValue("issuer")), Value: strings.TrimSpace(r.PostFormValue("value")),
		Reason: strings.TrimSpace(r.PostFormValue("reason"))}
	var key string
	var fill func(*views.PoliciesPage)
	var err error
	switch kind {
	case policy.KillAgent:
		key, fill = "kill-agent", func(p *views.PoliciesPage) { p.KillAgent = form }
		err = checkClientID("value", form.Value)
	case policy.KillUser:
		key, fill = "kill-user", func(p *views.PoliciesPage) { p.KillUser = form }
		if form.Value == "" {
			err = tenants.Invalid("value", "enter the user's subject (the sub claim their IdP puts in tokens)")
		}
	case policy.KillUpstream:
		key, fill = "kill-upstream", func(p *views.PoliciesPage) { p.KillUpstream = form }
		if form.Value == "" {
			err = tenants.Invalid("value", "choose the upstream to switch off")
		}
	default:
		return &statusError{status: http.StatusBadRequest, msg: "the form could not be read; reload the page and try again"}
	}
	if err == nil {
		_, err = s.cfg.Policy.SetKillSwitch(r.Context(), c.Tenant.ID, policy.KillSwitch{
			Kind: kind, Issuer: form.Issuer, Value: form.Value, Reason: form.Reason, CreatedBy: c.Account.Email,
		})
	}
	if err != nil {
		fields := []string{"value", "reason"}
		if kind == policy.KillUser {
			fields = []string{"issuer", "value", "reason"}
		}
		errs, status, ok := formErrorsIn(err, key, fields...)
		if !ok {
			return err
		}
		return s.renderPoliciesError(w, r, c, errs, status, fill)
	}
	return redirect(w, r, policiesHref(c.Tenant.Slug)+"?done=kill-on#kill-switches")
}

// clearKillSwitch turns a kill switch off.
func (s *Server) clearKillSwitch(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	err := s.cfg.Policy.ClearKillSwitch(r.Context(), c.Tenant.ID, policy.KillKind(r.PostFormValue("kind")),
		r.PostFormValue("issuer"), r.PostFormValue("value"))
	if errors.Is(err, tenants.ErrNotFound) {
		return &statusError{status: http.StatusNotFound, msg: "that kill switch is not on (any more)"}
	}
	if err != nil {
		return err
	}
	return redirect(w, r, policiesHref(c.Tenant.Slug)+"?done=kill-off#kill-switches")
}

// samplePrincipalJSON and sampleToolJSON are the JSON shapes of the check's
// sample inputs, decoded strictly so a misspelt field is reported.
type samplePrincipalJSON struct {
	Issuer  string   `json:"issuer"`
	Subject string   `json:"subject"`
	Email   string   `json:"email"`
	Groups  []string `json:"groups"`
	Scopes  []string `json:"scopes"`
	Agent   string   `json:"agent"`
	Act     []string `json:"act"`
}

type sampleToolJSON struct {
	Name     string   `json:"name"`
	Risk     string   `json:"risk"`
	Upstream string   `json:"upstream"`
	Scopes   []string `json:"scopes"`
}

// decodeSample decodes one sample input strictly ("" is the zero value).
func decodeSample(field, raw string, v any) error {
	if strings.TrimSpace(raw) == "" {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return tenants.Invalid(field, "enter one JSON object, with nothing after it")
		}
		return nil
	}
	return tenants.Invalid(field, "this is not a valid JSON object for the sample: "+jsonProblem(raw, err))
}

// jsonProblem describes a JSON decoding error with its line and column.
func jsonProblem(raw string, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		line, col := lineCol(raw, se.Offset)
		return fmt.Sprintf("line %d, column %d: %s", line, col, se.Error())
	case errors.As(err, &te):
		if te.Field == "" {
			return "it must be a JSON object"
		}
		return fmt.Sprintf("%s must be %s, not %s", te.Field, apiJSONKind(te.Type), te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "it ends too early"
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return "unknown field " + name
	}
	return "it can't be read"
}

// lineCol turns a byte offset into a 1-based line and column.
func lineCol(s string, off int64) (int, int) {
	if off > int64(len(s)) {
		off = int64(len(s))
	}
	before := s[:off]
	line := strings.Count(before, "\n") + 1
	col := int(off) - strings.LastIndex(before, "\n")
	return line, col
}

// checkCondition compiles a condition, reporting the first problem with
// its line and column under the field, then evaluates it against the
// sample principal, tool and arguments at the given time in the tenant's
// time zone. Nothing is stored.
func (s *Server) checkCondition(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	p, err := s.policiesModel(r, c)
	if err != nil {
		return err
	}
	v := func(k string) string { return r.PostFormValue(k) }
	chk := views.ConditionCheck{Condition: v("condition"), Principal: v("principal"), Tool: v("tool"), Args: v("args"),
		At: strings.TrimSpace(v("at")), TimeZone: p.Check.TimeZone}
	p.Check = chk
	fail := func(err error) error {
		errs, status, ok := formErrorsIn(err, "check", "condition", "principal", "tool", "args", "at")
		if !ok {
			return err
		}
		// No summary at the top: the form posts to #check, so the error
		// under the field is what the browser shows.
		p.Errors = errs
		return s.render(w, r, status, views.Policies(p))
	}
	if strings.TrimSpace(chk.Condition) == "" {
		return fail(tenants.Invalid("condition", "enter a condition to check"))
	}
	if err := policy.CompileCondition(chk.Condition); err != nil {
		return fail(err)
	}
	var pr samplePrincipalJSON
	var tl sampleToolJSON
	if err := decodeSample("principal", chk.Principal, &pr); err != nil {
		return fail(err)
	}
	if err := decodeSample("tool", chk.Tool, &tl); err != nil {
		return fail(err)
	}
	var args map[string]any
	if strings.TrimSpace(chk.Args) != "" {
		dec := json.NewDecoder(strings.NewReader(chk.Args))
		if err := dec.Decode(&args); err != nil {
			return fail(tenants.Invalid("args", "the arguments must be a JSON object: "+jsonProblem(chk.Args, err)))
		}
	}
	loc, err := time.LoadLocation(chk.TimeZone)
	if err != nil {
		loc = time.UTC
	}
	now := time.Now()
	if chk.At != "" {
		if now, err = parseLocalTime(chk.At, loc); err != nil {
			return fail(tenants.Invalid("at", "enter a date and time such as 2026-03-04T10:30, or leave empty for now"))
		}
	}
	effect, evalErr := policy.EvalCondition(r.Context(), chk.Condition, policy.Input{
		Principal: policy.Principal{Issuer: pr.Issuer, Subject: pr.Subject, Email: pr.Email, Groups: pr.Groups, Scopes: pr.Scopes,
			Agent: pr.Agent, Act: pr.Act},
		Tool: policy.ToolInfo{Name: tl.Name, Risk: tl.Risk, Upstream: tl.Upstream, Scopes: tl.Scopes},
		Args: args, Now: now, TimeZone: chk.TimeZone,
	})
	var pub *tenants.Error
	if errors.As(evalErr, &pub) && pub.Field == "condition" {
		return fail(evalErr)
	}
	p.Check.Ran, p.Check.Effect = true, string(effect)
	if evalErr != nil {
		// The tenant's own expression and sample: its admins may see why.
		p.Check.Problem = sentence(evalErr.Error())
	}
	p.Check.Note = "Evaluated for " + now.In(loc).Format("Mon 2 Jan 2006 15:04") + " " + chk.TimeZone + ". Nothing was saved."
	return s.render(w, r, http.StatusOK, views.Policies(p))
}

// parseLocalTime reads a datetime-local value ("2006-01-02T15:04", with
// optional seconds) or RFC 3339 in loc.
func parseLocalTime(v string, loc *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("web: unreadable time %q", v)
}
