package tasks

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

const maxFormBytes = 16 << 10

// parseOAuthForm parses a POST form body and rejects repeated parameters
// (RFC 6749 section 3.2), except those listed in multi.
func parseOAuthForm(w http.ResponseWriter, r *http.Request, multi ...string) (url.Values, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return nil, errInvalidRequest("malformed form body")
	}
	for k, v := range r.PostForm {
		if len(v) > 1 && !slices.Contains(multi, k) {
			return nil, errInvalidRequest("duplicate %s parameter", k)
		}
	}
	return r.PostForm, nil
}

// authenticateClient accepts exactly one of client_secret_basic and
// client_secret_post and compares secrets in constant time.
func (s *Server) authenticateClient(r *http.Request, form url.Values) (Client, error) {
	id, secret, basic := r.BasicAuth()
	if basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return Client{}, errInvalidClient("malformed basic credentials")
		}
		if form.Get("client_secret") != "" {
			return Client{}, errInvalidRequest("use one client authentication method")
		}
		if fid := form.Get("client_id"); fid != "" && fid != id {
			return Client{}, errInvalidRequest("client_id does not match credentials")
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if id == "" || secret == "" {
		return Client{}, errInvalidClient("client authentication required")
	}
	c, ok := s.clients[id]
	if !ok || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		return Client{}, errInvalidClient("client authentication failed")
	}
	return c, nil
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	s.mu.Lock()
	s.stats.TokenEndpointCalls++
	injected, failed := s.takeTokenFailureLocked()
	s.mu.Unlock()
	if failed {
		s.log.Info("token endpoint failure injected", "status", injected.status)
		s.writeError(w, r, injected)
		return
	}

	resp, fault, err := s.grant(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	switch fault {
	case dropResponse:
		s.log.Info("refresh response dropped by fault injection")
		abortResponse(w)
		return
	case hangResponse:
		s.log.Info("refresh response hung by fault injection")
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		abortResponse(w)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) grant(w http.ResponseWriter, r *http.Request) (TokenResponse, deliveryFault, error) {
	form, err := parseOAuthForm(w, r, "resource")
	if err != nil {
		return TokenResponse{}, deliver, err
	}
	client, err := s.authenticateClient(r, form)
	if err != nil {
		return TokenResponse{}, deliver, err
	}
	switch gt := form.Get("grant_type"); gt {
	case "authorization_code":
		resp, err := s.codeGrant(client, form)
		return resp, deliver, err
	case "refresh_token":
		return s.refreshGrant(client, form)
	case "":
		return TokenResponse{}, deliver, errInvalidRequest("grant_type is required")
	default:
		return TokenResponse{}, deliver, &oauthError{status: http.StatusBadRequest, code: "unsupported_grant_type", desc: "unsupported grant_type " + gt}
	}
}

func pkceMatches(verifier, challenge string) bool {
	if !pkceVerifierRE.MatchString(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

// checkResources validates RFC 8707 resource parameters of a token request
// against the resources of the authorization.
func checkResources(requested, granted []string) error {
	for _, res := range requested {
		if !slices.Contains(granted, res) {
			return &oauthError{status: http.StatusBadRequest, code: "invalid_target", desc: "resource was not authorized"}
		}
	}
	return nil
}

// codeGrant exchanges an authorization code. A code is single-use: a second
// exchange revokes the family the first one created (RFC 6749 section 4.1.2),
// and any failed exchange burns the code.
func (s *Server) codeGrant(client Client, form url.Values) (TokenResponse, error) {
	code, redirectURI, verifier := form.Get("code"), form.Get("redirect_uri"), form.Get("code_verifier")
	if code == "" || redirectURI == "" || verifier == "" {
		return TokenResponse{}, errInvalidRequest("code, redirect_uri and code_verifier are required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.codes[TokenHash(code)]
	switch {
	case !ok || !s.clock().Before(c.expiresAt):
		return TokenResponse{}, errInvalidGrant("authorization code is invalid or expired")
	case c.used:
		s.stats.CodeReplays++
		if c.family != nil {
			s.revokeFamilyLocked(c.family, ReasonCodeReplay)
		}
		return TokenResponse{}, errInvalidGrant("authorization code was already used")
	}
	c.used = true // burn on any failure below, too
	switch {
	case c.clientID != client.ID:
		return TokenResponse{}, errInvalidGrant("authorization code was issued to another client")
	case c.redirectURI != redirectURI:
		return TokenResponse{}, errInvalidGrant("redirect_uri does not match the authorization request")
	case !pkceMatches(verifier, c.challenge):
		return TokenResponse{}, errInvalidGrant("code_verifier does not match code_challenge")
	}
	if err := checkResources(form["resource"], c.resources); err != nil {
		return TokenResponse{}, err
	}
	if err := s.ensureCapacityLocked(2); err != nil {
		return TokenResponse{}, err
	}
	c.family = s.newFamilyLocked(c.subject, client.ID, c.scopes, c.resources)
	s.stats.AuthorizationCodeGrants++
	s.log.Info("tokens issued", "grant_type", "authorization_code", "client_id", client.ID, "subject", c.subject, "family_id", c.family.id)
	return s.issueLocked(c.family, c.scopes), nil
}

// refreshGrant rotates a refresh token strictly: the presented token is spent
// and a new one issued; presenting a spent token revokes its whole family.
func (s *Server) refreshGrant(client Client, form url.Values) (TokenResponse, deliveryFault, error) {
	raw := form.Get("refresh_token")
	if raw == "" {
		return TokenResponse{}, deliver, errInvalidRequest("refresh_token is required")
	}
	requested, err := parseScopes(form.Get("scope"))
	if err != nil {
		return TokenResponse{}, deliver, &oauthError{status: http.StatusBadRequest, code: "invalid_scope", desc: err.Error()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[TokenHash(raw)]
	if !ok || t.kind != kindRefresh || t.family.clientID != client.ID {
		return TokenResponse{}, deliver, errInvalidGrant("refresh token is invalid")
	}
	f := t.family
	if f.revoked || t.revoked {
		return TokenResponse{}, deliver, errInvalidGrant("refresh token was revoked")
	}
	if !t.rotatedAt.IsZero() {
		s.stats.RefreshReuseDetections++
		s.log.Warn("refresh token reuse detected", "client_id", client.ID, "subject", f.subject, "family_id", f.id)
		s.revokeFamilyLocked(f, ReasonRefreshReuse)
		return TokenResponse{}, deliver, errInvalidGrant("refresh token was already used; token family revoked")
	}
	now := s.clock()
	if !now.Before(t.expiresAt) {
		return TokenResponse{}, deliver, errInvalidGrant("refresh token expired")
	}
	if form.Get("scope") != "" && (len(requested) == 0 || !subset(requested, f.scopes)) {
		return TokenResponse{}, deliver, &oauthError{status: http.StatusBadRequest, code: "invalid_scope", desc: "requested scope exceeds the grant"}
	}
	if len(requested) == 0 {
		requested = f.scopes
	}
	if err := checkResources(form["resource"], f.resources); err != nil {
		return TokenResponse{}, deliver, err
	}
	if err := s.ensureCapacityLocked(2); err != nil {
		return TokenResponse{}, deliver, err
	}
	t.rotatedAt = now
	resp := s.issueLocked(f, requested)
	s.stats.RefreshGrants++
	s.log.Info("tokens issued", "grant_type", "refresh_token", "client_id", client.ID, "subject", f.subject, "family_id", f.id, "scope", strings.Join(requested, " "))
	return resp, s.takeRefreshFaultLocked(), nil
}

// handleRevoke implements RFC 7009. Revoking an access token revokes only it;
// revoking a refresh token revokes its whole family. Unknown tokens, and
// tokens of other clients, are answered 200 without effect.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) error {
	form, err := parseOAuthForm(w, r)
	if err != nil {
		return err
	}
	client, err := s.authenticateClient(r, form)
	if err != nil {
		return err
	}
	raw := form.Get("token")
	if raw == "" {
		return errInvalidRequest("token is required")
	}
	rev := Revocation{ClientID: client.ID, TokenHash: TokenHash(raw), TokenTypeHint: form.Get("token_type_hint"), Kind: KindUnknown}

	s.mu.Lock()
	rev.At = s.clock()
	if t, ok := s.tokens[rev.TokenHash]; ok && t.family.clientID == client.ID {
		rev.Kind = t.kind.String()
		rev.FamilyID = t.family.id
		switch {
		case t.family.revoked:
		case t.kind == kindRefresh:
			s.revokeFamilyLocked(t.family, ReasonRevocation)
			rev.Revoked = true
		case !t.revoked:
			t.revoked = true
			rev.Revoked = true
		}
	}
	s.stats.RevocationCalls++
	s.stats.Revocations = appendBounded(s.stats.Revocations, rev, s.maxRecords)
	s.mu.Unlock()

	s.log.Info("token revocation", "client_id", client.ID, "kind", rev.Kind, "family_id", rev.FamilyID, "revoked", rev.Revoked)
	w.WriteHeader(http.StatusOK)
	return nil
}

// appendBounded appends v, dropping the oldest elements beyond limit.
func appendBounded[T any](list []T, v T, limit int) []T {
	list = append(list, v)
	if over := len(list) - limit; over > 0 {
		list = slices.Delete(list, 0, over)
	}
	return list
}
