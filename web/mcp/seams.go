package mcp

import (
	"context"
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
	// Deny refuses the call; Reason says why.
	Deny Effect = iota
	// Allow lets the call proceed.
	Allow
	// NeedsApproval means the call may run once Approvals distinct approvers
	// have approved it. Until the approvals engine exists the endpoint
	// refuses such calls with the decision's Reason; the tool is still
	// listed (with destructiveHint).
	NeedsApproval
)

func (e Effect) String() string {
	switch e {
	case Allow:
		return "allow"
	case NeedsApproval:
		return "needs_approval"
	}
	return "deny"
}

// Decision is a policy verdict with the reason, which goes into the audit
// trail and, for refusals, into the agent's error (it names the rule, never
// another tenant's data).
type Decision struct {
	Effect    Effect
	Reason    string
	Approvals int
}

// Call is what a policy decides about. Args is nil when deciding whether to
// list the tool (tools/list); EndpointScopes are the scopes every request to
// this tenant's endpoint needs (the IdP registration's RequiredScopes).
type Call struct {
	TenantID       uuid.UUID
	Principal      tokena.Principal
	Tool           tenants.Tool
	Upstream       tenants.Upstream
	Args           map[string]any
	EndpointScopes []string
}

// Policy decides whether a principal may call a tool with given arguments.
// The policy issue's CEL engine, kill switches and approvals replace
// [DefaultPolicy] behind this interface.
type Policy interface {
	Decide(ctx context.Context, c Call) (Decision, error)
}

// Intent is what the audit trail records before an upstream is called.
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
	Upstream     string
	Method       string
	PathTemplate string
	Decision     Decision
}

// Outcome is what the audit trail records after the call. Result is one of
// ok, tool_error, denied, consent_required, upstream_error, error.
type Outcome struct {
	Result      string
	Status      int
	Latency     time.Duration
	Error       string
	TokenScopes []string
	Narrowed    bool
}

// Audit records every tool call: an intent committed before the upstream is
// called (an error from Intent stops the call) and the outcome after. The
// audit issue's durable, tamper-evident trail replaces [LogAudit] behind
// this interface.
type Audit interface {
	Intent(ctx context.Context, in Intent) (id string, err error)
	Outcome(ctx context.Context, id string, out Outcome) error
}
