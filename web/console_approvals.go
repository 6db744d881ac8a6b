package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/approvals"
	"github.com/locksmithhq/locksmith/tenants/policy"
	"github.com/locksmithhq/locksmith/web/views"
)

// The Approvals pages for the tenant's admins: requests held for two-person
// approval and the settings. Approvers themselves vote on the approver page
// (/t/{tenant}/approvals/{id}), signed in through the tenant's IdP.
//
//	GET  /console/t/{tenant}/approvals[?status=&cursor=]  requests, newest first, 50 a page
//	GET  /console/t/{tenant}/approvals/{id}               one request: arguments, policy, votes
//	GET  /console/t/{tenant}/approvals/settings           approver group, TTL, default N, webhook
//	POST /console/t/{tenant}/approvals/settings           save them
//	POST /console/t/{tenant}/approvals/settings/test      send one approval.test event to the saved webhook

// approvalsPageSize is how many requests one page of the list shows.
const approvalsPageSize = 50

func approvalsHref(slug string) string { return views.SectionHref(slug, "approvals") }

// approvalsRoutes registers the Approvals pages under t.
func (s *Server) approvalsRoutes(t string) {
	viewer, admin := tenants.RoleViewer, tenants.RoleAdmin
	s.browser("GET "+t+"/approvals", s.tenantAccess(viewer, s.approvalsPage))
	s.browser("GET "+t+"/approvals/settings", s.tenantAccess(viewer, s.approvalSettingsPage))
	s.browser("POST "+t+"/approvals/settings", s.tenantAccess(admin, s.saveApprovalSettings))
	if s.cfg.ApprovalWebhook != nil {
		s.browser("POST "+t+"/approvals/settings/test", s.tenantAccess(admin, s.testApprovalWebhook))
	}
	s.browser("GET "+t+"/approvals/{id}", s.tenantAccess(viewer, s.approvalPage))
}

// pendingApprovals is the sidebar badge: requests waiting for approvers.
// The badge is not worth failing a page for, so an error is logged and
// shows no badge.
func (s *Server) pendingApprovals(ctx context.Context, t tenants.Tenant) int {
	if s.cfg.Approvals == nil {
		return 0
	}
	n, err := s.cfg.Approvals.PendingCount(ctx, t.ID)
	if err != nil {
		s.cfg.Logger.WarnContext(ctx, "count pending approvals", "tenant_id", t.ID, "err", err, "request_id", RequestID(ctx))
		return 0
	}
	return n
}

// approvalStatuses are the list's tabs, in order ("" is all).
var approvalStatuses = []struct{ value, label string }{
	{"", "All"},
	{approvals.StatusPending, "Pending"},
	{approvals.StatusApproved, "Approved"},
	{approvals.StatusUsed, "Used"},
	{approvals.StatusRejected, "Rejected"},
	{approvals.StatusExpired, "Expired"},
}

// effectiveStatus is a request's status as of now: a pending or approved
// request past its expiry is expired even before the job marks it.
func effectiveStatus(rq approvals.Request, now time.Time) string {
	if (rq.Status == approvals.StatusPending || rq.Status == approvals.StatusApproved) && !now.Before(rq.ExpiresAt) {
		return approvals.StatusExpired
	}
	return rq.Status
}

func approvalStatusLabel(st string) string {
	switch st {
	case approvals.StatusPending:
		return "Waiting for approvers"
	case approvals.StatusApproved:
		return "Approved, not used yet"
	case approvals.StatusUsed:
		return "Approved and run"
	case approvals.StatusRejected:
		return "Rejected"
	case approvals.StatusExpired:
		return "Expired"
	}
	return st
}

// personLabel names a requester or approver for people.
func personLabel(p approvals.Person) string {
	if p.Email != "" {
		return p.Email
	}
	return p.Subject
}

// argsSummary is a one-line summary of a call's arguments: key=value
// pairs, values shortened, at most n runes.
func argsSummary(raw json.RawMessage, n int) string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || len(m) == 0 {
		if len(bytes.TrimSpace(raw)) == 0 || string(raw) == "{}" || string(raw) == "null" {
			return "no arguments"
		}
		return truncateText(string(raw), n)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+truncateText(string(m[k]), 40))
	}
	return truncateText(strings.Join(parts, ", "), n)
}

// approxFromNow says how far t is from now, roughly ("in 12 min", "3 h ago").
func approxFromNow(t, now time.Time) string {
	d := t.Sub(now)
	past := d < 0
	if past {
		d = -d
	}
	var s string
	switch {
	case d < time.Minute:
		s = "less than a minute"
	case d < time.Hour:
		s = strconv.Itoa(int(d/time.Minute)) + " min"
	case d < 48*time.Hour:
		s = strconv.Itoa(int(d/time.Hour)) + " h"
	default:
		s = strconv.Itoa(int(d/(24*time.Hour))) + " days"
	}
	if past {
		return s + " ago"
	}
	return "in " + s
}

func (s *Server) approvalsPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	ctx := r.Context()
	f, err := s.governFrame(r, c, "approvals")
	if err != nil {
		return err
	}
	q := r.URL.Query()
	status, cursor := q.Get("status"), q.Get("cursor")
	known := false
	for _, st := range approvalStatuses {
		known = known || st.value == status
	}
	if !known {
		status = ""
	}
	list, next, err := s.cfg.Approvals.List(ctx, c.Tenant.ID, approvals.ListFilter{Status: status, Limit: approvalsPageSize, Cursor: cursor})
	if errors.Is(err, tenants.ErrInvalid) && cursor != "" {
		// A stale or edited cursor: start from the first page.
		cursor = ""
		list, next, err = s.cfg.Approvals.List(ctx, c.Tenant.ID, approvals.ListFilter{Status: status, Limit: approvalsPageSize})
	}
	if err != nil {
		return err
	}
	set, err := s.cfg.Approvals.Settings(ctx, c.Tenant.ID)
	if err != nil {
		return err
	}
	slug := c.Tenant.Slug
	base := approvalsHref(slug)
	with := func(status, cursor string) string {
		v := url.Values{}
		if status != "" {
			v.Set("status", status)
		}
		if cursor != "" {
			v.Set("cursor", cursor)
		}
		return base + queryString(v)
	}
	p := views.ApprovalsPage{Frame: f, Status: status, SettingsHref: base + "/settings", ApproverGroup: set.ApproverGroup}
	for _, st := range approvalStatuses {
		label := st.label
		if st.value == approvals.StatusPending && f.PendingApprovals > 0 {
			label += " (" + strconv.Itoa(f.PendingApprovals) + ")"
		}
		key := st.value
		if key == "" {
			key = "all"
		}
		p.Tabs = append(p.Tabs, views.Tab{Label: label, Href: with(st.value, ""), Current: st.value == status, TestID: "approvals-tab-" + key})
	}
	if cursor != "" {
		p.FirstHref = with(status, "")
	}
	if next != "" {
		p.NextHref = with(status, next)
	}
	now := time.Now()
	for _, rq := range list {
		st := effectiveStatus(rq, now)
		row := views.ApprovalRow{
			ID: rq.ID.String(), Href: base + "/" + rq.ID.String(), Status: st, StatusLabel: approvalStatusLabel(st),
			Requester: personLabel(rq.Requester), Agent: orDash(rq.Agent), Tool: rq.Tool, Upstream: rq.Upstream, Risk: rq.Risk,
			ArgsSummary: argsSummary(rq.Args, 80), Approvals: rq.Approvals, Required: rq.ApprovalsRequired,
			Created: formatTime(rq.CreatedAt),
		}
		switch st {
		case approvals.StatusPending, approvals.StatusApproved:
			row.Expires = approxFromNow(rq.ExpiresAt, now)
		default:
			row.Expires = "—"
		}
		p.Rows = append(p.Rows, row)
	}
	return s.render(w, r, http.StatusOK, views.Approvals(p))
}

// approvalFromPath loads the {id} request of the tenant; an id that is not
// the tenant's is a 404 like any unknown page.
func (s *Server) approvalFromPath(r *http.Request, c consoleCtx) (approvals.Request, error) {
	notFound := &statusError{status: http.StatusNotFound, msg: "there is no such approval request in this tenant"}
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return approvals.Request{}, notFound
	}
	rq, err := s.cfg.Approvals.Get(r.Context(), c.Tenant.ID, id)
	if errors.Is(err, tenants.ErrNotFound) {
		return approvals.Request{}, notFound
	}
	return rq, err
}

func (s *Server) approvalPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	rq, err := s.approvalFromPath(r, c)
	if err != nil {
		return err
	}
	f, err := s.governFrame(r, c, "approvals")
	if err != nil {
		return err
	}
	f.Head.Title = rq.Tool + " · Approvals · " + c.Tenant.Name
	now := time.Now()
	st := effectiveStatus(rq, now)
	p := views.ApprovalDetailPage{
		Frame: f, ID: rq.ID.String(), Status: st, StatusLabel: approvalStatusLabel(st), Tool: rq.Tool, Risk: rq.Risk,
		Approvals: rq.Approvals, Required: rq.ApprovalsRequired, PolicyRule: rq.Rule, PolicyReason: rq.Reason,
		Args: jsonLines(rq.Args), Rejection: rq.RejectionReason,
		Active: st == approvals.StatusPending,
		ApproverURL: views.Copyable{ID: "approval-url", Label: "Approver link", Value: s.cfg.Approvals.URL(c.Tenant.Slug, rq.ID), TestID: "approval-url",
			Help: "Approvers open this link and sign in through your identity provider to approve or reject. The requester can see the request but not vote."},
	}
	who := personLabel(rq.Requester)
	if rq.Requester.Email != "" && rq.Requester.Subject != "" {
		who += " (" + rq.Requester.Subject + ")"
	}
	expires := formatTime(rq.ExpiresAt)
	if st == approvals.StatusPending || st == approvals.StatusApproved {
		expires += " · " + approxFromNow(rq.ExpiresAt, now)
	}
	p.Facts = []views.Fact{
		{Label: "Asked by", Value: who},
		{Label: "Issuer", Value: orDash(rq.Requester.Issuer), Mono: true},
		{Label: "Through agent", Value: orDash(rq.Agent), Mono: true},
	}
	if len(rq.Act) > 0 {
		p.Facts = append(p.Facts, views.Fact{Label: "Acting for", Value: strings.Join(rq.Act, " → "), Mono: true})
	}
	p.Facts = append(p.Facts,
		views.Fact{Label: "Tool", Value: rq.Tool, Mono: true},
		views.Fact{Label: "Upstream", Value: orDash(rq.Upstream), Mono: true},
		views.Fact{Label: "Requested", Value: formatTime(rq.CreatedAt)},
		views.Fact{Label: "Expires", Value: expires},
	)
	if rq.DecidedAt != nil {
		p.Facts = append(p.Facts, views.Fact{Label: "Decided", Value: formatTime(*rq.DecidedAt)})
	}
	if rq.UsedAt != nil {
		p.Facts = append(p.Facts, views.Fact{Label: "Run", Value: formatTime(*rq.UsedAt)})
	}
	if rq.RequestID != "" {
		p.Facts = append(p.Facts, views.Fact{Label: "MCP request id", Value: rq.RequestID, Mono: true})
	}
	for _, v := range rq.Votes {
		p.Votes = append(p.Votes, views.VoteRow{Approver: personLabel(v.Approver), Approve: v.Approve, Reason: v.Reason, At: formatTime(v.At)})
	}
	return s.render(w, r, http.StatusOK, views.ApprovalDetail(p))
}

// foldRunes is the length past which a string value of the arguments is
// folded (shown shortened, with the whole of it one click away).
const foldRunes = 120

// jsonLines pretty-prints a JSON document as lines, folding long string
// values. Numbers keep their exact text; object keys come in the
// document's order (canonical arguments are already sorted).
func jsonLines(raw json.RawMessage) []views.JSONLine {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out []views.JSONLine
	var walk func(indent, key string, last bool) error
	walk = func(indent, key string, last bool) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		line := views.JSONLine{Indent: indent, Key: key, Comma: !last}
		switch v := tok.(type) {
		case json.Delim:
			closer := "}"
			if v == '[' {
				closer = "]"
			}
			line.Value, line.Kind, line.Comma = string(v), "punct", false
			if !dec.More() {
				_, _ = dec.Token()
				line.Value += closer
				line.Comma = !last
				out = append(out, line)
				return nil
			}
			out = append(out, line)
			for dec.More() {
				childKey := ""
				if v == '{' {
					kt, err := dec.Token()
					if err != nil {
						return err
					}
					childKey = strconv.Quote(kt.(string))
				}
				// Whether a child is the last is only known after it: every
				// child ends with a comma, and the last one's is dropped.
				if err := walk(indent+"  ", childKey, false); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil {
				return err
			}
			out[len(out)-1].Comma = false
			out = append(out, views.JSONLine{Indent: indent, Value: closer, Kind: "punct", Comma: !last})
			return nil
		case string:
			line.Kind = "string"
			line.Value = strconv.Quote(v)
			if utf8.RuneCountInString(v) > foldRunes {
				line.Fold = line.Value
				line.Value = strconv.Quote(string([]rune(v)[:foldRunes/2])) + "…"
				line.FoldNote = fmt.Sprintf("%d characters", utf8.RuneCountInString(v))
			}
		case json.Number:
			line.Kind, line.Value = "number", v.String()
		case bool:
			line.Kind, line.Value = "literal", strconv.FormatBool(v)
		case nil:
			line.Kind, line.Value = "literal", "null"
		}
		out = append(out, line)
		return nil
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return []views.JSONLine{{Value: "{}", Kind: "punct"}}
	}
	if err := walk("", "", true); err != nil && !errors.Is(err, io.EOF) {
		return []views.JSONLine{{Value: string(raw), Kind: "string"}}
	}
	return out
}

// approvalSettingsFields are the settings form's fields, in page order.
var approvalSettingsFields = []fieldLabel{
	{"approver_group", "approvals-group", "Approver group"},
	{"ttl", "approvals-ttl", "Requests expire after"},
	{"approvals_default", "approvals-default", "Approvals a destructive call needs"},
	{"webhook_url", "approvals-webhook-url", "Webhook URL"},
	{"webhook_secret", "approvals-webhook-secret", "Webhook signing secret"},
}

func (s *Server) approvalSettingsModel(r *http.Request, c consoleCtx) (views.ApprovalSettingsPage, error) {
	f, err := s.governFrame(r, c, "approvals")
	if err != nil {
		return views.ApprovalSettingsPage{}, err
	}
	f.Head.Title = "Approval settings · " + c.Tenant.Name
	set, err := s.cfg.Approvals.Settings(r.Context(), c.Tenant.ID)
	if err != nil {
		return views.ApprovalSettingsPage{}, err
	}
	n := policy.DefaultApprovals
	if s.cfg.Policy != nil {
		ps, err := s.cfg.Policy.Settings(r.Context(), c.Tenant.ID)
		if err != nil {
			return views.ApprovalSettingsPage{}, err
		}
		n = ps.ApprovalsDefault
	}
	p := views.ApprovalSettingsPage{
		Frame:  f,
		Action: approvalsHref(c.Tenant.Slug) + "/settings",
		Form: views.ApprovalSettingsForm{ApproverGroup: set.ApproverGroup, TTLMinutes: strconv.Itoa(int(set.TTL / time.Minute)),
			ApprovalsDefault: strconv.Itoa(n), WebhookURL: set.WebhookURL, HasWebhookSecret: set.HasWebhookSecret},
		WebhookTest: views.CheckPanel{TestID: "webhook-test"},
	}
	if s.cfg.ApprovalWebhook != nil && f.CanChange {
		p.TestAction = p.Action + "/test"
	}
	return p, nil
}

func (s *Server) approvalSettingsPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	p, err := s.approvalSettingsModel(r, c)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, views.ApprovalSettings(p))
}

// saveApprovalSettings saves the approval settings, and the default number
// of approvals (a policy setting, also on the Policies page).
func (s *Server) saveApprovalSettings(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	p, err := s.approvalSettingsModel(r, c)
	if err != nil {
		return err
	}
	v := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	hadSecret := p.Form.HasWebhookSecret
	p.Form.ApproverGroup, p.Form.TTLMinutes, p.Form.ApprovalsDefault, p.Form.WebhookURL =
		v("approver_group"), v("ttl_minutes"), v("approvals_default"), v("webhook_url")
	in := approvals.SettingsInput{ApproverGroup: p.Form.ApproverGroup, WebhookURL: p.Form.WebhookURL}
	if secret := r.PostFormValue("webhook_secret"); secret != "" {
		in.WebhookSecret = &secret
	} else if r.PostFormValue("webhook_secret_clear") != "" {
		empty := ""
		in.WebhookSecret = &empty
	}
	var n int
	minutes, err := strconv.Atoi(p.Form.TTLMinutes)
	if err != nil || minutes < 1 || minutes > int(approvals.MaxTTL/time.Minute) {
		err = tenants.Invalid("ttl", "enter a whole number of minutes, from 1 to 1440")
	}
	if err == nil {
		in.TTL = time.Duration(minutes) * time.Minute
		if n, err = strconv.Atoi(p.Form.ApprovalsDefault); err != nil || n < 1 || n > approvals.MaxApprovals {
			err = tenants.Invalid("approvals_default", "enter a whole number from 1 to 10")
		}
	}
	if err == nil {
		_, err = s.cfg.Approvals.SaveSettings(r.Context(), c.Tenant.ID, in)
	}
	if err == nil && s.cfg.Policy != nil {
		var ps policy.Settings
		if ps, err = s.cfg.Policy.Settings(r.Context(), c.Tenant.ID); err == nil && ps.ApprovalsDefault != n {
			ps.ApprovalsDefault = n
			_, err = s.cfg.Policy.SaveSettings(r.Context(), c.Tenant.ID, ps)
		}
	}
	if err != nil {
		errs, status, ok := formErrors(err, fieldNames(approvalSettingsFields)...)
		if !ok {
			return err
		}
		p.Errors, p.Summary = errs, summarize(errs, approvalSettingsFields)
		p.SecretRetype = r.PostFormValue("webhook_secret") != ""
		p.Form.HasWebhookSecret = hadSecret
		return s.render(w, r, status, views.ApprovalSettings(p))
	}
	return redirect(w, r, approvalsHref(c.Tenant.Slug)+"/settings?done=approvals-saved")
}
