package web

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/approvals"
	"github.com/locksmithhq/locksmith/web/views"
)

// The approver pages: the tenant's approvers sign in through the tenant's
// IdP (like every end-user page) and approve or reject calls held for
// two-person approval. The link an agent's tool error carries is the
// request's page, approvals.Service.URL.
//
//	GET  /t/{tenant}/approvals[?cursor=]   pending requests (an outsider sees only their own)
//	GET  /t/{tenant}/approvals/{id}        one request; Approve / Reject for approvers
//	POST /t/{tenant}/approvals/{id}/vote   decision=approve|reject, reason
//
// Who may vote is decided by approvals.Service.Vote under the request's row
// lock (the approver group, never the requester, once each); the page only
// hides the buttons from those it would refuse. The approver's groups are
// those of the verified ID token of their sign-in. Another tenant's request
// id is not found.

// approverPageSize is how many requests one page of the list shows.
const approverPageSize = 50

// approverRoutes registers the approver pages under t; without an
// approvals service they are not mounted.
func (s *Server) approverRoutes(t string) {
	if s.cfg.Approvals == nil {
		return
	}
	s.endUser("GET "+t+"/approvals", s.approverList)
	s.endUser("GET "+t+"/approvals/{id}", s.approverRequest)
	s.endUser("POST "+t+"/approvals/{id}/vote", s.approverVote)
}

func approverListPath(slug string) string { return "/t/" + slug + "/approvals" }

func approverPath(slug string, id uuid.UUID) string {
	return approverListPath(slug) + "/" + id.String()
}

// errApprovalNotFound answers an unknown id, or another tenant's.
func errApprovalNotFound(slug string) *euError {
	return &euError{status: http.StatusNotFound, title: "Approval request not found",
		msg:     "There is no such approval request here. It may have been removed after it was decided, or the link is incomplete.",
		actions: []views.EndUserAction{{Label: "Approval requests", Href: approverListPath(slug), TestID: "approver-list-link"}}}
}

// approvalFor loads the {id} request of the tenant.
func (s *Server) approvalFor(r *http.Request, c *euCtx) (approvals.Request, error) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return approvals.Request{}, errApprovalNotFound(c.Tenant.Slug)
	}
	rq, err := s.cfg.Approvals.Get(r.Context(), c.Tenant.ID, id)
	if errors.Is(err, tenants.ErrNotFound) {
		return approvals.Request{}, errApprovalNotFound(c.Tenant.Slug)
	}
	return rq, err
}

// approverRequest shows one request: GET /t/{tenant}/approvals/{id}.
func (s *Server) approverRequest(w http.ResponseWriter, r *http.Request, c *euCtx) error {
	if c.Session == nil {
		return redirect(w, r, enduserSignInPath(c.Tenant.Slug, r.URL.Path))
	}
	rq, err := s.approvalFor(r, c)
	if err != nil {
		return err
	}
	p, err := s.approverModel(r, c, rq)
	if err != nil {
		return err
	}
	if rq.Status != approvals.StatusUsed && rq.Status != approvals.StatusExpired {
		// Once the call ran or the request lapsed, a reloaded "done" is stale.
		p.Notice = approverNotice(r.URL.Query().Get("done"))
	}
	s.allowIdPForm(r.Context(), w, r, c) // "Not you?" signs in again at the IdP
	return s.render(w, r, http.StatusOK, views.ApproverRequest(p))
}

// approverNotice is the fixed message a redirect after a vote asks for.
func approverNotice(key string) string {
	switch key {
	case "approved":
		return "Your approval was recorded."
	case "rejected":
		return "You rejected the request. The agent's call will not run."
	}
	return ""
}

// approverVote records the signed-in approver's vote: POST
// /t/{tenant}/approvals/{id}/vote. A refusal re-renders the page with the
// reason it was refused and what was typed.
func (s *Server) approverVote(w http.ResponseWriter, r *http.Request, c *euCtx) error {
	ctx := r.Context()
	if err := parseForm(r); err != nil {
		return err
	}
	if c.Session == nil {
		// Signed out (or the session ended): sign in and look again; the
		// vote is not carried over.
		return redirect(w, r, enduserSignInPath(c.Tenant.Slug, "/t/"+c.Tenant.Slug+"/approvals/"+url.PathEscape(r.PathValue("id"))))
	}
	rq, err := s.approvalFor(r, c)
	if err != nil {
		return err
	}
	reason := r.PostFormValue("reason")
	var approve bool
	switch r.PostFormValue("decision") {
	case "approve":
		approve = true
	case "reject":
	default:
		return &euError{status: http.StatusBadRequest, title: "Choose Approve or Reject",
			msg:     "The form didn't say whether you approve or reject the request. Nothing was recorded.",
			actions: []views.EndUserAction{{Label: "Back to the request", Href: approverPath(c.Tenant.Slug, rq.ID), TestID: "approver-back"}}}
	}
	u := c.Session.User
	who := approvals.Approver{Person: approvals.Person{Issuer: u.Issuer, Subject: u.Subject, Email: u.Email}, Groups: u.Groups}
	after, err := s.cfg.Approvals.Vote(ctx, c.Tenant.ID, rq.ID, who, approve, reason)
	if err != nil {
		var pub *tenants.Error
		if !errors.As(err, &pub) || errors.Is(err, tenants.ErrNotFound) {
			if errors.Is(err, tenants.ErrNotFound) {
				return errApprovalNotFound(c.Tenant.Slug)
			}
			return err
		}
		s.cfg.Logger.InfoContext(ctx, "approval vote refused", "tenant_id", c.Tenant.ID, "approval_id", rq.ID,
			"subject", u.Subject, "err", pub.Message, "request_id", RequestID(ctx))
		// Show the request as it is now, with why the vote was refused.
		if now, gerr := s.cfg.Approvals.Get(ctx, c.Tenant.ID, rq.ID); gerr == nil {
			rq = now
		}
		p, merr := s.approverModel(r, c, rq)
		if merr != nil {
			return merr
		}
		status, _, _ := statusAndMessage(err)
		if pub.Field == "reason" {
			p.ReasonError = sentence(pub.Message)
			status = http.StatusUnprocessableEntity
		} else {
			p.Problem = sentence(pub.Message)
		}
		p.Reason = reason
		s.allowIdPForm(ctx, w, r, c)
		return s.render(w, r, status, views.ApproverRequest(p))
	}
	done := "approved"
	if !approve {
		done = "rejected"
	}
	s.cfg.Logger.InfoContext(ctx, "approval vote recorded", "tenant_id", c.Tenant.ID, "approval_id", rq.ID,
		"subject", u.Subject, "decision", done, "status", after.Status, "request_id", RequestID(ctx))
	return redirect(w, r, approverPath(c.Tenant.Slug, rq.ID)+"?done="+done)
}

// approverModel builds the page of rq for the signed-in person.
func (s *Server) approverModel(r *http.Request, c *euCtx, rq approvals.Request) (views.ApproverPage, error) {
	ctx := r.Context()
	set, err := s.cfg.Approvals.Settings(ctx, c.Tenant.ID)
	if err != nil {
		return views.ApproverPage{}, err
	}
	now := time.Now()
	slug := c.Tenant.Slug
	f := s.euFrame(r, c, rq.Tool+" · Approval request")
	f.Wide = true
	f.SwitchNext = approverPath(slug, rq.ID)
	p := views.ApproverPage{
		Frame: f, ID: rq.ID.String(), Status: rq.Status, StatusLabel: approverStatusLabel(rq.Status),
		Tool: rq.Tool, Risk: rq.Risk, Upstream: s.upstreamName(r, c, rq.Upstream),
		Requester: personLabel(rq.Requester), Agent: rq.Agent, ActingFor: strings.Join(rq.Act, " → "),
		Args: jsonLines(rq.Args), Rule: rq.Rule, PolicyReason: rq.Reason,
		Approvals: rq.Approvals, Required: rq.ApprovalsRequired,
		Requested: relativeTime(rq.CreatedAt, now) + " (" + formatTime(rq.CreatedAt) + ")",
		ExpiresIn: untilText(rq.ExpiresAt, now), ExpiresAt: formatTime(rq.ExpiresAt), ExpiresISO: rq.ExpiresAt.UTC().Format(time.RFC3339),
		ApproverGroup: set.ApproverGroup,
		VoteAction:    approverPath(slug, rq.ID) + "/vote",
		ListHref:      approverListPath(slug),
	}
	if rq.DecidedAt != nil {
		p.Decided = relativeTime(*rq.DecidedAt, now) + " (" + formatTime(*rq.DecidedAt) + ")"
	}
	if rq.Requester.Email != "" && rq.Requester.Subject != rq.Requester.Email {
		p.RequesterSubject = rq.Requester.Subject
	}
	u := c.Session.User
	var mine *approvals.Vote
	approvers := make([]string, 0, len(rq.Votes))
	for i, v := range rq.Votes {
		isMe := v.Approver.Issuer == u.Issuer && v.Approver.Subject == u.Subject
		if isMe {
			mine = &rq.Votes[i]
		}
		if v.Approve {
			approvers = append(approvers, personLabel(v.Approver))
		}
		p.Votes = append(p.Votes, views.ApproverVote{Approver: personLabel(v.Approver), Approve: v.Approve,
			Reason: v.Reason, When: relativeTime(v.At, now), At: formatTime(v.At), Mine: isMe})
	}
	isRequester := rq.Requester.Issuer == u.Issuer && rq.Requester.Subject == u.Subject
	inGroup := slices.Contains(u.Groups, set.ApproverGroup)
	pending := rq.Status == approvals.StatusPending
	missing := max(rq.ApprovalsRequired-rq.Approvals, 0)
	switch {
	case isRequester:
		p.Viewer = views.ViewerRequester
		if pending {
			p.ViewerNote = "You asked for this; " + peopleCount(missing, "other") + " must approve. You can't approve your own request; your agent can retry the call once it is approved."
		} else {
			p.ViewerNote = "You asked for this request."
		}
	case !inGroup:
		p.Viewer = views.ViewerOutsider
		p.ViewerNote = "You're not an approver for this tenant. Only members of the “" + set.ApproverGroup + "” group can approve or reject requests."
	case mine != nil:
		p.Viewer = views.ViewerVoted
		switch {
		case !mine.Approve:
			p.ViewerNote = "You rejected this request."
		case pending:
			p.ViewerNote = "You approved this request. It still needs " + peopleCount(missing, "more") + " to approve."
		default:
			p.ViewerNote = "You approved this request."
		}
	default:
		p.Viewer = views.ViewerApprover
		if !pending {
			p.ViewerNote = "This request can no longer be voted on."
		}
	}
	switch rq.Status {
	case approvals.StatusApproved:
		p.Outcome = "Approved" + byNames(approvers) + ". The agent can now run this call once, with exactly these arguments, until " + formatTime(rq.ExpiresAt) + "."
	case approvals.StatusUsed:
		p.Outcome = "Approved" + byNames(approvers) + ", and run"
		if rq.UsedAt != nil {
			p.Outcome += " " + relativeTime(*rq.UsedAt, now) + " (" + formatTime(*rq.UsedAt) + ")"
		}
		p.Outcome += ". An approval is used once; running it again needs a new request."
	case approvals.StatusRejected:
		by := ""
		for _, v := range rq.Votes {
			if !v.Approve {
				by = " by " + personLabel(v.Approver)
			}
		}
		p.Outcome = "Rejected" + by + ": “" + rq.RejectionReason + "”. The call will not run."
	case approvals.StatusExpired:
		p.Outcome = "This request expired " + relativeTime(rq.ExpiresAt, now) + " (" + formatTime(rq.ExpiresAt) + ") before it was used, so nothing ran. The agent has to ask again."
	}
	return p, nil
}

// upstreamName is the name of the upstream with slug, or the slug when it
// no longer exists.
func (s *Server) upstreamName(r *http.Request, c *euCtx, slug string) string {
	if slug == "" {
		return "an upstream"
	}
	up, err := s.cfg.Tenants.UpstreamBySlug(r.Context(), c.Tenant.ID, slug)
	if err != nil {
		return slug
	}
	return up.Name
}

// approverList lists the requests waiting for approvers: GET
// /t/{tenant}/approvals[?cursor=]. Someone outside the approver group sees
// only their own.
func (s *Server) approverList(w http.ResponseWriter, r *http.Request, c *euCtx) error {
	ctx := r.Context()
	slug := c.Tenant.Slug
	if c.Session == nil {
		return redirect(w, r, enduserSignInPath(slug, approverListPath(slug)))
	}
	set, err := s.cfg.Approvals.Settings(ctx, c.Tenant.ID)
	if err != nil {
		return err
	}
	u := c.Session.User
	cursor := r.URL.Query().Get("cursor")
	list, next, err := s.cfg.Approvals.List(ctx, c.Tenant.ID, approvals.ListFilter{Status: approvals.StatusPending, Limit: approverPageSize, Cursor: cursor})
	if errors.Is(err, tenants.ErrInvalid) && cursor != "" {
		cursor = "" // a stale or edited cursor: start from the first page
		list, next, err = s.cfg.Approvals.List(ctx, c.Tenant.ID, approvals.ListFilter{Status: approvals.StatusPending, Limit: approverPageSize})
	}
	if err != nil {
		return err
	}
	f := s.euFrame(r, c, "Approval requests")
	f.Wide = true
	f.SwitchNext = approverListPath(slug)
	p := views.ApproverListPage{Frame: f, IsApprover: slices.Contains(u.Groups, set.ApproverGroup), ApproverGroup: set.ApproverGroup}
	if cursor != "" {
		p.FirstHref = approverListPath(slug)
	}
	if next != "" {
		p.NextHref = approverListPath(slug) + "?" + url.Values{"cursor": {next}}.Encode()
	}
	names := map[string]string{}
	now := time.Now()
	for _, rq := range list {
		mine := rq.Requester.Issuer == u.Issuer && rq.Requester.Subject == u.Subject
		if !p.IsApprover && !mine {
			continue
		}
		name, ok := names[rq.Upstream]
		if !ok {
			name = s.upstreamName(r, c, rq.Upstream)
			names[rq.Upstream] = name
		}
		p.Rows = append(p.Rows, views.ApproverRow{
			ID: rq.ID.String(), Href: approverPath(slug, rq.ID), Tool: rq.Tool, Risk: rq.Risk, Upstream: name,
			Requester: personLabel(rq.Requester), Agent: rq.Agent, Approvals: rq.Approvals, Required: rq.ApprovalsRequired,
			Requested: relativeTime(rq.CreatedAt, now), ExpiresIn: untilText(rq.ExpiresAt, now), Mine: mine,
		})
	}
	s.allowIdPForm(ctx, w, r, c)
	return s.render(w, r, http.StatusOK, views.ApproverList(p))
}

// approverStatusLabel says a request's status for approvers.
func approverStatusLabel(status string) string {
	switch status {
	case approvals.StatusPending:
		return "Waiting for approvers"
	case approvals.StatusApproved:
		return "Approved"
	case approvals.StatusUsed:
		return "Approved and run"
	case approvals.StatusRejected:
		return "Rejected"
	case approvals.StatusExpired:
		return "Expired"
	}
	return status
}

// untilText says when t is relative to now, for people: "in 14 minutes",
// "in 2 hours", "3 minutes ago".
func untilText(t, now time.Time) string {
	d := t.Sub(now)
	if d <= 0 {
		return relativeTime(t, now)
	}
	switch {
	case d < time.Minute:
		return "in less than a minute"
	case d < time.Hour:
		return "in " + plural(int(d/time.Minute), "minute")
	case d < 48*time.Hour:
		return "in " + plural(int(d/time.Hour), "hour")
	}
	return "on " + t.UTC().Format("2 Jan 2006")
}

// byNames is " by a, b and c" ("" for nobody).
func byNames(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return " by " + names[0]
	}
	return " by " + strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// peopleCount says "one other person", "two other people", … (adj is
// "other" or "more").
func peopleCount(n int, adj string) string {
	words := []string{"no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"}
	num := strconv.Itoa(n)
	if n >= 0 && n < len(words) {
		num = words[n]
	}
	if n == 1 {
		return num + " " + adj + " person"
	}
	return num + " " + adj + " people"
}
