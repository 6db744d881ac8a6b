package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	lsql "github.com/locksmithhq/locksmith/sql"
)

// Flow states: one row per started IdP sign-in or upstream consent, named by
// the random state parameter (only its SHA-256 is stored), used at most
// once, for at most flowStateLifetime. See the migration 0007 for what each
// kind is bound to.

// flowStateLifetime is how long a started sign-in or consent can be finished.
const flowStateLifetime = 10 * time.Minute

// Flow state kinds.
const (
	flowSignIn  = "signin"
	flowConsent = "consent"
)

// flowState is a started sign-in or consent.
type flowState struct {
	Kind string
	// BindingHash binds a sign-in to the browser (hash of a cookie).
	BindingHash []byte
	// SessionID, Issuer and Subject bind a consent to the end-user session
	// that started it and to its user.
	SessionID  uuid.UUID
	Issuer     string
	Subject    string
	UpstreamID uuid.UUID
	Scopes     []string
	// CodeVerifier is the PKCE verifier (RFC 7636) of the flow.
	CodeVerifier string
	// Nonce is the OIDC nonce of a sign-in.
	Nonce    string
	ReturnTo string
	Agent    string
}

// Refusals of a state, shown to the user. None of them consumes or reveals
// anything.
var (
	errStateUnknown = &euError{status: http.StatusBadRequest, title: "This link doesn't work",
		msg: "This sign-in or connection step is unknown. Nothing was connected. Go back to your agent and start again."}
	errStateUsed = &euError{status: http.StatusBadRequest, title: "This link was already used",
		msg: "This step was already completed once and can't be used again. Nothing more was connected. If you need to connect again, go back to your agent and start again."}
	errStateExpired = &euError{status: http.StatusBadRequest, title: "This link expired",
		msg: "More than 10 minutes passed since you started. Nothing was connected. Go back to your agent and start again."}
)

// createFlowState stores st under a new random state value, prefixed with
// prefix (e.g. the tenant slug and a dot, for routing), and returns it.
func (s *Server) createFlowState(ctx context.Context, tenantID uuid.UUID, prefix string, st flowState) (string, error) {
	state := prefix + randomToken(32)
	var upstream *uuid.UUID
	if st.UpstreamID != uuid.Nil {
		upstream = &st.UpstreamID
	}
	var session *uuid.UUID
	if st.SessionID != uuid.Nil {
		session = &st.SessionID
	}
	err := s.cfg.Tenants.DB().InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		// Opportunistic clean-up of this tenant's stale states.
		if _, err := tx.Exec(ctx, "DELETE FROM enduser_states WHERE tenant_id = $1 AND expires_at < now() - interval '1 hour'", tenantID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO enduser_states (tenant_id, kind, state_hash, binding_hash, session_id, idp_issuer, subject,
				upstream_id, scopes, code_verifier, nonce, return_to, agent, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now() + make_interval(secs => $14))`,
			tenantID, st.Kind, tokenHash(state), st.BindingHash, session, st.Issuer, st.Subject, upstream, nonNil(st.Scopes),
			st.CodeVerifier, st.Nonce, st.ReturnTo, st.Agent, flowStateLifetime.Seconds())
		return err
	})
	if err != nil {
		return "", fmt.Errorf("web: create %s state: %w", st.Kind, lsql.Translate(err))
	}
	return state, nil
}

// consumeFlowState finds the state of kind, checks that it is unused and
// unexpired, lets check refuse it (a foreign browser or user: the state is
// then left unused, so a stranger can't burn it), and marks it used. Errors
// are errStateUnknown, errStateUsed, errStateExpired or check's.
func (s *Server) consumeFlowState(ctx context.Context, tenantID uuid.UUID, kind, state string, check func(flowState) error) (flowState, error) {
	if state == "" || len(state) > 200 {
		return flowState{}, errStateUnknown
	}
	var st flowState
	var refused error
	err := s.cfg.Tenants.DB().InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var id uuid.UUID
		var session, upstream *uuid.UUID
		var used, expired bool
		err := tx.QueryRow(ctx, `SELECT id, kind, binding_hash, session_id, idp_issuer, subject, upstream_id, scopes, code_verifier,
				nonce, return_to, agent, used_at IS NOT NULL, expires_at <= now()
			FROM enduser_states WHERE tenant_id = $1 AND state_hash = $2 FOR UPDATE`, tenantID, tokenHash(state)).
			Scan(&id, &st.Kind, &st.BindingHash, &session, &st.Issuer, &st.Subject, &upstream, &st.Scopes, &st.CodeVerifier,
				&st.Nonce, &st.ReturnTo, &st.Agent, &used, &expired)
		if errors.Is(err, pgx.ErrNoRows) {
			refused = errStateUnknown
			return nil
		}
		if err != nil {
			return err
		}
		if session != nil {
			st.SessionID = *session
		}
		if upstream != nil {
			st.UpstreamID = *upstream
		}
		switch {
		case st.Kind != kind:
			refused = errStateUnknown
		case used:
			refused = errStateUsed
		case expired:
			refused = errStateExpired
		default:
			refused = check(st)
		}
		if refused != nil {
			return nil
		}
		_, err = tx.Exec(ctx, "UPDATE enduser_states SET used_at = now() WHERE tenant_id = $1 AND id = $2", tenantID, id)
		return err
	})
	if err != nil {
		return flowState{}, fmt.Errorf("web: consume %s state: %w", kind, lsql.Translate(err))
	}
	if refused != nil {
		return flowState{}, refused
	}
	return st, nil
}
