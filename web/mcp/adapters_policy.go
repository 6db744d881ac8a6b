package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/approvals"
	"github.com/locksmithhq/locksmith/tenants/audit"
	"github.com/locksmithhq/locksmith/tenants/policy"
)

// PolicyEngine adapts the policy engine and the approvals service to
// [Policy]: tenant rules (kill switches, agent allow-list), the tool's CEL
// condition, and two-person approvals for destructive tools and for
// conditions that answer "approval".
//
// Scopes. A tool's RequiredScopes are the upstream scopes its Token B needs
// (the broker narrows to them); Token A never carries them. The Token A scope
// check is the IdP registration's RequiredScopes, enforced for every request
// by the resource server (403 insufficient_scope). So the policy sees the
// tool with Scopes = the endpoint's scopes, and in conditions tool.scopes are
// the Token A scopes the call needs.
//
// Approvals. For a tools/call the policy holds for approval, Decide binds the
// call ([approvals.Bind]: tool, canonical arguments, requester issuer and
// subject, agent) and tries to use up an approved request for that binding
// ([approvals.Service.Consume]): if one is there, the call is allowed, once,
// and the decision carries the approval's id into the audit trail. Otherwise
// it asks for one ([approvals.Service.Request], idempotent for identical
// calls) and returns NeedsApproval with the approval's id and URL. Of
// concurrent identical retries exactly one is allowed; a retry with other
// arguments binds differently and waits for its own approval. An approval is
// used up by the decision that allows the call: if the call then fails
// before reaching the upstream (no grant, audit unavailable), the approvers
// must approve a new request.
//
// Listing. For tools/list (Args nil) nothing is requested or used: tools
// needing approval are listed, and a condition that can't be evaluated
// without arguments (a missing args field) does not hide its tool.
type PolicyEngine struct {
	Engine    *policy.Engine
	Approvals *approvals.Service
}

// Decide implements [Policy].
func (p PolicyEngine) Decide(ctx context.Context, c Call) (Decision, error) {
	tool := policy.ToolInfoFrom(c.Tool, c.Upstream.Slug)
	tool.Scopes = c.EndpointScopes
	pr := policy.Principal{
		Issuer: c.Principal.Issuer, Subject: c.Principal.Subject, Email: c.Principal.Email,
		Groups: c.Principal.Groups, Scopes: c.Principal.Scopes, Agent: c.Principal.AgentClientID, Act: c.Principal.Act,
	}
	listing := c.Args == nil
	var args any
	if c.Tool.Condition != "" && !listing {
		// Arguments arrive with exact numbers (json.Number); conditions see
		// JSON numbers as int or double, as policy.NormalizeArgs makes them.
		raw, err := json.Marshal(c.Args)
		if err != nil {
			return Decision{}, fmt.Errorf("mcp: policy: arguments: %w", err)
		}
		args = json.RawMessage(raw)
	}
	pd, err := p.Engine.Decide(ctx, c.TenantID, pr, tool, args)
	if err != nil {
		return Decision{}, &RetryableError{Err: fmt.Errorf("mcp: policy: %w", err)}
	}
	d := Decision{Rule: pd.Rule, Reason: pd.Reason, Approvals: pd.ApprovalsRequired}
	switch pd.Effect {
	case policy.EffectAllow:
		d.Effect = Allow
		return d, nil
	case policy.EffectApproval:
		d.Effect = NeedsApproval
	default:
		d.Effect = Deny
		if listing && pd.Rule == policy.RuleCondition && pd.Err != nil {
			// The condition needs the call's arguments: decided at call time.
			d.Effect = Allow
		}
		return d, nil
	}
	if listing {
		return d, nil
	}
	if p.Approvals == nil {
		return d, nil
	}
	hash, _, err := approvals.Bind(c.Tool.Name, c.Args, c.Principal.Issuer, c.Principal.Subject, c.Principal.AgentClientID)
	if err != nil {
		return Decision{Effect: Deny, Rule: d.Rule, Reason: "the arguments can't be bound to an approval (they are not a JSON object)"}, nil
	}
	used, ok, err := p.Approvals.Consume(ctx, c.TenantID, hash)
	if err != nil {
		return Decision{}, &RetryableError{Err: fmt.Errorf("mcp: policy: %w", err)}
	}
	if ok {
		d.Effect, d.ApprovalID, d.ApprovalsGiven = Allow, used.ID, used.Approvals
		d.Reason = fmt.Sprintf("approved by %d approvers (approval %s)", used.Approvals, used.ID)
		return d, nil
	}
	req, _, err := p.Approvals.Request(ctx, c.TenantID, approvals.NewRequest{
		Tool: c.Tool.Name, Upstream: c.Upstream.Slug, Risk: c.Tool.Risk, Args: c.Args,
		Requester: approvals.Person{Issuer: c.Principal.Issuer, Subject: c.Principal.Subject, Email: c.Principal.Email},
		Agent:     c.Principal.AgentClientID, Act: c.Principal.Act,
		ApprovalsRequired: pd.ApprovalsRequired, Rule: pd.Rule, Reason: pd.Reason, RequestID: c.RequestID,
	})
	var te *tenants.Error
	switch {
	case errors.As(err, &te):
		return Decision{Effect: Deny, Rule: d.Rule, Reason: "the call can't be held for approval: " + te.PublicMessage()}, nil
	case err != nil:
		return Decision{}, &RetryableError{Err: fmt.Errorf("mcp: policy: %w", err)}
	}
	d.ApprovalID, d.ApprovalURL = req.ID, p.Approvals.URL(c.TenantSlug, req.ID)
	d.Approvals, d.ApprovalsGiven = req.ApprovalsRequired, req.Approvals
	return d, nil
}

// DurableAudit adapts the audit trail's group-committing writer to [Audit]:
// Intent and Outcome return once their event is committed. The id handed
// between them is the intent's sequence number in the tenant's trail.
type DurableAudit struct {
	Writer *audit.Writer
}

// Intent implements [Audit].
func (a DurableAudit) Intent(ctx context.Context, in Intent) (string, error) {
	seq, err := a.Writer.Intent(ctx, in.TenantID, audit.Call{
		RequestID: in.RequestID,
		User:      audit.User{Issuer: in.Issuer, Subject: in.Subject, Email: in.Email},
		Agent:     in.Agent, Act: in.Act,
		Tool: in.Tool, Upstream: in.Upstream, UpstreamName: in.UpstreamName,
		Method: in.Method, PathTemplate: in.PathTemplate,
		Scopes: in.TokenScopes, Narrowed: in.Narrowed,
		Decision: in.Decision.Effect.String(), Rule: in.Decision.Rule, Reason: in.Decision.Reason,
		ApprovalID: in.Decision.ApprovalID, RequestBody: in.RequestBody,
	})
	if err != nil {
		return "", &RetryableError{Err: err}
	}
	return strconv.FormatInt(seq, 10), nil
}

// Outcome implements [Audit].
func (a DurableAudit) Outcome(ctx context.Context, tenantID uuid.UUID, id string, out Outcome) error {
	seq, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return fmt.Errorf("mcp: audit outcome: bad intent id %q", id)
	}
	_, err = a.Writer.Outcome(ctx, tenantID, seq, audit.Outcome{Status: out.Status, Latency: out.Latency, Error: out.Error, ResponseBody: out.ResponseBody})
	return err
}
