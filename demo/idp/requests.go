package idp

import (
	"context"
	"log/slog"
	"net/url"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// authRequest is a stored authorization request. It implements op.AuthRequest. Its audience
// (used for the ID token) is the client id; the access token audience comes from resources.
type authRequest struct {
	id            string
	created       time.Time
	clientID      string
	redirectURI   string
	state         string
	nonce         string
	scopes        []string
	resources     []string
	responseType  oidc.ResponseType
	responseMode  oidc.ResponseMode
	codeChallenge *oidc.CodeChallenge

	subject  string
	done     bool
	authTime time.Time
}

var _ op.AuthRequest = (*authRequest)(nil)

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAudience() []string                 { return []string{a.clientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.codeChallenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

func (a *authRequest) GetAMR() []string {
	if a.done {
		return []string{"pwd"}
	}
	return nil
}

// LogValue keeps secrets (PKCE challenge, state, nonce) out of op's logs.
func (a *authRequest) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", a.id),
		slog.String("client_id", a.clientID),
		slog.String("redirect_uri", a.redirectURI),
		slog.Any("scopes", a.scopes),
	)
}

// refreshToken is a stored refresh token (the token value is its key). Refresh tokens rotate:
// each use deletes the old one.
type refreshToken struct {
	token     string
	clientID  string
	subject   string
	scopes    []string
	resources []string
	authTime  time.Time
	amr       []string
	expiry    time.Time
}

// refreshTokenRequest implements op.RefreshTokenRequest over a copy of a refreshToken; op may
// narrow its scopes with SetCurrentScopes.
type refreshTokenRequest struct {
	rt     refreshToken
	scopes []string
}

var _ op.RefreshTokenRequest = (*refreshTokenRequest)(nil)

func (r *refreshTokenRequest) GetAMR() []string            { return r.rt.amr }
func (r *refreshTokenRequest) GetAudience() []string       { return []string{r.rt.clientID} }
func (r *refreshTokenRequest) GetAuthTime() time.Time      { return r.rt.authTime }
func (r *refreshTokenRequest) GetClientID() string         { return r.rt.clientID }
func (r *refreshTokenRequest) GetScopes() []string         { return r.scopes }
func (r *refreshTokenRequest) GetSubject() string          { return r.rt.subject }
func (r *refreshTokenRequest) SetCurrentScopes(s []string) { r.scopes = s }

// clientCredentialsRequest implements op.TokenRequest for the client_credentials grant.
type clientCredentialsRequest struct {
	clientID  string
	scopes    []string
	resources []string
}

func (c *clientCredentialsRequest) GetSubject() string    { return c.clientID }
func (c *clientCredentialsRequest) GetAudience() []string { return c.resources }
func (c *clientCredentialsRequest) GetScopes() []string   { return c.scopes }

// resourcesKey carries the RFC 8707 resource parameters of the current request, captured by
// IdP.interceptResource because op's request types don't parse them.
type resourcesKey struct{}

// resourcesFrom returns the validated resource parameters of the current request.
func resourcesFrom(ctx context.Context) ([]string, error) {
	raw, _ := ctx.Value(resourcesKey{}).([]string)
	if err := validateResources(raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// validateResources enforces RFC 8707 section 2: absolute URIs without a fragment.
func validateResources(resources []string) error {
	for _, r := range resources {
		u, err := url.Parse(r)
		if err != nil || !u.IsAbs() || u.Fragment != "" || u.Host == "" && u.Opaque == "" {
			return oidc.ErrInvalidTarget().WithDescription("resource %q must be an absolute URI without a fragment", r)
		}
	}
	return nil
}

// narrowResources returns the audience for a token: requested (a token request's resource
// parameters) must be a subset of granted when both are given.
func narrowResources(granted, requested []string) ([]string, error) {
	if len(requested) == 0 {
		return granted, nil
	}
	if len(granted) == 0 {
		return requested, nil
	}
	for _, r := range requested {
		if !slices.Contains(granted, r) {
			return nil, oidc.ErrInvalidTarget().WithDescription("resource %q was not granted", r)
		}
	}
	return requested, nil
}
