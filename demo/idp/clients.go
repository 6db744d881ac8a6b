package idp

import (
	"fmt"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Client ids of the default clients (see [DefaultClients]).
const (
	// ClientMCPAgent is a public client (no secret, PKCE required) standing for an MCP agent.
	// It may use any loopback redirect URI on any port (RFC 8252) and http://localhost/*.
	ClientMCPAgent = "mcp-agent"
	// ClientLocksmith is the confidential client Locksmith uses to sign end users in on its
	// consent and approval pages. It may also do RFC 8693 token exchange.
	ClientLocksmith = "locksmith"
	// ClientServiceAgent is a confidential client that gets tokens for itself with the
	// client_credentials grant.
	ClientServiceAgent = "service-agent"
)

// Default client secrets. They are for local development and tests only.
const (
	// DefaultLocksmithSecret is the secret of [ClientLocksmith] when Config.Clients is nil.
	DefaultLocksmithSecret = "locksmith-dev-secret"
	// DefaultServiceAgentSecret is the secret of [ClientServiceAgent].
	DefaultServiceAgentSecret = "service-agent-dev-secret"
)

// Grant types a [Client] may be allowed.
const (
	// GrantAuthorizationCode is the authorization code grant (with PKCE for public clients).
	GrantAuthorizationCode = string(oidc.GrantTypeCode)
	// GrantRefreshToken is the refresh token grant; refresh tokens are issued when the
	// authorization request asks for offline_access.
	GrantRefreshToken = string(oidc.GrantTypeRefreshToken)
	// GrantClientCredentials is the client_credentials grant (confidential clients only).
	GrantClientCredentials = string(oidc.GrantTypeClientCredentials)
	// GrantTokenExchange is the RFC 8693 token exchange grant (confidential clients only).
	GrantTokenExchange = string(oidc.GrantTypeTokenExchange)
)

// Client is an OAuth client registered at the demo IdP.
type Client struct {
	// ID is the client_id. Required and unique.
	ID string
	// Secret is the client secret of a confidential client (client_secret_basic or
	// client_secret_post). Empty means a public client: no client authentication, PKCE
	// required, and it may not use client_credentials or token exchange.
	Secret string
	// RedirectURIs are exact redirect URIs. For a public client, a loopback http URI also
	// matches on any port (RFC 8252 section 7.3).
	RedirectURIs []string
	// RedirectURIGlobs are github.com/bmatcuk/doublestar patterns matched against the whole
	// redirect URI, e.g. [LoopbackRedirectGlobs].
	RedirectURIGlobs []string
	// GrantTypes are the allowed grants, from the Grant* constants.
	GrantTypes []string
}

// LoopbackRedirectGlobs returns redirect URI patterns that match any path on http://127.0.0.1
// and http://localhost, with or without a numeric port. Ports are matched as 1 to 5 digits
// only, so a pattern can't be satisfied by a userinfo trick such as
// http://localhost:1@evil.example/.
func LoopbackRedirectGlobs() []string {
	const port = "{[0-9],[0-9][0-9],[0-9][0-9][0-9],[0-9][0-9][0-9][0-9],[0-9][0-9][0-9][0-9][0-9]}"
	var globs []string
	for _, host := range []string{"127.0.0.1", "localhost"} {
		globs = append(globs, "http://"+host+"/**", "http://"+host+":"+port+"/**")
	}
	return globs
}

// DefaultClients returns the default registrations: [ClientMCPAgent] (public, authorization
// code + refresh token), [ClientLocksmith] (confidential with locksmithSecret, authorization
// code + refresh token + token exchange) and [ClientServiceAgent] (confidential with
// [DefaultServiceAgentSecret], client_credentials). The two clients with redirects accept
// [LoopbackRedirectGlobs].
func DefaultClients(locksmithSecret string) []Client {
	return []Client{
		{
			ID:               ClientMCPAgent,
			RedirectURIs:     []string{"http://127.0.0.1/callback", "http://localhost/callback"},
			RedirectURIGlobs: LoopbackRedirectGlobs(),
			GrantTypes:       []string{GrantAuthorizationCode, GrantRefreshToken},
		},
		{
			ID:               ClientLocksmith,
			Secret:           locksmithSecret,
			RedirectURIGlobs: LoopbackRedirectGlobs(),
			GrantTypes:       []string{GrantAuthorizationCode, GrantRefreshToken, GrantTokenExchange},
		},
		{
			ID:         ClientServiceAgent,
			Secret:     DefaultServiceAgentSecret,
			GrantTypes: []string{GrantClientCredentials},
		},
	}
}

func validateClient(c Client) error {
	if c.ID == "" {
		return fmt.Errorf("client without id: %w", ErrInvalidConfig)
	}
	for _, g := range c.GrantTypes {
		switch g {
		case GrantAuthorizationCode, GrantRefreshToken:
		case GrantClientCredentials, GrantTokenExchange:
			if c.Secret == "" {
				return fmt.Errorf("public client %s may not use %s: %w", c.ID, g, ErrInvalidConfig)
			}
		default:
			return fmt.Errorf("client %s: unknown grant type %q: %w", c.ID, g, ErrInvalidConfig)
		}
	}
	return nil
}

func (c Client) allows(grant string) bool { return slices.Contains(c.GrantTypes, grant) }

// opClient adapts a Client to op.Client and op.HasRedirectGlobs.
type opClient struct {
	c        Client
	loginURL func(authRequestID string) string
}

var _ op.HasRedirectGlobs = (*opClient)(nil)

func (o *opClient) GetID() string                    { return o.c.ID }
func (o *opClient) RedirectURIs() []string           { return o.c.RedirectURIs }
func (o *opClient) RedirectURIGlobs() []string       { return o.c.RedirectURIGlobs }
func (o *opClient) PostLogoutRedirectURIs() []string { return o.c.RedirectURIs }
func (o *opClient) PostLogoutRedirectURIGlobs() []string {
	return o.c.RedirectURIGlobs
}
func (o *opClient) LoginURL(id string) string { return o.loginURL(id) }

func (o *opClient) ApplicationType() op.ApplicationType {
	if o.c.Secret == "" {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}

func (o *opClient) AuthMethod() oidc.AuthMethod {
	if o.c.Secret == "" {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic
}

func (o *opClient) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}

func (o *opClient) GrantTypes() []oidc.GrantType {
	out := make([]oidc.GrantType, 0, len(o.c.GrantTypes))
	for _, g := range o.c.GrantTypes {
		out = append(out, oidc.GrantType(g))
	}
	return out
}

// AccessTokenType is Bearer so that op hands the token to our Crypto, which returns the
// at+jwt JWT built by the storage (see doc.go).
func (o *opClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeBearer }
func (o *opClient) IDTokenLifetime() time.Duration      { return time.Hour }
func (o *opClient) DevMode() bool                       { return false }
func (o *opClient) IsScopeAllowed(string) bool          { return true }
func (o *opClient) IDTokenUserinfoClaimsAssertion() bool {
	return true
}
func (o *opClient) ClockSkew() time.Duration { return 0 }

func (o *opClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (o *opClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
