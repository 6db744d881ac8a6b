package consent

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
)

// OAuth URNs of token exchange (RFC 8693) and the JWT bearer grant (RFC 7523,
// used by Entra ID On-Behalf-Of).
const (
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	GrantTypeJWTBearer     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
)

// exchangeToken trades the user's Token A for a Token B at the tenant's IdP:
// RFC 8693 (subject_token = Token A, audience and resource from the
// upstream, scope = the requested scopes), or Entra ID On-Behalf-Of
// (jwt-bearer grant, assertion = Token A, requested_token_use =
// on_behalf_of). The result is cached, bound to that Token A, until shortly
// before it expires, unless the upstream revokes after use (then it serves
// this call alone). A refusal is an *OAuthError naming the IdP's error.
func (b *Broker) exchangeToken(ctx context.Context, up tenants.Upstream, key cacheKey, user User, req []string) (Token, error) {
	if user.RawTokenA == "" {
		return Token{}, tenants.Invalid("token", "token exchange needs the user's access token")
	}
	if b.exchange == nil {
		return Token{}, fmt.Errorf("consent: upstream %s uses token exchange, but no identity provider exchange client is configured", up.Slug)
	}
	ec, err := b.exchange.ExchangeClient(ctx, up.TenantID)
	if err != nil {
		return Token{}, fmt.Errorf("consent: token exchange for upstream %s: identity provider: %w", up.Slug, err)
	}
	if ec.TokenURL == "" || ec.ClientID == "" {
		return Token{}, fmt.Errorf("consent: token exchange for upstream %s: the identity provider has no token endpoint or client", up.Slug)
	}
	form := url.Values{}
	auth := clientAuth{id: ec.ClientID, secret: ec.ClientSecret}
	switch up.ExchangeVariant {
	case tenants.ExchangeEntraOBO:
		form.Set("grant_type", GrantTypeJWTBearer)
		form.Set("assertion", user.RawTokenA)
		form.Set("requested_token_use", "on_behalf_of")
		auth.post = true // Entra ID expects the secret in the body
	default:
		form.Set("grant_type", GrantTypeTokenExchange)
		form.Set("subject_token", user.RawTokenA)
		form.Set("subject_token_type", TokenTypeAccessToken)
		form.Set("requested_token_type", TokenTypeAccessToken)
		if up.ExchangeAudience != "" {
			form.Set("audience", up.ExchangeAudience)
		}
		if up.Resource != "" {
			form.Set("resource", up.Resource)
		}
	}
	if len(req) > 0 {
		form.Set("scope", strings.Join(req, " "))
	}
	now := b.now()
	gen := b.cache.gen.Load()
	rctx, cancel := context.WithTimeout(ctx, b.timeout)
	body, _, err := b.postForm(rctx, "token exchange", ec.TokenURL, auth, form)
	cancel()
	if err != nil {
		var re *RetryableError
		if errors.As(err, &re) {
			re.Uncertain = false // an exchange changes no state
		}
		return Token{}, err
	}
	if body.AccessToken == "" {
		return Token{}, &OAuthError{Op: "token exchange", Status: 200, Code: "invalid_response", Description: "the identity provider's answer has no access token"}
	}
	toks := body.tokens(now, req)
	tok := Token{Value: toks.AccessToken, Scopes: toks.Scopes, ExpiresAt: toks.ExpiresAt,
		Narrowed: len(req) > 0 && len(missingScopes(toks.Scopes, req)) == 0}
	return b.keep(ctx, up, key, req, tok, b.cache.hashTokenA(user.RawTokenA), now, gen)
}

// ExchangeCode redeems an authorization code at the upstream's token
// endpoint (the consent callback's step before Vault.SaveGrant), through
// the egress client with the upstream's client credentials, the PKCE
// verifier and, when the upstream has one, its RFC 8707 resource. requested
// are the scopes asked for, used when the response omits scope. Errors are
// an *OAuthError (e.g. invalid_grant for a replayed or tampered code) or a
// *RetryableError; the code is never logged.
func (b *Broker) ExchangeCode(ctx context.Context, tenantID, upstreamID uuid.UUID, code, redirectURI, codeVerifier string, requested []string) (Tokens, error) {
	if code == "" || redirectURI == "" {
		return Tokens{}, tenants.Invalid("code", "the authorization code and redirect URI are required")
	}
	up, err := b.upstream(ctx, tenantID, upstreamID)
	if err != nil {
		return Tokens{}, err
	}
	if up.AuthMode != tenants.AuthOAuth2 || up.TokenURL == "" {
		return Tokens{}, tenants.Invalid("upstream_id", "the upstream does not use per-user OAuth consent")
	}
	secret, err := b.upstreams.UpstreamClientSecret(ctx, tenantID, upstreamID)
	if err != nil {
		return Tokens{}, fmt.Errorf("consent: exchange code: client secret: %w", err)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}}
	if codeVerifier != "" {
		form.Set("code_verifier", codeVerifier)
	}
	if up.Resource != "" {
		form.Set("resource", up.Resource)
	}
	auth := clientAuth{id: up.ClientID, secret: secret, post: secret == ""}
	rctx, cancel := context.WithTimeout(ctx, b.timeout)
	body, _, err := b.postForm(rctx, "code exchange", up.TokenURL, auth, form)
	cancel()
	if err != nil {
		return Tokens{}, err
	}
	if body.AccessToken == "" {
		return Tokens{}, &OAuthError{Op: "code exchange", Status: 200, Code: "invalid_response", Description: "the upstream's answer has no access token"}
	}
	return body.tokens(b.now(), normScopes(requested)), nil
}
