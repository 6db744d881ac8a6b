package tasks

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Token kinds reported by [TokenInfo], [Revocation] and [RecordedRequest].
const (
	// KindAccessToken marks an access token.
	KindAccessToken = "access_token"
	// KindRefreshToken marks a refresh token.
	KindRefreshToken = "refresh_token"
	// KindUnknown marks a token the server does not know (or that belongs to
	// another client).
	KindUnknown = "unknown"
)

// Reasons a token family was revoked, reported by TokenInfo.RevokedReason.
const (
	// ReasonRefreshReuse means an already rotated refresh token was presented.
	ReasonRefreshReuse = "refresh_token_reuse"
	// ReasonCodeReplay means the authorization code was exchanged twice.
	ReasonCodeReplay = "authorization_code_replay"
	// ReasonRevocation means a refresh token of the family was revoked (RFC 7009).
	ReasonRevocation = "revocation"
)

// TokenResponse is the RFC 6749 section 5.1 token response, as returned by the
// token endpoint and by [Server.IssueTokens].
type TokenResponse struct {
	// AccessToken is the opaque bearer token.
	AccessToken string `json:"access_token"`
	// TokenType is always "Bearer".
	TokenType string `json:"token_type"`
	// ExpiresIn is the access token lifetime in whole seconds (at least 1).
	ExpiresIn int64 `json:"expires_in"`
	// RefreshToken is the opaque refresh token of the same family.
	RefreshToken string `json:"refresh_token,omitempty"`
	// Scope is the space-separated scopes of the access token.
	Scope string `json:"scope"`
}

// TokenInfo describes a stored token, as seen by [Server.Inspect].
type TokenInfo struct {
	// Kind is KindAccessToken or KindRefreshToken.
	Kind string
	// Hash is [TokenHash] of the token.
	Hash string
	// Subject is the user name the token acts for.
	Subject string
	// ClientID is the client the token was issued to.
	ClientID string
	// Scopes are the token's scopes (for refresh tokens: the family's).
	Scopes []string
	// Resources are the RFC 8707 resource indicators of the authorization.
	Resources []string
	// FamilyID identifies the authorization the token descends from.
	FamilyID string
	// IssuedAt and ExpiresAt bound the token's life.
	IssuedAt, ExpiresAt time.Time
	// Rotated reports that a refresh token has been used; using it again is
	// reuse.
	Rotated bool
	// Revoked reports that the token or its family was revoked.
	Revoked bool
	// RevokedReason is one of the Reason constants when the family was
	// revoked, "token" when only this access token was.
	RevokedReason string
	// Active reports that the token would be accepted now: not revoked, not
	// expired, and for refresh tokens not rotated.
	Active bool
}

type tokenKind int

const (
	kindAccess tokenKind = iota + 1
	kindRefresh
)

func (k tokenKind) String() string {
	if k == kindRefresh {
		return KindRefreshToken
	}
	return KindAccessToken
}

type token struct {
	kind      tokenKind
	hash      string
	family    *family
	scopes    []string
	issuedAt  time.Time
	expiresAt time.Time
	rotatedAt time.Time // refresh tokens: when used; zero if unused
	revoked   bool      // this token alone (access tokens via RFC 7009)
}

type family struct {
	id        string
	subject   string
	clientID  string
	scopes    []string
	resources []string
	createdAt time.Time
	revoked   bool
	reason    string
	tokens    []*token
}

// TokenHash returns the lowercase hex SHA-256 of a token, the only form in
// which tokens are stored and recorded.
func TokenHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// newSecret returns prefix + 26 base32 characters (130 bits) from crypto/rand.
func newSecret(prefix string) string { return prefix + rand.Text() }

func (t *token) dead(now time.Time) (bool, string) {
	switch {
	case t.family.revoked:
		return true, "token revoked"
	case t.revoked:
		return true, "token revoked"
	case !now.Before(t.expiresAt):
		return true, "token expired"
	}
	return false, ""
}

func (s *Server) revokeFamilyLocked(f *family, reason string) {
	if f.revoked {
		return
	}
	f.revoked = true
	f.reason = reason
	s.stats.FamiliesRevoked++
	s.log.Warn("token family revoked", "family_id", f.id, "subject", f.subject, "client_id", f.clientID, "reason", reason)
}

// ensureCapacityLocked makes room for n more entries in the token, code and
// consent stores, sweeping expired entries when the bound is reached.
func (s *Server) ensureCapacityLocked(n int) error {
	if s.sizeLocked()+n <= s.maxTokens {
		return nil
	}
	s.sweepLocked()
	if s.sizeLocked()+n > s.maxTokens {
		return fmt.Errorf("tasks: store %d entries: %w", s.maxTokens, ErrCapacity)
	}
	return nil
}

func (s *Server) sizeLocked() int { return len(s.tokens) + len(s.codes) + len(s.pending) }

func (s *Server) sweepLocked() {
	now := s.clock()
	for h, t := range s.tokens {
		if !now.Before(t.expiresAt) {
			delete(s.tokens, h)
		}
	}
	for id, f := range s.families {
		f.tokens = slices.DeleteFunc(f.tokens, func(t *token) bool { return s.tokens[t.hash] != t })
		if len(f.tokens) == 0 {
			delete(s.families, id)
		}
	}
	for h, c := range s.codes {
		if !now.Before(c.expiresAt) {
			delete(s.codes, h)
		}
	}
	for id, p := range s.pending {
		if !now.Before(p.expiresAt) {
			delete(s.pending, id)
		}
	}
}

func (s *Server) newFamilyLocked(subject, clientID string, scopes, resources []string) *family {
	f := &family{
		id:        newSecret("fam_"),
		subject:   subject,
		clientID:  clientID,
		scopes:    slices.Clone(scopes),
		resources: slices.Clone(resources),
		createdAt: s.clock(),
	}
	s.families[f.id] = f
	return f
}

// issueLocked issues an access token with scopes and a refresh token with the
// family's scopes. The caller has reserved capacity for two tokens.
func (s *Server) issueLocked(f *family, scopes []string) TokenResponse {
	now := s.clock()
	at, rt := newSecret("acme_at_"), newSecret("acme_rt_")
	access := &token{kind: kindAccess, hash: TokenHash(at), family: f, scopes: slices.Clone(scopes), issuedAt: now, expiresAt: now.Add(s.accessLifetime)}
	refresh := &token{kind: kindRefresh, hash: TokenHash(rt), family: f, scopes: slices.Clone(f.scopes), issuedAt: now, expiresAt: now.Add(s.refreshLifetime)}
	s.tokens[access.hash] = access
	s.tokens[refresh.hash] = refresh
	f.tokens = append(f.tokens, access, refresh)
	return TokenResponse{
		AccessToken:  at,
		TokenType:    "Bearer",
		ExpiresIn:    expiresIn(s.accessLifetime),
		RefreshToken: rt,
		Scope:        strings.Join(scopes, " "),
	}
}

func expiresIn(d time.Duration) int64 {
	secs := int64((d + time.Second - 1) / time.Second)
	return max(secs, 1)
}

// parseScopes splits a space-separated scope string, rejecting unknown scopes,
// and returns the scopes deduplicated in canonical order.
func parseScopes(raw string) ([]string, error) {
	var out []string
	for _, sc := range strings.Fields(raw) {
		if !slices.Contains(SupportedScopes(), sc) {
			return nil, fmt.Errorf("%w: unknown scope %q", ErrInvalidScope, sc)
		}
	}
	for _, sc := range SupportedScopes() {
		if slices.Contains(strings.Fields(raw), sc) {
			out = append(out, sc)
		}
	}
	return out, nil
}

func subset(sub, of []string) bool {
	for _, s := range sub {
		if !slices.Contains(of, s) {
			return false
		}
	}
	return true
}

// IssueTokens creates a grant for user and clientID with scopes, as if the
// user had clicked Allow and the client had exchanged the code, and returns
// the token response. It is a Go-only test helper: it does not count as a
// token endpoint call. Errors wrap [ErrNotFound] (unknown user or client),
// [ErrInvalidScope] (empty or unknown scopes) or [ErrCapacity].
func (s *Server) IssueTokens(user, clientID string, scopes []string) (TokenResponse, error) {
	if _, ok := s.userByName[user]; !ok {
		return TokenResponse{}, fmt.Errorf("tasks: issue tokens: user %q: %w", user, ErrNotFound)
	}
	if _, ok := s.clients[clientID]; !ok {
		return TokenResponse{}, fmt.Errorf("tasks: issue tokens: client %q: %w", clientID, ErrNotFound)
	}
	sc, err := parseScopes(strings.Join(scopes, " "))
	if err != nil {
		return TokenResponse{}, fmt.Errorf("tasks: issue tokens: %w", err)
	}
	if len(sc) == 0 {
		return TokenResponse{}, fmt.Errorf("tasks: issue tokens: no scopes: %w", ErrInvalidScope)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureCapacityLocked(2); err != nil {
		return TokenResponse{}, fmt.Errorf("tasks: issue tokens: %w", err)
	}
	f := s.newFamilyLocked(user, clientID, sc, nil)
	return s.issueLocked(f, sc), nil
}

// ExpireAccessTokens makes every access token issued so far expire now, so
// clients must take their refresh path. Refresh tokens are unaffected.
func (s *Server) ExpireAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	for _, t := range s.tokens {
		if t.kind == kindAccess && now.Before(t.expiresAt) {
			t.expiresAt = now
		}
	}
}

// SetAccessTokenLifetime changes the lifetime of access tokens issued from
// now on; d <= 0 restores DefaultAccessTokenLifetime.
func (s *Server) SetAccessTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accessLifetime = orDuration(max(d, 0), DefaultAccessTokenLifetime)
}

// SetRefreshTokenLifetime changes the lifetime of refresh tokens issued from
// now on; d <= 0 restores DefaultRefreshTokenLifetime.
func (s *Server) SetRefreshTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshLifetime = orDuration(max(d, 0), DefaultRefreshTokenLifetime)
}

// Inspect describes a token (access or refresh, raw form). It returns an
// error wrapping [ErrNotFound] for tokens never issued or already swept.
func (s *Server) Inspect(tok string) (TokenInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[TokenHash(tok)]
	if !ok {
		return TokenInfo{}, fmt.Errorf("tasks: inspect token: %w", ErrNotFound)
	}
	now := s.clock()
	dead, _ := t.dead(now)
	info := TokenInfo{
		Kind:      t.kind.String(),
		Hash:      t.hash,
		Subject:   t.family.subject,
		ClientID:  t.family.clientID,
		Scopes:    slices.Clone(t.scopes),
		Resources: slices.Clone(t.family.resources),
		FamilyID:  t.family.id,
		IssuedAt:  t.issuedAt,
		ExpiresAt: t.expiresAt,
		Rotated:   !t.rotatedAt.IsZero(),
		Revoked:   t.revoked || t.family.revoked,
	}
	switch {
	case t.family.revoked:
		info.RevokedReason = t.family.reason
	case t.revoked:
		info.RevokedReason = "token"
	}
	info.Active = !dead && !info.Rotated
	return info, nil
}

// FamilyRevoked reports whether the family of tok (an access or refresh token)
// has been revoked, by reuse detection, code replay or RFC 7009 revocation.
// Unknown tokens report false.
func (s *Server) FamilyRevoked(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[TokenHash(tok)]
	return ok && t.family.revoked
}
