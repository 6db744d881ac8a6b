package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/audit"
	"github.com/locksmithhq/locksmith/tenants/egress"
)

// Protocol versions the endpoint branches on.
const (
	version20251125 = "2025-11-25"
	version20260728 = "2026-07-28"
)

// callPlan is one tools/call going through the hot path.
type callPlan struct {
	rs       *reqState
	req      *sdk.CallToolRequest
	tool     tenants.Tool // for MCP upstream tools, synthesised from the upstream's listing
	upstream tenants.Upstream
	args     map[string]any
	method   string // audit: HTTP method, or "MCP"
	path     string // audit: path template, or the upstream tool name
	scopes   []string
	proto    string // the request's protocol version
	// local says the call sends nothing upstream (the connect tool): it
	// does not pass the upstream's gate.
	local bool
	// verdict is what the upstream request(s) said about the upstream's
	// health, set by the doFunc for the gate; the zero value is ignored.
	verdict egress.Verdict
}

// protocolOf is the protocol version of a tools/call: the SDK's view of it
// (per-request _meta, or the ephemeral session's), else the request header
// (calls served by the fast path carry no SDK session).
func protocolOf(rs *reqState, req *sdk.CallToolRequest) string {
	if v := req.ProtocolVersion(); v != "" {
		return v
	}
	return rs.version
}

// doFunc performs the upstream call with Token B ("" for auth mode none)
// and sets the plan's verdict.
type doFunc func(ctx context.Context, token string) (*sdk.CallToolResult, Outcome, error)

// run is the hot path after argument checks: policy (with approvals) →
// broker (Token B) → audit intent, committed → the upstream's gate
// (circuit breaker and in-flight bound) → upstream → audit outcome,
// committed → respond. Refused and held calls are audited by their intent
// alone; a call the gate refuses is audited like a broker failure (intent,
// then an upstream_error outcome) and nothing is sent upstream. Errors
// returned are JSON-RPC errors (e.g. -32042); everything the agent can act
// on is a tool result.
//
// The broker runs before the intent so that the intent records the Token B
// scopes actually used and whether they were narrowed; the broker calls no
// upstream API (at most the upstream's token endpoint, to refresh), so the
// rule "no upstream call without a committed intent" holds.
func (h *Handler) run(ctx context.Context, p *callPlan, do doFunc) (*sdk.CallToolResult, error) {
	rs, start := p.rs, h.cfg.Now()
	retry := false
	if p.req.Params.RequestState != "" {
		if err := h.state.decode(ctx, rs.snap.tenant.ID, rs.principal.Subject, p.tool.Name, p.req.Params.RequestState); err != nil {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "requestState failed verification (tampered, expired, or made for another user or tool); call the tool again without it"}
		}
		retry = true
		for _, resp := range p.req.Params.InputResponses {
			if er, ok := resp.(*sdk.ElicitResult); ok && er.Action != "" && er.Action != "accept" {
				return toolError("declined", fmt.Sprintf("you declined, so %s was not called", p.tool.Name), nil), nil
			}
		}
	}

	args := p.args
	if args == nil {
		args = map[string]any{}
	}
	d, err := h.cfg.Policy.Decide(ctx, Call{
		TenantID: rs.snap.tenant.ID, TenantSlug: rs.snap.tenant.Slug, RequestID: rs.requestID,
		Principal: rs.principal, Tool: p.tool, Upstream: p.upstream, Args: args, EndpointScopes: rs.snap.idp.RequiredScopes,
	})
	if err != nil {
		h.log.ErrorContext(ctx, "mcp policy failed", "tenant_id", rs.snap.tenant.ID, "tool", p.tool.Name, "request_id", rs.requestID, "err", err)
		if IsRetryable(err) {
			return retryable("Locksmith could not evaluate the policy for this call just now, so it was not made; retry in a moment", 0), nil
		}
		return toolError("internal", "Locksmith could not evaluate the policy for this call, so it was not made; quote request id "+rs.requestID+" if you contact your admin", nil), nil
	}
	intent := Intent{
		TenantID: rs.snap.tenant.ID, RequestID: rs.requestID,
		Issuer: rs.principal.Issuer, Subject: rs.principal.Subject, Email: rs.principal.Email,
		Agent: rs.principal.AgentClientID, Act: rs.principal.Act,
		Tool: p.tool.Name, UpstreamID: p.upstream.ID, Upstream: p.upstream.Slug, UpstreamName: p.upstream.Name,
		Method: p.method, PathTemplate: p.path, Decision: d,
	}
	if p.tool.LogBodies {
		// Only tools that opt in have their bodies recorded, redacted.
		if raw, err := json.Marshal(args); err == nil {
			intent.RequestBody = audit.Redact(raw, 0)
		}
	}
	switch d.Effect {
	case Allow:
	case NeedsApproval:
		h.recordRefusal(ctx, intent)
		return h.approvalResult(ctx, p, d, retry)
	default:
		h.recordRefusal(ctx, intent)
		msg := "refused by policy: " + d.Reason
		if d.Rule != "" {
			msg = fmt.Sprintf("refused by policy (rule %q): %s", d.Rule, d.Reason)
		}
		return toolError("policy", msg, map[string]any{"rule": d.Rule}), nil
	}

	var tok UpstreamToken
	var brokerErr error
	if p.upstream.AuthMode != tenants.AuthNone {
		if h.cfg.Broker == nil {
			brokerErr = errNoBroker
		} else {
			tok, brokerErr = h.cfg.Broker.Token(ctx, rs.snap.tenant.ID, p.upstream.ID, User{
				Issuer: rs.principal.Issuer, Subject: rs.principal.Subject, Email: rs.principal.Email, RawTokenA: rs.rawToken,
			}, p.scopes)
		}
	}
	if tok.RevokeAfterUse {
		// Minted for this call alone: revoked once it is over, whatever
		// happens below (in the background: no latency added).
		defer h.cfg.Broker.AfterUse(ctx, rs.snap.tenant.ID, p.upstream.ID, tok)
	}
	intent.TokenScopes, intent.Narrowed = tok.Scopes, tok.Narrowed
	auditID, auditErr := h.cfg.Audit.Intent(ctx, intent)
	if auditErr != nil {
		h.log.ErrorContext(ctx, "mcp audit intent failed", "tenant_id", rs.snap.tenant.ID, "tool", p.tool.Name, "request_id", rs.requestID, "err", auditErr)
	}
	// finish records the outcome; it reports whether that failed (the
	// writer already retried through a short database outage).
	finish := func(out Outcome) (failed bool) {
		if auditErr != nil {
			return false
		}
		out.Latency = h.cfg.Now().Sub(start)
		if !p.tool.LogBodies {
			out.ResponseBody = nil
		}
		if out.TokenScopes == nil {
			out.TokenScopes, out.Narrowed = tok.Scopes, tok.Narrowed
		}
		if err := h.cfg.Audit.Outcome(context.WithoutCancel(ctx), rs.snap.tenant.ID, auditID, out); err != nil {
			h.log.ErrorContext(ctx, "mcp audit outcome failed", "audit_id", auditID, "request_id", rs.requestID, "err", err)
			return true
		}
		return false
	}

	if brokerErr != nil {
		// Nothing goes upstream: the agent gets the broker's answer even if
		// the intent could not be recorded.
		var cre *ConsentRequiredError
		switch {
		case errors.Is(brokerErr, errNoBroker):
			finish(Outcome{Result: "error", Error: "no token broker"})
			return toolError("unavailable", "Locksmith can't get credentials for "+p.upstream.Name+" yet (the token broker is not configured on this server); ask your admin", nil), nil
		case errors.As(brokerErr, &cre):
			finish(Outcome{Result: "consent_required", Error: "consent required: " + cre.Reason})
			return h.consentResult(ctx, p, cre, retry)
		case IsRetryable(brokerErr):
			h.log.WarnContext(ctx, "mcp broker temporary failure", "tenant_id", rs.snap.tenant.ID, "upstream", p.upstream.Slug, "request_id", rs.requestID, "err", brokerErr)
			finish(Outcome{Result: "upstream_error", Error: "broker: temporary failure"})
			return retryable(fmt.Sprintf("Locksmith could not refresh your credential for %s just now; this is temporary, retry in a moment", p.upstream.Name), retryAfterOf(brokerErr)), nil
		default:
			h.log.ErrorContext(ctx, "mcp broker failed", "tenant_id", rs.snap.tenant.ID, "upstream", p.upstream.Slug, "request_id", rs.requestID, "err", brokerErr)
			finish(Outcome{Result: "error", Error: "broker failed"})
			return toolError("internal", "Locksmith could not get your credential for "+p.upstream.Name+"; quote request id "+rs.requestID+" if you contact your admin", nil), nil
		}
	}
	if auditErr != nil {
		// No upstream call without a committed intent.
		return retryable("Locksmith could not record this call in the audit trail, so it did not call "+p.upstream.Name+"; retry in a moment", 0), nil
	}

	var permit egress.Permit
	if !p.local {
		var gateErr error
		if permit, gateErr = h.gate(ctx, rs.snap.tenant.ID, p.upstream); gateErr != nil {
			finish(gateOutcome(gateErr))
			return unavailable(p.upstream, gateErr), nil
		}
	}
	settled := p.local
	defer func() {
		if !settled { // do panicked: free the slot (and the probe) anyway
			permit.Done(egress.Verdict{})
		}
	}()
	res, out, err := do(ctx, tok.Value)
	if !settled {
		settled = true
		h.settle(ctx, rs.snap.tenant.ID, p.upstream, permit, p.verdict)
	}
	out.TokenScopes, out.Narrowed = tok.Scopes, tok.Narrowed
	var cre *ConsentRequiredError
	if errors.As(err, &cre) {
		// The upstream refused Token B (401): the grant needs re-consent.
		out.Result, out.Error = "consent_required", "upstream refused the token: "+cre.Reason
		finish(out)
		return h.consentResult(ctx, p, cre, retry)
	}
	if out.Error == "" && out.Result != "" && out.Result != "ok" {
		out.Error = out.Result
	}
	if finish(out) && err == nil && (res == nil || !res.IsError) {
		// Every success an agent sees has its outcome in the audit trail:
		// when the outcome can't be recorded, the result is withheld. The
		// call was made, so the agent is told to check, not to retry.
		return toolError("audit_unavailable", "Locksmith called "+p.upstream.Name+" but could not record the outcome in the audit trail, so the result is withheld. The call may have taken effect: check in "+
			p.upstream.Name+" before retrying (request id "+rs.requestID+").", map[string]any{"retryable": false}), nil
	}
	return res, err
}

// errNoBroker: the Handler was built without a token broker.
var errNoBroker = errors.New("mcp: no token broker")

// recordRefusal audits a denied or held call (an intent, no outcome). A
// failure is logged; the call is refused either way.
func (h *Handler) recordRefusal(ctx context.Context, in Intent) {
	if _, err := h.cfg.Audit.Intent(ctx, in); err != nil {
		h.log.ErrorContext(ctx, "mcp audit of a refused call failed", "tenant_id", in.TenantID, "tool", in.Tool, "request_id", in.RequestID, "err", err)
	}
}

// approvalResult tells the agent the call waits for approvers: the same
// three forms as consent (input-required with a URL elicitation, -32042, or
// a tool error with the link), carrying the approval's URL and id.
func (h *Handler) approvalResult(ctx context.Context, p *callPlan, d Decision, retry bool) (*sdk.CallToolResult, error) {
	if d.ApprovalURL == "" {
		// No approvals service (DefaultPolicy): nothing to wait for.
		return toolError("approval_required", fmt.Sprintf("%s is destructive and %s; it was not called", p.tool.Name, d.Reason),
			map[string]any{"approvals_required": d.Approvals, "rule": d.Rule}), nil
	}
	msg := fmt.Sprintf("%s was not called: it %s by approvers other than you (%d of %d so far). Ask an approver to open the approval page, then call %s again with exactly the same arguments",
		p.tool.Name, d.Reason, d.ApprovalsGiven, d.Approvals, p.tool.Name)
	if res, err, ok := h.urlElicitation(ctx, p, msg, d.ApprovalURL, d.ApprovalID.String(), retry); ok {
		return res, err
	}
	text := msg + ":\n" + d.ApprovalURL
	if retry {
		text = fmt.Sprintf("%s is still waiting for approval (%d of %d); it was not called. Call it again with the same arguments once it is approved:\n%s",
			p.tool.Name, d.ApprovalsGiven, d.Approvals, d.ApprovalURL)
	}
	return toolError("approval_required", text, map[string]any{
		"approval_url": d.ApprovalURL, "approval_id": d.ApprovalID.String(), "rule": d.Rule,
		"approvals_required": d.Approvals, "approvals_given": d.ApprovalsGiven,
	}), nil
}

// consentResult tells the agent where the user grants access: an
// input-required result (2026-07-28 clients that handle URL elicitation), a
// URLElicitationRequired error -32042 (2025-11-25 clients that declared URL
// elicitation), or a tool error with the link (everyone else, and every retry
// that comes back without the grant, so clients never loop).
func (h *Handler) consentResult(ctx context.Context, p *callPlan, cre *ConsentRequiredError, retry bool) (*sdk.CallToolResult, error) {
	rs := p.rs
	link := cre.ConsentURL
	if link == "" {
		link = h.consentURL(rs.snap.tenant.Slug, p.upstream.Slug, append(cre.MissingScopes, p.scopes...))
	}
	what := "access to " + p.upstream.Name
	if len(cre.MissingScopes) > 0 {
		what += " (" + strings.Join(cre.MissingScopes, " ") + ")"
	}
	msg := fmt.Sprintf("%s needs your permission: grant %s in your browser, then call the tool again", p.tool.Name, what)
	if cre.Reason == "needs_reauth" || cre.Reason == "upstream_refused_token" {
		msg = fmt.Sprintf("%s needs you to reconnect %s (your earlier grant no longer works): open the link, then call the tool again", p.tool.Name, p.upstream.Name)
	}
	if res, err, ok := h.urlElicitation(ctx, p, msg, link, randomID(), retry); ok {
		return res, err
	}
	text := msg + ":\n" + link
	if retry {
		text = "access to " + p.upstream.Name + " is still not granted. Open the link, finish granting access, then call " + p.tool.Name + " again:\n" + link
	}
	return toolError("consent_required", text, map[string]any{"consent_url": link, "reason": cre.Reason, "missing_scopes": cre.MissingScopes}), nil
}

// urlElicitation answers with a URL elicitation when the client can take
// one and this is not already a retry: an input-required result for
// 2026-07-28 clients that declare elicitation.url, -32042 for 2025-11-25
// clients that declared it in initialize. ok is false when the caller should
// answer with a tool error instead.
func (h *Handler) urlElicitation(ctx context.Context, p *callPlan, msg, link, elicitationID string, retry bool) (*sdk.CallToolResult, error, bool) {
	if retry {
		return nil, nil, false
	}
	rs := p.rs
	proto := p.proto
	if proto == "" {
		proto = protocolOf(rs, p.req)
	}
	if proto >= version20260728 {
		if c := p.req.ClientCapabilities(); c != nil && c.Elicitation != nil && c.Elicitation.URL != nil {
			st, err := h.state.encode(ctx, requestState{Tenant: rs.snap.tenant.ID, Subject: rs.principal.Subject, Tool: p.tool.Name})
			if err == nil {
				return &sdk.CallToolResult{
					InputRequests: sdk.InputRequestMap{"link": &sdk.ElicitParams{Mode: "url", Message: msg, URL: link, ElicitationID: elicitationID}},
					RequestState:  st,
				}, nil, true
			}
			h.log.ErrorContext(ctx, "mcp request state failed", "request_id", rs.requestID, "err", err)
		}
		return nil, nil, false
	}
	if proto >= version20251125 && h.caps.has(rs.tokenKey) {
		return nil, sdk.URLElicitationRequiredError([]*sdk.ElicitParams{{Mode: "url", Message: msg, URL: link, ElicitationID: elicitationID}}), true
	}
	return nil, nil, false
}

// consentURL is the consent page of issue 5 for an upstream and scopes. It
// carries no PII and is not pre-authenticated: the user signs in there.
func (h *Handler) consentURL(tenantSlug, upstreamSlug string, scopes []string) string {
	u := h.base + "/t/" + url.PathEscape(tenantSlug) + "/connect/" + url.PathEscape(upstreamSlug)
	seen := map[string]bool{}
	var sc []string
	for _, s := range scopes {
		if s != "" && !seen[s] {
			seen[s] = true
			sc = append(sc, s)
		}
	}
	if len(sc) > 0 {
		u += "?scope=" + url.QueryEscape(strings.Join(sc, " "))
	}
	return u
}

// toolError is a failed call the agent can read and act on: text for the
// model and a structured error object.
func toolError(kind, msg string, extra map[string]any) *sdk.CallToolResult {
	e := map[string]any{"kind": kind, "message": msg}
	for k, v := range extra {
		if v != nil {
			e[k] = v
		}
	}
	return &sdk.CallToolResult{
		IsError:           true,
		Content:           []sdk.Content{&sdk.TextContent{Text: msg}},
		StructuredContent: map[string]any{"error": e},
	}
}

// retryable is a temporary failure.
func retryable(msg string, after time.Duration) *sdk.CallToolResult {
	extra := map[string]any{"retryable": true}
	if after > 0 {
		extra["retry_after_seconds"] = int(after.Seconds())
		msg += fmt.Sprintf(" (after %d s)", int(after.Seconds()))
	}
	return toolError("retryable", msg, extra)
}

func retryAfterOf(err error) time.Duration {
	var re *RetryableError
	if errors.As(err, &re) {
		return re.RetryAfter
	}
	return 0
}
