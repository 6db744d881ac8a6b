package idp

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// authRequestLifetime bounds how long a login may take.
const authRequestLifetime = 10 * time.Minute

// storage is the in-memory op.Storage of the IdP. Users, clients and lifetimes are fixed at
// construction; the maps under mu hold the flow state.
type storage struct {
	logger               *slog.Logger
	keys                 *keyRing
	issuer               func() string
	loginURL             func(authRequestID string) string
	users                []User
	clients              map[string]Client
	accessTokenLifetime  time.Duration
	refreshTokenLifetime time.Duration

	mu            sync.Mutex
	authRequests  map[string]*authRequest
	codes         map[string]string // code -> auth request id
	tokens        map[string]*accessToken
	refreshTokens map[string]*refreshToken
}

var (
	_ op.Storage                   = (*storage)(nil)
	_ op.ClientCredentialsStorage  = (*storage)(nil)
	_ op.TokenExchangeStorage      = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest = (*storage)(nil)
)

func (s *storage) userBySubject(sub string) (User, bool) {
	for _, u := range s.users {
		if u.Subject == sub {
			return cloneUser(u), true
		}
	}
	return User{}, false
}

// userByName finds a user by subject or, failing that, by username.
func (s *storage) userByName(name string) (User, bool) {
	if u, ok := s.userBySubject(name); ok {
		return u, true
	}
	for _, u := range s.users {
		if u.Username == name {
			return cloneUser(u), true
		}
	}
	return User{}, false
}

// purgeLocked drops expired state. The caller holds mu.
func (s *storage) purgeLocked(now time.Time) {
	for id, a := range s.authRequests {
		if now.Sub(a.created) > authRequestLifetime {
			delete(s.authRequests, id)
		}
	}
	for code, id := range s.codes {
		if _, ok := s.authRequests[id]; !ok {
			delete(s.codes, code)
		}
	}
	for id, t := range s.tokens {
		if now.After(t.expiry) {
			delete(s.tokens, id)
		}
	}
	for id, t := range s.refreshTokens {
		if now.After(t.expiry) {
			delete(s.refreshTokens, id)
		}
	}
}

// CreateAuthRequest stores a validated authorization request with its resource parameters.
func (s *storage) CreateAuthRequest(ctx context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	if slices.Contains(req.Prompt, oidc.PromptNone) {
		return nil, oidc.ErrLoginRequired()
	}
	resources, err := resourcesFrom(ctx)
	if err != nil {
		return nil, err
	}
	a := &authRequest{
		id:           uuid.NewString(),
		created:      time.Now(),
		clientID:     req.ClientID,
		redirectURI:  req.RedirectURI,
		state:        req.State,
		nonce:        req.Nonce,
		scopes:       req.Scopes,
		resources:    resources,
		responseType: req.ResponseType,
		responseMode: req.ResponseMode,
	}
	if req.CodeChallenge != "" {
		a.codeChallenge = &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgeLocked(a.created)
	s.authRequests[a.id] = a
	return a, nil
}

// AuthRequestByID returns a stored authorization request.
func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.authRequests[id]
	if !ok {
		return nil, fmt.Errorf("idp: auth request %s: %w", id, ErrNotFound)
	}
	return a, nil
}

// AuthRequestByCode returns the authorization request an unused code was issued for.
func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("idp: code: %w", ErrNotFound)
	}
	return s.AuthRequestByID(ctx, id)
}

// SaveAuthCode records the code issued for an authorization request.
func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest removes a used authorization request and its code, so codes are single use.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authRequests, id)
	for code, rid := range s.codes {
		if rid == id {
			delete(s.codes, code)
		}
	}
	return nil
}

// completeLogin marks an authorization request as authenticated by user.
func (s *storage) completeLogin(id string, user User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.authRequests[id]
	if !ok || a.done {
		return fmt.Errorf("idp: login for auth request %s: %w", id, ErrNotFound)
	}
	a.subject, a.done, a.authTime = user.Subject, true, time.Now()
	return nil
}

func (s *storage) authRequestCopy(id string) (authRequest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.authRequests[id]
	if !ok {
		return authRequest{}, false
	}
	return *a, true
}

// CreateAccessToken issues an access token for any op token request.
func (s *storage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	t, err := s.issueAccessToken(ctx, req)
	if err != nil {
		return "", time.Time{}, err
	}
	return t.id, t.expiry, nil
}

// issueAccessToken builds, signs and stores the access token for req. The audience is the
// request's resources (RFC 8707), else the client id.
func (s *storage) issueAccessToken(ctx context.Context, req op.TokenRequest) (*accessToken, error) {
	requested, err := resourcesFrom(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	t := &accessToken{id: accessTokenPrefix + uuid.NewString(), typ: TypeAccessToken, issuedAt: now, expiry: now.Add(s.accessTokenLifetime)}
	switch r := req.(type) {
	case *authRequest:
		t.clientID, t.subject, t.scopes, t.authTime = r.clientID, r.subject, r.scopes, r.authTime
		t.audience, err = narrowResources(r.resources, requested)
	case *refreshTokenRequest:
		t.clientID, t.subject, t.scopes, t.authTime = r.rt.clientID, r.rt.subject, r.scopes, r.rt.authTime
		t.audience, err = narrowResources(r.rt.resources, requested)
	case *clientCredentialsRequest:
		t.clientID, t.subject, t.scopes, t.audience = r.clientID, r.clientID, r.scopes, r.resources
	case op.TokenExchangeRequest:
		t.clientID, t.subject, t.scopes, t.actor = r.GetClientID(), r.GetSubject(), r.GetScopes(), r.GetExchangeActor()
		for _, a := range append(slices.Clone(r.GetResourses()), r.GetAudience()...) {
			if !slices.Contains(t.audience, a) {
				t.audience = append(t.audience, a)
			}
		}
	default:
		return nil, oidc.ErrServerError().WithDescription("unsupported token request %T", req)
	}
	if err != nil {
		return nil, err
	}
	if len(t.audience) == 0 {
		t.audience = []string{t.clientID}
	}
	var user *User
	if u, ok := s.userBySubject(t.subject); ok {
		user = &u
	}
	issuer := op.IssuerFromContext(ctx)
	if issuer == "" {
		issuer = s.issuer()
	}
	t.signedJWT, err = signJWT(s.keys.current(), TypeAccessToken, accessTokenClaims(issuer, t, user))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgeLocked(now)
	s.tokens[t.id] = t
	return t, nil
}

func (s *storage) signedAccessToken(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[id]
	if !ok {
		return "", false
	}
	return t.signedJWT, true
}

func (s *storage) activeAccessToken(id string) (accessToken, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[id]
	if !ok || !t.active(time.Now()) {
		return accessToken{}, false
	}
	return *t, true
}

// CreateAccessAndRefreshTokens issues an access token and a new refresh token; with
// currentRefreshToken set it rotates that refresh token (it can't be used again).
func (s *storage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, currentRefreshToken string) (string, string, time.Time, error) {
	var grant refreshToken
	switch r := req.(type) {
	case *authRequest:
		resources := r.resources
		if len(resources) == 0 {
			var err error
			if resources, err = resourcesFrom(ctx); err != nil {
				return "", "", time.Time{}, err
			}
		}
		grant = refreshToken{clientID: r.clientID, subject: r.subject, scopes: r.scopes, resources: resources, authTime: r.authTime, amr: r.GetAMR()}
	case *refreshTokenRequest:
		grant = r.rt
	default:
		return "", "", time.Time{}, oidc.ErrInvalidRequest().WithDescription("refresh tokens are not issued for this grant")
	}
	t, err := s.issueAccessToken(ctx, req)
	if err != nil {
		return "", "", time.Time{}, err
	}
	grant.token = "rt_" + randomToken()
	grant.expiry = time.Now().Add(s.refreshTokenLifetime)
	s.mu.Lock()
	defer s.mu.Unlock()
	if currentRefreshToken != "" {
		// Single use: of two concurrent refreshes with the same token only one finds it.
		old, ok := s.refreshTokens[currentRefreshToken]
		delete(s.refreshTokens, currentRefreshToken)
		if !ok || time.Now().After(old.expiry) || old.clientID != grant.clientID {
			delete(s.tokens, t.id)
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token is invalid or was already used")
		}
	}
	s.refreshTokens[grant.token] = &grant
	return t.id, grant.token, t.expiry, nil
}

// TokenRequestByRefreshToken returns the grant behind an unexpired refresh token.
func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refreshTokens[token]
	if !ok || time.Now().After(rt.expiry) {
		return nil, fmt.Errorf("idp: refresh token: %w", ErrNotFound)
	}
	return &refreshTokenRequest{rt: *rt, scopes: slices.Clone(rt.scopes)}, nil
}

// TerminateSession drops the user's tokens for the client.
func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range s.tokens {
		if t.subject == userID && t.clientID == clientID {
			delete(s.tokens, id)
		}
	}
	for id, t := range s.refreshTokens {
		if t.subject == userID && t.clientID == clientID {
			delete(s.refreshTokens, id)
		}
	}
	return nil
}

// RevokeToken forgets an access token (by id) or a refresh token (by value). A revoked access
// token still verifies by signature, but no longer works for userinfo, introspection or
// token exchange.
func (s *storage) RevokeToken(_ context.Context, tokenOrID, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[tokenOrID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.tokens, tokenOrID)
		return nil
	}
	if t, ok := s.refreshTokens[tokenOrID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.refreshTokens, tokenOrID)
	}
	return nil
}

// GetRefreshTokenInfo returns the user and id of a refresh token.
func (s *storage) GetRefreshTokenInfo(_ context.Context, _ string, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refreshTokens[token]
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	return rt.subject, rt.token, nil
}

// SigningKey returns the current key; op signs ID tokens with it.
func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return s.keys.current(), nil }

// SignatureAlgorithms returns RS256, the only algorithm used.
func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

// KeySet returns the published (not retired) public keys.
func (s *storage) KeySet(context.Context) ([]op.Key, error) { return s.keys.public(), nil }

// GetClientByClientID returns a registered client.
func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, fmt.Errorf("idp: client %q: %w", id, ErrNotFound)
	}
	return &opClient{c: c, loginURL: s.loginURL}, nil
}

// AuthorizeClientIDSecret authenticates a confidential client. Public clients never pass.
func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.clients[id]
	if !ok || c.Secret == "" || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		return errors.New("idp: invalid client credentials")
	}
	return nil
}

// SetUserinfoFromScopes is deprecated by op; SetUserinfoFromRequest does the work.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills ID token claims: sub and groups for openid, email for email,
// names for profile.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	return s.setUserinfo(info, req.GetSubject(), scopes)
}

func (s *storage) setUserinfo(info *oidc.UserInfo, subject string, scopes []string) error {
	u, ok := s.userBySubject(subject)
	if !ok {
		return fmt.Errorf("idp: user %s: %w", subject, ErrUnknownUser)
	}
	info.Subject = u.Subject
	for _, scope := range scopes {
		switch scope {
		case oidc.ScopeOpenID:
			info.AppendClaims("groups", slices.Clone(u.Groups))
		case oidc.ScopeEmail:
			info.Email, info.EmailVerified = u.Email, true
		case oidc.ScopeProfile:
			info.PreferredUsername, info.Name = u.Username, u.Name
		}
	}
	return nil
}

// SetUserinfoFromToken serves the userinfo endpoint for an active access token.
func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, _, _ string) error {
	t, ok := s.activeAccessToken(tokenID)
	if !ok {
		return fmt.Errorf("idp: access token: %w", ErrNotFound)
	}
	return s.setUserinfo(info, t.subject, t.scopes)
}

// SetIntrospectionFromToken describes an active access token to an authenticated client.
func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, _, _ string) error {
	t, ok := s.activeAccessToken(tokenID)
	if !ok {
		return fmt.Errorf("idp: access token: %w", ErrNotFound)
	}
	if u, ok := s.userBySubject(t.subject); ok {
		resp.Email, resp.EmailVerified, resp.Username = u.Email, true, u.Username
	}
	resp.Subject, resp.ClientID, resp.Scope, resp.Audience = t.subject, t.clientID, t.scopes, t.audience
	resp.Expiration, resp.IssuedAt, resp.JWTID = oidc.FromTime(t.expiry), oidc.FromTime(t.issuedAt), t.id
	resp.Issuer, resp.TokenType = s.issuer(), oidc.BearerToken
	return nil
}

// GetPrivateClaimsFromScopes is unused: access tokens are built by issueAccessToken.
func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// GetKeyByIDAndClientID refuses: the JWT profile grant and private_key_jwt are not supported.
func (s *storage) GetKeyByIDAndClientID(_ context.Context, kid, clientID string) (*jose.JSONWebKey, error) {
	return nil, fmt.Errorf("idp: key %s of client %s: %w", kid, clientID, ErrNotFound)
}

// ValidateJWTProfileScopes refuses: the JWT profile grant is not supported.
func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, oidc.ErrUnauthorizedClient().WithDescription("jwt profile grant not supported")
}

// Health reports the in-memory storage as healthy.
func (s *storage) Health(context.Context) error { return nil }

// ClientCredentials authenticates a client for the client_credentials grant.
func (s *storage) ClientCredentials(ctx context.Context, id, secret string) (op.Client, error) {
	if err := s.AuthorizeClientIDSecret(ctx, id, secret); err != nil {
		return nil, err
	}
	return s.GetClientByClientID(ctx, id)
}

// ClientCredentialsTokenRequest makes the token request of a client_credentials grant; the
// audience is the resource parameters, else the client id.
func (s *storage) ClientCredentialsTokenRequest(ctx context.Context, id string, scopes []string) (op.TokenRequest, error) {
	resources, err := resourcesFrom(ctx)
	if err != nil {
		return nil, err
	}
	return &clientCredentialsRequest{clientID: id, scopes: scopes, resources: resources}, nil
}

// ValidateTokenExchangeRequest allows an exchange only for a client registered with
// GrantTokenExchange, with subject_token an active at+jwt access token of this IdP, and only
// to get an access token. Without a scope parameter the subject token's scopes carry over.
func (s *storage) ValidateTokenExchangeRequest(_ context.Context, req op.TokenExchangeRequest) error {
	c, ok := s.clients[req.GetClientID()]
	if !ok || !c.allows(GrantTokenExchange) {
		return oidc.ErrUnauthorizedClient().WithDescription("client is not allowed to exchange tokens")
	}
	if req.GetExchangeSubjectTokenType() != oidc.AccessTokenType {
		return oidc.ErrInvalidRequest().WithDescription("subject_token_type must be %s", oidc.AccessTokenType)
	}
	subject, ok := s.activeAccessToken(req.GetExchangeSubjectTokenIDOrToken())
	if !ok || subject.subject != req.GetExchangeSubject() {
		return oidc.ErrInvalidRequest().WithDescription("subject_token is invalid")
	}
	switch req.GetRequestedTokenType() {
	case "":
		req.SetRequestedTokenType(oidc.AccessTokenType)
	case oidc.AccessTokenType:
	default:
		return oidc.ErrInvalidRequest().WithDescription("requested_token_type must be %s", oidc.AccessTokenType)
	}
	if err := validateResources(req.GetResourses()); err != nil {
		return err
	}
	if len(req.GetScopes()) == 0 {
		req.SetCurrentScopes(slices.Clone(subject.scopes))
	}
	return nil
}

// CreateTokenExchangeRequest logs the accepted exchange.
func (s *storage) CreateTokenExchangeRequest(ctx context.Context, req op.TokenExchangeRequest) error {
	s.logger.InfoContext(ctx, "token exchange", "client_id", req.GetClientID(), "subject", req.GetSubject(), "resource", req.GetResourses(), "audience", req.GetAudience())
	return nil
}

// GetPrivateClaimsFromTokenExchangeRequest is unused: access tokens are built by
// issueAccessToken.
func (s *storage) GetPrivateClaimsFromTokenExchangeRequest(context.Context, op.TokenExchangeRequest) (map[string]any, error) {
	return nil, nil
}

// SetUserinfoFromTokenExchangeRequest fills an ID token issued by exchange (not offered).
func (s *storage) SetUserinfoFromTokenExchangeRequest(_ context.Context, info *oidc.UserInfo, req op.TokenExchangeRequest) error {
	return s.setUserinfo(info, req.GetSubject(), req.GetScopes())
}

func randomToken() string {
	return rand.Text()
}
