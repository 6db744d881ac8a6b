package idp

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// JOSE typ header values.
const (
	// TypeAccessToken is the typ header of access tokens (RFC 9068 section 2.1).
	TypeAccessToken = "at+jwt"
	// TypeJWT is the typ header of ID tokens.
	TypeJWT = "JWT"
)

// accessTokenPrefix starts every access token id (jti) this IdP issues, so tokenCrypto can
// tell an access token id from an authorization request id.
const accessTokenPrefix = "at_"

// MintRequest describes a token made directly through [IdP.MintAccessToken] or
// [IdP.MintIDToken], bypassing every OAuth flow. It is for tests only.
type MintRequest struct {
	// User is the subject or username of a configured user. Empty mints a token for the
	// client itself (sub = ClientID, no email or groups), like client_credentials.
	User string
	// ClientID is the client_id claim (azp for ID tokens). Default [ClientMCPAgent].
	ClientID string
	// Audience is the aud claim. Default: ClientID.
	Audience []string
	// Scopes make the space-separated scope claim of an access token (omitted when empty).
	Scopes []string
	// Lifetime sets exp = now + Lifetime. Zero means Config.AccessTokenLifetime (one hour
	// for ID tokens); a negative value makes an already expired token.
	Lifetime time.Duration
	// Extra is merged over the standard claims last: a value replaces a claim, a nil value
	// removes it. time.Time values are written as Unix seconds.
	Extra map[string]any
	// Type is the JOSE typ header. Default [TypeAccessToken] for access tokens and [TypeJWT]
	// for ID tokens.
	Type string
	// OmitType leaves the typ header out entirely.
	OmitType bool
	// KeyID signs with this published key instead of the current one.
	KeyID string
}

// accessToken is the stored record of an issued or minted access token, keyed by its jti.
type accessToken struct {
	id        string
	typ       string
	clientID  string
	subject   string
	audience  []string
	scopes    []string
	issuedAt  time.Time
	expiry    time.Time
	authTime  time.Time
	actor     string
	signedJWT string
}

func (t *accessToken) active(now time.Time) bool {
	return t.typ == TypeAccessToken && now.Before(t.expiry)
}

// accessTokenClaims builds the RFC 9068 claim set of t. user is nil for client tokens.
func accessTokenClaims(issuer string, t *accessToken, user *User) map[string]any {
	claims := map[string]any{
		"iss":       issuer,
		"sub":       t.subject,
		"aud":       audienceClaim(t.audience),
		"exp":       t.expiry.Unix(),
		"iat":       t.issuedAt.Unix(),
		"jti":       t.id,
		"client_id": t.clientID,
	}
	if len(t.scopes) > 0 {
		claims["scope"] = strings.Join(t.scopes, " ")
	}
	if !t.authTime.IsZero() {
		claims["auth_time"] = t.authTime.Unix()
	}
	if t.actor != "" {
		claims["act"] = map[string]any{"sub": t.actor}
	}
	addUserClaims(claims, user)
	return claims
}

func addUserClaims(claims map[string]any, user *User) {
	if user == nil {
		return
	}
	claims["email"] = user.Email
	claims["email_verified"] = true
	claims["groups"] = append([]string{}, user.Groups...)
	claims["preferred_username"] = user.Username
	claims["name"] = user.Name
}

// audienceClaim writes a single audience as a string and several as an array, as most IdPs do.
func audienceClaim(aud []string) any {
	if len(aud) == 1 {
		return aud[0]
	}
	return append([]string{}, aud...)
}

// signJWT signs claims with key. An empty typ leaves the typ header out.
func signJWT(key *signingKey, typ string, claims map[string]any) (string, error) {
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.RS256,
		Key:       jose.JSONWebKey{Key: key.priv, KeyID: key.id},
	}, opts)
	if err != nil {
		return "", fmt.Errorf("idp: new signer: %w", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("idp: marshal claims: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("idp: sign: %w", err)
	}
	return jws.CompactSerialize()
}

// verifiedAccessToken is what tokenCrypto needs from a verified access token.
type verifiedAccessToken struct {
	Issuer  string `json:"iss"`
	Subject string `json:"sub"`
	ID      string `json:"jti"`
	Expiry  int64  `json:"exp"`
}

// verifyAccessToken checks an access token JWT: RS256, typ at+jwt, signed by a published
// key, this issuer, not expired, with sub and jti.
func (s *storage) verifyAccessToken(token string) (*verifiedAccessToken, error) {
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, fmt.Errorf("idp: parse access token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("idp: access token must have one signature")
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !isAccessTokenType(typ) {
		return nil, fmt.Errorf("idp: access token typ %q", typ)
	}
	key, ok := s.keys.find(h.KeyID)
	if !ok {
		return nil, fmt.Errorf("idp: access token signed by unknown key %q", h.KeyID)
	}
	payload, err := jws.Verify(&key.priv.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("idp: verify access token: %w", err)
	}
	var v verifiedAccessToken
	if err := json.Unmarshal(payload, &v); err != nil {
		return nil, fmt.Errorf("idp: access token claims: %w", err)
	}
	switch {
	case v.Issuer != s.issuer():
		return nil, fmt.Errorf("idp: access token issuer %q", v.Issuer)
	case time.Now().Unix() >= v.Expiry:
		return nil, errors.New("idp: access token expired")
	case v.Subject == "" || v.ID == "" || strings.Contains(v.Subject, ":"):
		return nil, errors.New("idp: access token without usable sub or jti")
	}
	return &v, nil
}

func isAccessTokenType(typ string) bool {
	return strings.EqualFold(typ, TypeAccessToken) || strings.EqualFold(typ, "application/"+TypeAccessToken)
}

// tokenCrypto is the op.Crypto of the provider. op turns a "Bearer" access token into
// Crypto.Encrypt(tokenID + ":" + subject); for our own token ids Encrypt returns the at+jwt
// JWT the storage signed in CreateAccessToken, and Decrypt verifies such a JWT and answers
// "jti:sub" so op's userinfo, introspection, revocation and token exchange can use it. Other
// values (authorization codes) go to an AES-256-GCM crypto.
type tokenCrypto struct {
	s        *storage
	fallback op.Crypto
}

func (c *tokenCrypto) Encrypt(v string) (string, error) {
	if id, _, ok := strings.Cut(v, ":"); ok && strings.HasPrefix(id, accessTokenPrefix) {
		if jwt, ok := c.s.signedAccessToken(id); ok {
			return jwt, nil
		}
		return "", fmt.Errorf("idp: access token %s not found", id)
	}
	return c.fallback.Encrypt(v)
}

func (c *tokenCrypto) Decrypt(v string) (string, error) {
	if strings.Count(v, ".") == 2 {
		t, err := c.s.verifyAccessToken(v)
		if err != nil {
			return "", err
		}
		return t.ID + ":" + t.Subject, nil
	}
	return c.fallback.Decrypt(v)
}

// mint builds and signs a token for MintAccessToken and MintIDToken.
func (s *storage) mint(req MintRequest, idToken bool) (string, error) {
	issuer := s.issuer()
	if issuer == "" {
		return "", fmt.Errorf("idp: mint: %w", ErrNotStarted)
	}
	if req.ClientID == "" {
		req.ClientID = ClientMCPAgent
	}
	var user *User
	subject := req.ClientID
	if req.User != "" {
		u, ok := s.userByName(req.User)
		if !ok {
			return "", fmt.Errorf("idp: mint: user %q: %w", req.User, ErrUnknownUser)
		}
		user, subject = &u, u.Subject
	}
	key := s.keys.current()
	if req.KeyID != "" {
		k, ok := s.keys.find(req.KeyID)
		if !ok {
			return "", fmt.Errorf("idp: mint: key %s: %w", req.KeyID, ErrUnknownKey)
		}
		key = k
	}
	lifetime := req.Lifetime
	if lifetime == 0 {
		lifetime = s.accessTokenLifetime
		if idToken {
			lifetime = time.Hour
		}
	}
	audience := req.Audience
	if len(audience) == 0 {
		audience = []string{req.ClientID}
	}
	now := time.Now()
	var claims map[string]any
	typ := req.Type
	if idToken {
		if typ == "" {
			typ = TypeJWT
		}
		claims = map[string]any{
			"iss":       issuer,
			"sub":       subject,
			"aud":       audienceClaim(audience),
			"azp":       req.ClientID,
			"exp":       now.Add(lifetime).Unix(),
			"iat":       now.Unix(),
			"auth_time": now.Unix(),
		}
		addUserClaims(claims, user)
	} else {
		if typ == "" {
			typ = TypeAccessToken
		}
		t := &accessToken{
			id: accessTokenPrefix + uuid.NewString(), clientID: req.ClientID, subject: subject,
			audience: audience, scopes: req.Scopes, issuedAt: now, expiry: now.Add(lifetime),
		}
		claims = accessTokenClaims(issuer, t, user)
	}
	for k, v := range req.Extra {
		switch v := v.(type) {
		case nil:
			delete(claims, k)
		case time.Time:
			claims[k] = v.Unix()
		default:
			claims[k] = v
		}
	}
	if req.OmitType {
		typ = ""
	}
	signed, err := signJWT(key, typ, claims)
	if err != nil {
		return "", err
	}
	if !idToken {
		s.recordMinted(typ, claims, signed)
	}
	return signed, nil
}

// recordMinted stores a minted access token, so that it can be used at the userinfo endpoint
// and as a token exchange subject_token exactly like an issued one.
func (s *storage) recordMinted(typ string, claims map[string]any, signed string) {
	id, _ := claims["jti"].(string)
	sub, _ := claims["sub"].(string)
	if id == "" || sub == "" {
		return
	}
	t := &accessToken{id: id, subject: sub, signedJWT: signed, expiry: unixClaim(claims["exp"]), issuedAt: unixClaim(claims["iat"])}
	if isAccessTokenType(typ) {
		t.typ = TypeAccessToken
	}
	t.clientID, _ = claims["client_id"].(string)
	if scope, ok := claims["scope"].(string); ok {
		t.scopes = strings.Fields(scope)
	}
	switch aud := claims["aud"].(type) {
	case string:
		t.audience = []string{aud}
	case []string:
		t.audience = aud
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[id] = t
}

func unixClaim(v any) time.Time {
	switch v := v.(type) {
	case int64:
		return time.Unix(v, 0)
	case int:
		return time.Unix(int64(v), 0)
	case float64:
		return time.Unix(int64(v), 0)
	case json.Number:
		n, err := v.Int64()
		if err == nil {
			return time.Unix(n, 0)
		}
	}
	return time.Time{}
}
