package tasks

import (
	"net/http"
	"slices"
	"time"
)

// Stats are counters for tests, returned by [Server.Stats]. They are not
// reset by [Server.ResetRecords].
type Stats struct {
	// TokenEndpointCalls counts every POST /token, including failed and
	// fault-injected ones.
	TokenEndpointCalls int
	// AuthorizationCodeGrants counts successful code exchanges.
	AuthorizationCodeGrants int
	// RefreshGrants counts refresh grants served (rotation committed),
	// including those whose response was then dropped or hung.
	RefreshGrants int
	// RefreshReuseDetections counts presentations of an already rotated
	// refresh token.
	RefreshReuseDetections int
	// CodeReplays counts second exchanges of an authorization code.
	CodeReplays int
	// FamiliesRevoked counts token families revoked for any reason.
	FamiliesRevoked int
	// RevocationCalls counts authenticated POST /revoke requests.
	RevocationCalls int
	// Revocations lists what each revocation call presented, oldest first
	// (bounded by Config.MaxRecords).
	Revocations []Revocation
	// InjectedFailures counts token requests failed by FailTokenEndpoint.
	InjectedFailures int
	// DroppedResponses counts refresh responses dropped by
	// DropNextRefreshResponses.
	DroppedResponses int
	// HungResponses counts refresh responses held by
	// HangNextRefreshResponses.
	HungResponses int
}

// Revocation records one RFC 7009 revocation call.
type Revocation struct {
	// At is when the call was served.
	At time.Time
	// ClientID is the authenticated client.
	ClientID string
	// TokenHash is [TokenHash] of the presented token.
	TokenHash string
	// TokenTypeHint is the token_type_hint parameter, possibly empty.
	TokenTypeHint string
	// Kind is KindAccessToken, KindRefreshToken or KindUnknown (never
	// issued, swept, or issued to another client).
	Kind string
	// FamilyID is the family of the token, empty for KindUnknown.
	FamilyID string
	// Revoked reports whether this call revoked something not already
	// revoked.
	Revoked bool
}

type faults struct {
	failStatus     int
	failN          int
	failRetryAfter time.Duration
	dropN          int
	hangN          int
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Revocations = slices.Clone(s.stats.Revocations)
	return st
}

// DropNextRefreshResponses makes the next n successful refresh grants commit
// the rotation server-side (the presented refresh token is spent, new tokens
// exist) and then close the connection without a response, as a network
// failure after the upstream committed would. n <= 0 cancels.
func (s *Server) DropNextRefreshResponses(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.dropN = max(n, 0)
}

// HangNextRefreshResponses is like [Server.DropNextRefreshResponses] but holds
// the response open, sending nothing, until the client gives up or
// [Server.Close] is called. n <= 0 cancels.
func (s *Server) HangNextRefreshResponses(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.hangN = max(n, 0)
}

// FailTokenEndpoint makes the next n token endpoint calls fail with HTTP
// status before any processing (nothing is rotated), with body error
// "temporarily_unavailable" for 429 and 503 and "server_error" otherwise.
// retryAfter > 0 adds a Retry-After header in whole seconds. n <= 0 cancels.
func (s *Server) FailTokenEndpoint(status, n int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.failStatus = status
	s.faults.failN = max(n, 0)
	s.faults.failRetryAfter = retryAfter
}

// takeTokenFailureLocked consumes one injected token endpoint failure.
func (s *Server) takeTokenFailureLocked() (*oauthError, bool) {
	if s.faults.failN == 0 {
		return nil, false
	}
	s.faults.failN--
	s.stats.InjectedFailures++
	code := "server_error"
	if s.faults.failStatus == http.StatusServiceUnavailable || s.faults.failStatus == http.StatusTooManyRequests {
		code = "temporarily_unavailable"
	}
	e := &oauthError{status: s.faults.failStatus, code: code, desc: "injected failure"}
	if s.faults.failRetryAfter > 0 {
		e.retryAfter = expiresIn(s.faults.failRetryAfter)
	}
	return e, true
}

type deliveryFault int

const (
	deliver deliveryFault = iota
	dropResponse
	hangResponse
)

// takeRefreshFaultLocked consumes one drop or hang fault, drop first.
func (s *Server) takeRefreshFaultLocked() deliveryFault {
	switch {
	case s.faults.dropN > 0:
		s.faults.dropN--
		s.stats.DroppedResponses++
		return dropResponse
	case s.faults.hangN > 0:
		s.faults.hangN--
		s.stats.HungResponses++
		return hangResponse
	}
	return deliver
}

// abortResponse closes the connection without writing a response.
func abortResponse(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
