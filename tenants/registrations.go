package tenants

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// IdP is a tenant's identity provider registration. Token A is validated
// against it; end users sign in through it on consent and approval pages.
// The client secret is stored sealed and never returned: HasClientSecret
// says whether one is set.
type IdP struct {
	TenantID uuid.UUID
	ID       uuid.UUID
	// Issuer is the OIDC issuer URL (discovery at Issuer + /.well-known/openid-configuration).
	Issuer  string
	JWKSURI string
	// Audience Token A must carry; "" means the tenant's MCP resource URL.
	Audience string
	// Preset names the claim-mapping preset: generic, okta, entra, auth0, keycloak, google.
	Preset string
	Claims ClaimMapping
	// RequireATJWT refuses access tokens whose header typ is not at+jwt (RFC 9068).
	// When false, tokens with ID-token traits (nonce) are refused instead.
	RequireATJWT bool
	// RequiredScopes are the scopes every MCP request needs (challenged in 401/403).
	RequiredScopes  []string
	ClientID        string
	HasClientSecret bool
	CheckedAt       *time.Time
	CheckOK         *bool
	CheckMessage    string
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// ClaimMapping names the claims a Principal is built from. Scopes may be a
// space-separated string or an array under Scopes; Agent may be azp,
// client_id or act (the current actor's sub: the outermost act, RFC 8693 §4.1).
type ClaimMapping struct {
	Subject string
	Email   string
	Groups  string
	Scopes  string
	Agent   string
}

// Upstream kinds and auth modes.
const (
	UpstreamREST = "rest"
	UpstreamMCP  = "mcp"

	AuthOAuth2        = "oauth2"
	AuthTokenExchange = "token_exchange"
	AuthNone          = "none"

	ExchangeRFC8693  = "rfc8693"
	ExchangeEntraOBO = "entra_obo"
)

// Upstream is an API (REST, or a remote MCP server) that tools call on behalf
// of a user with Token B. The client secret is sealed and never returned.
type Upstream struct {
	TenantID uuid.UUID
	ID       uuid.UUID
	Slug     string
	Name     string
	// Kind is rest or mcp.
	Kind    string
	BaseURL string
	// AuthMode is oauth2 (per-user consent), token_exchange (at the tenant
	// IdP) or none.
	AuthMode        string
	Preset          string
	Issuer          string
	AuthorizeURL    string
	TokenURL        string
	RevocationURL   string
	ClientID        string
	HasClientSecret bool
	ScopesOffered   []string
	PKCE            bool
	// RefreshNarrows says a refresh may ask for a narrower scope.
	RefreshNarrows bool
	// RevokeAfterUse makes the tokens the broker mints for a call (a
	// narrowed refresh, a token exchange) single-use: not cached, and
	// revoked at RevocationURL (RFC 7009) right after that call. The
	// grant's own tokens are never revoked by it. Requires RevocationURL
	// and an auth mode other than none (see consent's package doc).
	RevokeAfterUse bool
	// Resource is the RFC 8707 resource indicator sent to the upstream's AS, if any.
	Resource         string
	ExchangeVariant  string
	ExchangeAudience string
	// ScopeParam is the authorization request parameter that carries the
	// scopes: "scope", or "user_scope" (Slack user tokens).
	ScopeParam string
	// AuthParams are extra authorization request parameters, e.g. Google's
	// access_type=offline or Atlassian's audience=api.atlassian.com.
	AuthParams map[string]string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Tool risks.
const (
	RiskRead        = "read"
	RiskWrite       = "write"
	RiskDestructive = "destructive"
)

// Tool is an operation agents can call: an upstream HTTP request built from
// the call's arguments, plus the scopes and policy that guard it.
type Tool struct {
	TenantID   uuid.UUID
	ID         uuid.UUID
	UpstreamID uuid.UUID
	// UpstreamSlug and UpstreamName are read from the upstream, for display.
	UpstreamSlug string
	UpstreamName string
	Name         string
	Title        string
	Description  string
	Method       string
	PathTemplate string
	// QueryParams and BodyParams name the arguments sent as query
	// parameters and JSON body fields; path arguments come from {params}.
	QueryParams    []string
	BodyParams     []string
	InputSchema    json.RawMessage
	RequiredScopes []string
	// Risk is read, write or destructive (destructive needs approvals).
	Risk    string
	Enabled bool
	// Condition is a CEL expression evaluated by the policy engine ("" = none).
	Condition string
	// ApprovalsRequired overrides the tenant default for destructive tools (nil = default).
	ApprovalsRequired *int
	LogBodies         bool
	CreatedAt         time.Time
	UpdatedAt         time.Time
}
