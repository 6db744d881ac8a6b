package tokena

import (
	"slices"
	"time"
)

// Principal is who a verified Token A speaks for: the user (Subject), the
// agent acting for them (AgentClientID, Act) and what they may do (Scopes,
// Groups). It is built from the token's claims by the registration's
// [tenants.ClaimMapping].
type Principal struct {
	// Issuer is the token's iss, equal to the registration's issuer.
	Issuer string
	// Subject is the user (or, for client-only tokens, the client) the
	// token names, from the mapped subject claim. Never empty.
	Subject string
	// Email is the mapped email claim, "" when absent. It is whatever the
	// IdP put there and is not necessarily verified.
	Email string
	// Groups are the mapped groups or roles, in token order.
	Groups []string
	// Scopes are the granted scopes, in token order.
	Scopes []string
	// AgentClientID is the agent: the mapped client claim (client_id, azp,
	// cid, …) or, when the mapping says act, the current actor's sub.
	AgentClientID string
	// Act is the delegation chain from nested act claims (RFC 8693 section
	// 4.1), outermost (the current actor) first; nil without act.
	Act []string
	// ExpiresAt is the token's exp.
	ExpiresAt time.Time
	// TokenID is the jti, "" when absent.
	TokenID string
}

// HasScopes reports whether every required scope was granted (exact,
// case-sensitive match). No required scopes is always true.
func (p Principal) HasScopes(required ...string) bool {
	for _, s := range required {
		if !slices.Contains(p.Scopes, s) {
			return false
		}
	}
	return true
}

// MissingScopes returns the required scopes that were not granted, in the
// order given, for an insufficient_scope challenge; nil when none.
func (p Principal) MissingScopes(required ...string) []string {
	var missing []string
	for _, s := range required {
		if !slices.Contains(p.Scopes, s) {
			missing = append(missing, s)
		}
	}
	return missing
}

// InGroup reports whether the principal is in group g (exact match).
func (p Principal) InGroup(g string) bool { return slices.Contains(p.Groups, g) }

// clone returns p with its slices copied into one fresh backing array, so
// that callers can't modify a cached Principal. Each slice is capped, so an
// append by the caller reallocates instead of spilling into the next one.
func (p Principal) clone() Principal {
	n := len(p.Groups) + len(p.Scopes) + len(p.Act)
	if n == 0 {
		return p
	}
	buf := make([]string, 0, n)
	buf = append(buf, p.Groups...)
	buf = append(buf, p.Scopes...)
	buf = append(buf, p.Act...)
	g, s := len(p.Groups), len(p.Groups)+len(p.Scopes)
	p.Groups = nilIfEmpty(buf[:g:g])
	p.Scopes = nilIfEmpty(buf[g:s:s])
	p.Act = nilIfEmpty(buf[s:n:n])
	return p
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}
