package consent

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
)

// Sentinel errors. ErrNotFound, ErrConflict, ErrInvalid and ErrForbidden are
// the tenant domain's, so web maps them in one place.
var (
	// ErrNotFound means the grant (or revocation) does not exist for this
	// tenant; other tenants' objects are reported the same way.
	ErrNotFound = tenants.ErrNotFound
	// ErrConflict means a concurrent change won.
	ErrConflict = tenants.ErrConflict
	// ErrInvalid means the input was refused.
	ErrInvalid = tenants.ErrInvalid
	// ErrRevoked means the user revoked the grant. Token returns it inside a
	// *ConsentRequiredError (Reason ReasonRevoked): errors.Is matches both.
	ErrRevoked = errors.New("consent: the grant was revoked")
	// ErrLeaseLost means this instance's refresh lease was taken over while
	// it talked to the upstream: the rotated tokens were NOT written (the
	// compare-and-swap on version and lease owner failed). It is logged at
	// error level; the caller gets a retryable error.
	ErrLeaseLost = errors.New("consent: refresh lease lost before the rotated tokens were written")
	// ErrNotBrokered means the upstream's auth mode is "none": there is no
	// Token B to hand out.
	ErrNotBrokered = errors.New("consent: the upstream does not use per-user tokens")
)

// Reasons a consent is required (ConsentRequiredError.Reason).
const (
	// ReasonNoGrant: the user never connected the upstream.
	ReasonNoGrant = "no_grant"
	// ReasonNeedsReauth: the grant is dead (invalid_grant, lost refresh,
	// crash during a refresh); the user must connect again.
	ReasonNeedsReauth = "needs_reauth"
	// ReasonMissingScopes: the grant lacks some of the requested scopes.
	ReasonMissingScopes = "missing_scopes"
	// ReasonRevoked: the user revoked the grant.
	ReasonRevoked = "revoked"
)

// ConsentRequiredError means the user must (re)connect the upstream before
// the call can go on. The MCP endpoint turns it into a URL elicitation
// (-32042) carrying ConsentURL. Its message is safe to show.
type ConsentRequiredError struct {
	TenantID   uuid.UUID
	UpstreamID uuid.UUID
	// GrantID is the grant concerned, uuid.Nil for ReasonNoGrant.
	GrantID uuid.UUID
	// Reason is one of the Reason constants.
	Reason string
	// ConsentURL is where the user connects (or reconnects) the upstream.
	ConsentURL string
	// MissingScopes lists what the grant lacks (ReasonMissingScopes).
	MissingScopes []string
	// Detail is why a grant turned needs_reauth (e.g. "invalid_grant"); logged.
	Detail string
}

// Error says what the user must do.
func (e *ConsentRequiredError) Error() string {
	switch e.Reason {
	case ReasonMissingScopes:
		return "consent required: the connection lacks the scopes " + strings.Join(e.MissingScopes, " ")
	case ReasonNeedsReauth:
		return "consent required: the connection must be renewed"
	case ReasonRevoked:
		return "consent required: the connection was revoked"
	default:
		return "consent required: the upstream is not connected"
	}
}

// Is makes errors.Is(err, ErrRevoked) true for ReasonRevoked.
func (e *ConsentRequiredError) Is(target error) bool {
	return target == ErrRevoked && e.Reason == ReasonRevoked
}

// RetryableError means the upstream (or identity provider) could not be
// reached or answered 5xx/429, or a refresh is still settling: the grant is
// unchanged and the call may be retried, not before RetryAfter when set.
// It never marks a grant needs_reauth by itself.
type RetryableError struct {
	// Op is what failed: "refresh", "token exchange", "revocation", "wait",
	// or "revoke after use" (a single-use token could not be recorded for
	// revocation: a database error, not the upstream's).
	Op string
	// Status is the HTTP status, 0 for network errors and timeouts.
	Status int
	// Code is the OAuth error code, if the upstream sent one.
	Code string
	// RetryAfter is the upstream's Retry-After, or how long a lost refresh
	// blocks the grant; zero when unknown.
	RetryAfter time.Duration
	// Uncertain reports that the refresh request reached the upstream but its
	// answer was lost: the refresh token may have been consumed.
	Uncertain bool
	Err       error
}

// Error describes the failure without any token.
func (e *RetryableError) Error() string {
	var b strings.Builder
	what := "upstream temporarily unavailable"
	if e.Op == opHoldRevocation {
		what = "the token could not be recorded for revocation, so it was not handed out"
	}
	fmt.Fprintf(&b, "consent: %s: %s", e.Op, what)
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d", e.Status)
		if e.Code != "" {
			b.WriteString(" " + e.Code)
		}
		b.WriteString(")")
	}
	if e.Uncertain {
		b.WriteString(", response lost")
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, ", retry after %s", e.RetryAfter.Round(time.Second))
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *RetryableError) Unwrap() error { return e.Err }

// OAuthError is a definite refusal by an OAuth endpoint (4xx with an RFC 6749
// error code other than invalid_grant on refresh, which becomes a
// ConsentRequiredError), e.g. invalid_client, invalid_scope, or a token
// exchange the identity provider refused. Retrying won't help.
type OAuthError struct {
	// Op is "refresh", "token exchange" or "revocation".
	Op          string
	Status      int
	Code        string
	Description string
}

// Error reads like "consent: token exchange refused by the identity
// provider: invalid_request: subject_token is invalid".
func (e *OAuthError) Error() string {
	who := "the upstream"
	if e.Op == "token exchange" {
		who = "the identity provider"
	}
	msg := fmt.Sprintf("consent: %s refused by %s: %s", e.Op, who, e.Code)
	if e.Code == "" {
		msg = fmt.Sprintf("consent: %s refused by %s: HTTP %d", e.Op, who, e.Status)
	}
	if e.Description != "" {
		msg += ": " + e.Description
	}
	return msg
}
