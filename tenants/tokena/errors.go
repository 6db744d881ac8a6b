package tokena

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every refusal by [Verifier.Verify] is an [*Error] that
// wraps exactly one of them; test with errors.Is.
var (
	// ErrInvalidToken means the token was refused: the web layer answers 401
	// with WWW-Authenticate error="invalid_token".
	ErrInvalidToken = errors.New("tokena: invalid token")
	// ErrUnavailable means the token could not be checked because the
	// identity provider's signing keys could not be fetched and none were
	// cached. It is the server's problem, not the caller's: answer 503.
	ErrUnavailable = errors.New("tokena: signing keys unavailable")
)

// Reason is a short machine-readable word saying why a token was refused.
// It is stable: use it in metrics, audit records and tests.
type Reason string

// Reasons a token is refused, roughly in the order the checks run.
const (
	// ReasonMissing: no token was presented.
	ReasonMissing Reason = "missing"
	// ReasonTooLarge: the token, its header or its signature exceeds the
	// size limits, checked before any parsing.
	ReasonTooLarge Reason = "too_large"
	// ReasonMalformed: not three base64url segments, a header or claims
	// set that is not a strict JSON object, a claim of the wrong type, a
	// missing required claim, or an unacceptable kid.
	ReasonMalformed Reason = "malformed"
	// ReasonUnsupportedAlg: alg is not RS256, PS256, ES256 or EdDSA.
	ReasonUnsupportedAlg Reason = "unsupported_alg"
	// ReasonForbiddenHeader: the header carries jku, x5u, jwk, x5c or crit.
	ReasonForbiddenHeader Reason = "forbidden_header"
	// ReasonNotAccessToken: the token is typed or shaped like an ID token
	// (or another kind of JWT) rather than an access token.
	ReasonNotAccessToken Reason = "not_access_token"
	// ReasonUnknownKey: no published key of the right type has the token's
	// kid, even after the rate-limited JWKS refetch.
	ReasonUnknownKey Reason = "unknown_key"
	// ReasonBadSignature: the signature does not verify.
	ReasonBadSignature Reason = "bad_signature"
	// ReasonWrongIssuer: iss is not the registered issuer.
	ReasonWrongIssuer Reason = "wrong_issuer"
	// ReasonWrongAudience: aud is missing or does not contain the expected
	// audience.
	ReasonWrongAudience Reason = "wrong_audience"
	// ReasonExpired: exp has passed (beyond the skew). A missing exp is
	// ReasonMalformed.
	ReasonExpired Reason = "expired"
	// ReasonNotYetValid: nbf or iat lies in the future (beyond the skew).
	ReasonNotYetValid Reason = "not_yet_valid"
	// ReasonJWKSUnavailable: the JWKS could not be fetched and no keys are
	// cached. Wraps [ErrUnavailable], not [ErrInvalidToken].
	ReasonJWKSUnavailable Reason = "jwks_unavailable"
)

// Error is a refused token. Message is written for the person or agent
// that presented the token and is safe to show to anyone who can reach the
// endpoint: it never contains the token, key material, verifier internals
// or another tenant's data, only facts about the presented token and what
// this endpoint expects. Err, when set, is detail for logs and for the
// tenant's own admins (for example why the JWKS fetch failed).
type Error struct {
	// Reason is the machine-readable cause.
	Reason Reason
	// Message is the public, actionable explanation.
	Message string
	// Err is the underlying cause, for logs; may be nil.
	Err error
}

// Error returns the public message followed by the logged detail.
func (e *Error) Error() string {
	if e.Err != nil {
		return "tokena: " + e.Message + ": " + e.Err.Error()
	}
	return "tokena: " + e.Message
}

// Unwrap yields the sentinel ([ErrInvalidToken] or [ErrUnavailable]) and
// the cause.
func (e *Error) Unwrap() []error {
	kind := ErrInvalidToken
	if e.Reason == ReasonJWKSUnavailable {
		kind = ErrUnavailable
	}
	if e.Err == nil {
		return []error{kind}
	}
	return []error{kind, e.Err}
}

// PublicMessage is the text shown to the caller.
func (e *Error) PublicMessage() string { return e.Message }

func refuse(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Message: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the Reason of err if it is (or wraps) an [*Error], and
// "" otherwise.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// quote renders a caller-supplied value for a public message: quoted, and
// cut to a length that keeps messages short.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "…"
	}
	return fmt.Sprintf("%q", s)
}
