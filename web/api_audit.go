package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/approvals"
	"github.com/locksmithhq/locksmith/tenants/audit"
)

// The admin API's audit trail and approval requests (read-only):
//
//	GET /api/v1/audit[?user=&agent=&tool=&upstream=&decision=&from=&to=&cursor=&limit=]
//	GET /api/v1/approvals[?status=&cursor=&limit=]

// errGovernUnavailable answers the governance routes of a server built
// without the service behind them.
var errGovernUnavailable = &statusError{status: http.StatusServiceUnavailable, msg: "this server runs without the audit trail and approvals"}

// apiAuditQuery documents the audit filters.
var apiAuditQuery = []apiParam{
	{name: "user", typ: "string", doc: "The user's subject, or email (case-insensitive)."},
	{name: "agent", typ: "string", doc: "The agent's OAuth client id."},
	{name: "tool", typ: "string", doc: "The tool's name."},
	{name: "upstream", typ: "string", doc: "The upstream's slug."},
	{name: "decision", typ: "string", doc: "allow, deny or approval."},
	{name: "from", typ: "string", format: "date-time", doc: "Calls at or after this time (RFC 3339; without a zone, UTC)."},
	{name: "to", typ: "string", format: "date-time", doc: "Calls before this time (RFC 3339; without a zone, UTC)."},
}

// apiAuditUser is the person a call was made for.
type apiAuditUser struct {
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
	Email   string `json:"email"`
}

// apiAuditOutcome is what happened upstream.
type apiAuditOutcome struct {
	At        time.Time `json:"at"`
	Status    int       `json:"status" doc:"The upstream's HTTP status; 0 if none was received."`
	LatencyUS int64     `json:"latency_us" doc:"Microseconds."`
	Error     string    `json:"error"`
}

// apiAuditEvent is one call of the audit trail.
type apiAuditEvent struct {
	Seq          int64            `json:"seq" doc:"The call's number in the tenant's trail (its id)."`
	At           time.Time        `json:"at"`
	Summary      string           `json:"summary" doc:"The call told as a sentence, as the console shows it."`
	RequestID    string           `json:"request_id" doc:"The MCP request id."`
	User         apiAuditUser     `json:"user"`
	Agent        string           `json:"agent" doc:"The agent's OAuth client id."`
	Act          []string         `json:"act" doc:"The delegation chain, outermost actor first."`
	Tool         string           `json:"tool"`
	Upstream     string           `json:"upstream" doc:"The upstream's slug."`
	UpstreamName string           `json:"upstream_name"`
	Method       string           `json:"method"`
	PathTemplate string           `json:"path_template" doc:"The tool's path template, never the expanded path."`
	Scopes       []string         `json:"scopes" doc:"The upstream scopes the call used."`
	Narrowed     bool             `json:"narrowed" doc:"The scopes were narrowed below the user's grant."`
	Decision     string           `json:"decision" doc:"allow, deny or approval."`
	Rule         string           `json:"rule" doc:"The policy rule that decided."`
	Reason       string           `json:"reason"`
	ApprovalID   *uuid.UUID       `json:"approval_id" doc:"The approval request that authorised or is holding the call."`
	Result       string           `json:"result" doc:"ok, failed, unknown (allowed, no outcome recorded) or not_called."`
	Outcome      *apiAuditOutcome `json:"outcome" doc:"Null until an outcome is recorded, and for calls not made."`
	Detail       json.RawMessage  `json:"detail,omitempty" type:"object" doc:"Redacted bodies, for tools that record them."`
}

// apiAuditPage is a page of calls, newest first.
type apiAuditPage struct {
	Items      []apiAuditEvent `json:"items"`
	NextCursor string          `json:"next_cursor" doc:"Pass as ?cursor= (with the same filters) for the next page; empty on the last page."`
}

func toAPIAuditEvent(e audit.Event) apiAuditEvent {
	out := apiAuditEvent{
		Seq: e.Seq, At: e.At, Summary: audit.Sentence(e), RequestID: e.RequestID,
		User:  apiAuditUser{Issuer: e.User.Issuer, Subject: e.User.Subject, Email: e.User.Email},
		Agent: e.Agent, Act: apiNonNil(e.Act), Tool: e.Tool, Upstream: e.Upstream, UpstreamName: e.UpstreamName,
		Method: e.Method, PathTemplate: e.PathTemplate, Scopes: apiNonNil(e.Scopes), Narrowed: e.Narrowed,
		Decision: e.Decision, Rule: e.Rule, Reason: e.Reason, ApprovalID: e.ApprovalID, Result: e.Result, Detail: e.Detail,
	}
	if o := e.Outcome; o != nil {
		out.Outcome = &apiAuditOutcome{At: o.At, Status: o.Status, LatencyUS: o.Latency.Microseconds(), Error: o.Error}
	}
	return out
}

// apiLimit reads ?limit= (1 to apiMaxLimit, default apiDefaultLimit).
func apiLimit(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return apiDefaultLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > apiMaxLimit {
		return 0, apiBadRequest("limit", fmt.Sprintf("limit must be an integer from 1 to %d", apiMaxLimit))
	}
	return n, nil
}

func (s *Server) apiListAudit(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	if s.cfg.AuditLog == nil {
		return errGovernUnavailable
	}
	f, _, err := auditFilterFrom(r.URL.Query())
	if err != nil {
		return err
	}
	if f.Limit, err = apiLimit(r); err != nil {
		return err
	}
	f.Cursor = r.URL.Query().Get("cursor")
	page, err := s.cfg.AuditLog.Query(r.Context(), a.TenantID, f)
	if err != nil {
		return err
	}
	out := apiAuditPage{Items: make([]apiAuditEvent, 0, len(page.Events)), NextCursor: page.Next}
	for _, e := range page.Events {
		out.Items = append(out.Items, toAPIAuditEvent(e))
	}
	return apiWriteJSON(w, http.StatusOK, out)
}

// apiApprovalPerson is a user of the tenant's IdP.
type apiApprovalPerson struct {
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
	Email   string `json:"email"`
}

// apiApproval is an approval request.
type apiApproval struct {
	ID                uuid.UUID         `json:"id"`
	Status            string            `json:"status" doc:"pending, approved, used, rejected or expired (a pending or approved request past expires_at is expired)."`
	Tool              string            `json:"tool"`
	Upstream          string            `json:"upstream" doc:"The upstream's slug."`
	Risk              string            `json:"risk"`
	Args              json.RawMessage   `json:"args" type:"object" doc:"The call's arguments, canonical JSON, exactly as approvers see them."`
	Requester         apiApprovalPerson `json:"requester"`
	Agent             string            `json:"agent" doc:"The agent's OAuth client id."`
	Act               []string          `json:"act"`
	Rule              string            `json:"rule" doc:"The policy rule that required approval."`
	Reason            string            `json:"reason"`
	RequestID         string            `json:"request_id" doc:"The MCP request that asked first."`
	Approvals         int               `json:"approvals"`
	ApprovalsRequired int               `json:"approvals_required"`
	RejectionReason   string            `json:"rejection_reason"`
	CreatedAt         time.Time         `json:"created_at"`
	ExpiresAt         time.Time         `json:"expires_at"`
	DecidedAt         *time.Time        `json:"decided_at"`
	UsedAt            *time.Time        `json:"used_at"`
	ApprovalURL       string            `json:"approval_url" doc:"The approver page of the request."`
}

// apiApprovalPage is a page of approval requests, newest first.
type apiApprovalPage struct {
	Items      []apiApproval `json:"items"`
	NextCursor string        `json:"next_cursor" doc:"Pass as ?cursor= (with the same status) for the next page; empty on the last page."`
}

func (s *Server) apiListApprovals(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	if s.cfg.Approvals == nil {
		return errGovernUnavailable
	}
	limit, err := apiLimit(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	list, next, err := s.cfg.Approvals.List(r.Context(), a.TenantID, approvals.ListFilter{Status: q.Get("status"), Limit: limit, Cursor: q.Get("cursor")})
	if err != nil {
		return err
	}
	t, err := s.cfg.Tenants.TenantByID(r.Context(), a.TenantID)
	if err != nil {
		return err
	}
	now := time.Now()
	out := apiApprovalPage{Items: make([]apiApproval, 0, len(list)), NextCursor: next}
	for _, rq := range list {
		out.Items = append(out.Items, apiApproval{
			ID: rq.ID, Status: effectiveStatus(rq, now), Tool: rq.Tool, Upstream: rq.Upstream, Risk: rq.Risk, Args: rq.Args,
			Requester: apiApprovalPerson{Issuer: rq.Requester.Issuer, Subject: rq.Requester.Subject, Email: rq.Requester.Email},
			Agent:     rq.Agent, Act: apiNonNil(rq.Act), Rule: rq.Rule, Reason: rq.Reason, RequestID: rq.RequestID,
			Approvals: rq.Approvals, ApprovalsRequired: rq.ApprovalsRequired, RejectionReason: rq.RejectionReason,
			CreatedAt: rq.CreatedAt, ExpiresAt: rq.ExpiresAt, DecidedAt: rq.DecidedAt, UsedAt: rq.UsedAt,
			ApprovalURL: s.cfg.Approvals.URL(t.Slug, rq.ID),
		})
	}
	return apiWriteJSON(w, http.StatusOK, out)
}
