package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/tokena"
)

// Registry is what the endpoint reads of the tenant domain: the tenant named
// in the URL and its registrations. *tenants.Service satisfies it (through
// [TenantsRegistry] while its registration queries are being built). Errors
// wrapping tenants.ErrNotFound mean "no such thing for this tenant".
type Registry interface {
	// TenantBySlug resolves the tenant of a URL.
	TenantBySlug(ctx context.Context, slug string) (tenants.Tenant, error)
	// IdP returns the tenant's identity provider registration.
	IdP(ctx context.Context, tenantID uuid.UUID) (tenants.IdP, error)
	// Catalog returns the tenant's upstreams and tools (enabled or not).
	Catalog(ctx context.Context, tenantID uuid.UUID) ([]tenants.Upstream, []tenants.Tool, error)
}

// Verifier checks a Token A against a tenant's IdP registration and the
// audience this endpoint expects, and maps its claims to a principal.
// (*tokena.Verifier).Verify has this shape. A refusal is an error carrying a
// public message (tokena.Error); tokena.ErrUnavailable means the IdP's keys
// could not be fetched.
type Verifier interface {
	Verify(ctx context.Context, reg tenants.IdP, audience, raw string) (tokena.Principal, error)
}

// User is the person a Token B is asked for: the verified principal of Token
// A. RawTokenA is there for token exchange at the tenant's IdP only; the
// broker never sends it to an upstream.
type User struct {
	Issuer    string
	Subject   string
	Email     string
	RawTokenA string
}

// UpstreamToken is a Token B: the user's access token for one upstream,
// narrowed to Scopes when the upstream allows it.
type UpstreamToken struct {
	Value     string
	Scopes    []string
	Narrowed  bool
	ExpiresAt time.Time
	// RevokeAfterUse says the token was minted for this call alone (the
	// upstream revokes after use): whoever asked for it passes it to
	// Broker.AfterUse once the upstream call is over, whatever its outcome.
	RevokeAfterUse bool
}

// String hides the token value from logs and fmt.
func (t UpstreamToken) String() string {
	return "UpstreamToken(scopes=" + strings.Join(t.Scopes, " ") + ")"
}

// Broker hands out Token B for (tenant, upstream, user, scopes). The consent
// package's broker satisfies it through an adapter. A missing grant, a grant
// that needs re-consent or missing scopes is a *ConsentRequiredError; an
// error for which IsRetryable reports true is temporary.
type Broker interface {
	Token(ctx context.Context, tenantID, upstreamID uuid.UUID, user User, scopes []string) (UpstreamToken, error)
	// AfterUse ends the use of a token from Token with the same tenant and
	// upstream: one with RevokeAfterUse is revoked at the upstream in the
	// background. It returns at once and never fails the call.
	AfterUse(ctx context.Context, tenantID, upstreamID uuid.UUID, tok UpstreamToken)
}

// ConsentRequiredError says the user must (re)grant access to an upstream
// before the call can proceed. ConsentURL is where they do it; it carries no
// PII or credential and only works for the user it was made for.
type ConsentRequiredError struct {
	ConsentURL    string
	Reason        string // no_grant, needs_reauth, missing_scopes
	MissingScopes []string
}

func (e *ConsentRequiredError) Error() string {
	return fmt.Sprintf("consent required (%s)", e.Reason)
}

// RetryableError marks a temporary failure (network, timeout, 5xx, rate
// limit) that the agent may retry. RetryAfter is zero when unknown.
type RetryableError struct {
	Err        error
	RetryAfter time.Duration
}

func (e *RetryableError) Error() string { return "temporary: " + e.Err.Error() }
func (e *RetryableError) Unwrap() error { return e.Err }

// IsRetryable reports whether err is temporary: a *RetryableError, a
// context deadline, or any error with a Temporary() or Retryable() method
// that reports true.
func IsRetryable(err error) bool {
	var re *RetryableError
	if errors.As(err, &re) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var t interface{ Temporary() bool }
	if errors.As(err, &t) && t.Temporary() {
		return true
	}
	var r interface{ Retryable() bool }
	return errors.As(err, &r) && r.Retryable()
}

// Effect is a policy decision's verdict.
type Effect int

// The effects a policy can decide.
const (
	// Deny refuses the call; Rule and Reason say why.
	Deny Effect = iota
	// Allow lets the call proceed (with ApprovalID set when a two-person
	// approval authorised it and was used up by this decision).
	Allow
	// NeedsApproval holds the call until Approvals distinct approvers have
	// approved it at ApprovalURL; the agent's retry with identical arguments
	// then runs it once. Listed tools (tools/list) may carry this effect.
	NeedsApproval
)

func (e Effect) String() string {
	switch e {
	case Allow:
		return "allow"
	case NeedsApproval:
		return "approval"
	}
	return "deny"
}

// Decision is a policy verdict with the rule that decided and a reason,
// which go into the audit trail and, for refusals, into the agent's error
// (they name the rule, never another tenant's data or a condition's text).
type Decision struct {
	Effect Effect
	// Rule names the rule that decided ("kill switch: agent", "scope",
	// "condition", "destructive tool", "default", …).
	Rule   string
	Reason string
	// Approvals is N for NeedsApproval (and for Allow through an approval).
	Approvals int
	// ApprovalID is the approval request holding the call (NeedsApproval)
	// or the one this call used up (Allow); uuid.Nil otherwise.
	ApprovalID uuid.UUID
	// ApprovalURL is where approvers vote on ApprovalID (NeedsApproval).
	ApprovalURL string
	// ApprovalsGiven counts the approvals ApprovalID has so far (NeedsApproval).
	ApprovalsGiven int
}

// Call is what a policy decides about. Args is nil when deciding whether to
// list the tool (tools/list) and never nil for a tools/call (an empty object
// is an empty map); EndpointScopes are the scopes every request to this
// tenant's endpoint needs (the IdP registration's RequiredScopes), already
// checked against Token A by the resource server. Tool.RequiredScopes are the
// upstream scopes the tool's Token B needs; Token A does not carry them.
type Call struct {
	TenantID       uuid.UUID
	TenantSlug     string
	RequestID      string
	Principal      tokena.Principal
	Tool           tenants.Tool
	Upstream       tenants.Upstream
	Args           map[string]any
	EndpointScopes []string
}

// Policy decides whether a principal may call a tool with given arguments.
// [PolicyEngine] (tenant rules, CEL conditions, two-person approvals) is the
// production implementation; [DefaultPolicy] is a stand-in for tests and
// for servers without a database.
type Policy interface {
	Decide(ctx context.Context, c Call) (Decision, error)
}

// Intent is what the audit trail records before an upstream is called (and,
// for refused or held calls, instead of calling it).
type Intent struct {
	TenantID     uuid.UUID
	RequestID    string
	Issuer       string
	Subject      string
	Email        string
	Agent        string
	Act          []string
	Tool         string
	UpstreamID   uuid.UUID
	Upstream     string // slug
	UpstreamName string
	Method       string
	PathTemplate string
	// TokenScopes are the scopes of the Token B the call will use and
	// Narrowed says whether they were narrowed below the grant's (both empty
	// for refused calls and for upstreams without a user credential).
	TokenScopes []string
	Narrowed    bool
	Decision    Decision
	// RequestBody is the call's arguments, redacted (audit.Redact), for
	// tools with LogBodies; nil otherwise.
	RequestBody json.RawMessage
}

// Outcome is what the audit trail records after the call. Result is one of
// ok, tool_error, consent_required, upstream_error, error.
type Outcome struct {
	Result      string
	Status      int
	Latency     time.Duration
	Error       string
	TokenScopes []string
	Narrowed    bool
	// ResponseBody is the upstream's answer, redacted (audit.Redact), for
	// tools with LogBodies; nil otherwise.
	ResponseBody json.RawMessage
}

// Audit records every tool call: an intent committed before the upstream is
// called (an error from Intent stops the call: no upstream call without a
// committed intent) and, for calls that were allowed, the outcome after.
// Refused and held calls are recorded by Intent alone. [DurableAudit] is the
// production implementation; [LogAudit] only logs.
type Audit interface {
	Intent(ctx context.Context, in Intent) (id string, err error)
	Outcome(ctx context.Context, tenantID uuid.UUID, id string, out Outcome) error
}
