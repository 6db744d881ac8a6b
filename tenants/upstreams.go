package tenants

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// UpstreamInput creates or replaces an upstream registration. See
// [Upstream] for the meaning of the fields.
type UpstreamInput struct {
	Slug string
	Name string
	// Kind is rest (the default) or mcp.
	Kind    string
	BaseURL string
	// AuthMode is oauth2 (the default), token_exchange or none.
	AuthMode string
	// Preset is "" or custom, or the name of an [UpstreamPreset]; empty
	// endpoints, scope parameter and authorization parameters are then
	// taken from the preset.
	Preset string
	// Issuer, when set and an endpoint is missing, is discovered
	// ([Service.DiscoverUpstream]) to fill the authorization, token and
	// revocation endpoints (and the offered scopes, when none are given).
	Issuer        string
	AuthorizeURL  string
	TokenURL      string
	RevocationURL string
	ClientID      string
	// ClientSecret nil keeps the stored secret (none on create), "" removes
	// it, anything else replaces it (stored sealed).
	ClientSecret     *string
	ScopesOffered    []string
	PKCE             bool
	RefreshNarrows   bool
	RevokeAfterUse   bool
	Resource         string
	ExchangeVariant  string
	ExchangeAudience string
	// ScopeParam is scope (the default) or user_scope.
	ScopeParam string
	AuthParams map[string]string
}

var upstreamSlugRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,38}[a-z0-9]$`)

// reservedAuthParams are set by the token broker itself and can't be
// overridden by an upstream's extra authorization parameters.
var reservedAuthParams = map[string]bool{
	"client_id": true, "client_secret": true, "redirect_uri": true, "response_type": true, "state": true,
	"scope": true, "user_scope": true, "code_challenge": true, "code_challenge_method": true, "nonce": true,
	"response_mode": true, "request": true, "request_uri": true, "resource": true, "code": true,
}

var authParamNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// RedirectURI is the one OAuth callback of all upstreams, BaseURL +
// "/oauth/callback"; the state parameter identifies the flow. Admins
// register it at each upstream's authorization server.
func (s *Service) RedirectURI() string { return strings.TrimRight(s.baseURL, "/") + "/oauth/callback" }

const upstreamColumns = `tenant_id, id, slug, name, kind, base_url, auth_mode, preset, issuer, authorize_url, token_url,
	revocation_url, client_id, client_secret_sealed IS NOT NULL, scopes_offered, pkce, refresh_narrows, revoke_after_use,
	resource, exchange_variant, exchange_audience, scope_param, auth_params, created_at, updated_at`

func scanUpstream(row pgx.Row) (Upstream, error) {
	var u Upstream
	err := row.Scan(&u.TenantID, &u.ID, &u.Slug, &u.Name, &u.Kind, &u.BaseURL, &u.AuthMode, &u.Preset, &u.Issuer,
		&u.AuthorizeURL, &u.TokenURL, &u.RevocationURL, &u.ClientID, &u.HasClientSecret, &u.ScopesOffered, &u.PKCE,
		&u.RefreshNarrows, &u.RevokeAfterUse, &u.Resource, &u.ExchangeVariant, &u.ExchangeAudience, &u.ScopeParam,
		&u.AuthParams, &u.CreatedAt, &u.UpdatedAt)
	return u, err
}

// Upstreams lists the tenant's upstreams by name.
func (s *Service) Upstreams(ctx context.Context, tenantID uuid.UUID) ([]Upstream, error) {
	var out []Upstream
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT "+upstreamColumns+" FROM upstreams WHERE tenant_id = $1 ORDER BY lower(name), slug", tenantID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Upstream, error) { return scanUpstream(r) })
		return err
	})
	return out, err
}

// Upstream returns one of the tenant's upstreams; ErrNotFound otherwise
// (including for another tenant's id).
func (s *Service) Upstream(ctx context.Context, tenantID, id uuid.UUID) (Upstream, error) {
	var u Upstream
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		u, err = scanUpstream(tx.QueryRow(ctx, "SELECT "+upstreamColumns+" FROM upstreams WHERE tenant_id = $1 AND id = $2", tenantID, id))
		return err
	})
	return u, err
}

// UpstreamBySlug returns the tenant's upstream with that slug, or ErrNotFound.
func (s *Service) UpstreamBySlug(ctx context.Context, tenantID uuid.UUID, slug string) (Upstream, error) {
	if !upstreamSlugRE.MatchString(slug) {
		return Upstream{}, ErrNotFound
	}
	var u Upstream
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		u, err = scanUpstream(tx.QueryRow(ctx, "SELECT "+upstreamColumns+" FROM upstreams WHERE tenant_id = $1 AND slug = $2", tenantID, slug))
		return err
	})
	return u, err
}

// CreateUpstream validates in and registers an upstream. Every URL is
// checked with the egress guard (so loopback, private, link-local and
// metadata addresses are refused unless private targets are allowed, and
// plain http with them); an oauth2 upstream needs an authorization and a
// token endpoint, given or discovered from Issuer, and a client ID;
// RevokeAfterUse needs a revocation endpoint and a per-user auth mode.
// Errors are *Error with Field set (slug, name, kind, base_url, auth_mode,
// preset, issuer, authorize_url, token_url, revocation_url, client_id,
// client_secret, scopes_offered, revoke_after_use, resource,
// exchange_variant, exchange_audience, scope_param, auth_params); a taken
// slug is ErrConflict on "slug".
func (s *Service) CreateUpstream(ctx context.Context, tenantID uuid.UUID, in UpstreamInput) (Upstream, error) {
	u, err := s.prepareUpstream(ctx, in)
	if err != nil {
		return Upstream{}, err
	}
	u.ID = uuid.New()
	slug := u.Slug
	var sealed []byte
	if in.ClientSecret != nil && *in.ClientSecret != "" {
		if sealed, err = s.sealer.Seal(ctx, tenantID, u.ID, secretField, []byte(*in.ClientSecret)); err != nil {
			return Upstream{}, fmt.Errorf("tenants: create upstream: seal client secret: %w", err)
		}
	}
	err = s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		u, err = scanUpstream(tx.QueryRow(ctx, `INSERT INTO upstreams (tenant_id, id, slug, name, kind, base_url, auth_mode,
				preset, issuer, authorize_url, token_url, revocation_url, client_id, client_secret_sealed, scopes_offered,
				pkce, refresh_narrows, revoke_after_use, resource, exchange_variant, exchange_audience, scope_param,
				auth_params, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $24)
			RETURNING `+upstreamColumns,
			tenantID, u.ID, u.Slug, u.Name, u.Kind, u.BaseURL, u.AuthMode, u.Preset, u.Issuer, u.AuthorizeURL, u.TokenURL,
			u.RevocationURL, u.ClientID, sealed, u.ScopesOffered, u.PKCE, u.RefreshNarrows, u.RevokeAfterUse, u.Resource,
			u.ExchangeVariant, u.ExchangeAudience, u.ScopeParam, u.AuthParams, s.now()))
		return err
	})
	if err != nil {
		return Upstream{}, slugConflict(err, slug)
	}
	return u, nil
}

// UpdateUpstream replaces an upstream's registration with in, validated as
// in [Service.CreateUpstream]. ErrNotFound if the tenant has no such
// upstream. Tools keep pointing at it.
func (s *Service) UpdateUpstream(ctx context.Context, tenantID, id uuid.UUID, in UpstreamInput) (Upstream, error) {
	if _, err := s.Upstream(ctx, tenantID, id); err != nil {
		return Upstream{}, err
	}
	u, err := s.prepareUpstream(ctx, in)
	if err != nil {
		return Upstream{}, err
	}
	slug := u.Slug
	keepSecret := in.ClientSecret == nil
	var sealed []byte
	if !keepSecret && *in.ClientSecret != "" {
		if sealed, err = s.sealer.Seal(ctx, tenantID, id, secretField, []byte(*in.ClientSecret)); err != nil {
			return Upstream{}, fmt.Errorf("tenants: update upstream: seal client secret: %w", err)
		}
	}
	err = s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		u, err = scanUpstream(tx.QueryRow(ctx, `UPDATE upstreams SET slug = $3, name = $4, kind = $5, base_url = $6,
				auth_mode = $7, preset = $8, issuer = $9, authorize_url = $10, token_url = $11, revocation_url = $12,
				client_id = $13, client_secret_sealed = CASE WHEN $14 THEN client_secret_sealed ELSE $15 END,
				scopes_offered = $16, pkce = $17, refresh_narrows = $18, revoke_after_use = $19, resource = $20,
				exchange_variant = $21, exchange_audience = $22, scope_param = $23, auth_params = $24, updated_at = $25
			WHERE tenant_id = $1 AND id = $2
			RETURNING `+upstreamColumns,
			tenantID, id, u.Slug, u.Name, u.Kind, u.BaseURL, u.AuthMode, u.Preset, u.Issuer, u.AuthorizeURL, u.TokenURL,
			u.RevocationURL, u.ClientID, keepSecret, sealed, u.ScopesOffered, u.PKCE, u.RefreshNarrows, u.RevokeAfterUse,
			u.Resource, u.ExchangeVariant, u.ExchangeAudience, u.ScopeParam, u.AuthParams, s.now()))
		return err
	})
	if err != nil {
		return Upstream{}, slugConflict(err, slug)
	}
	return u, nil
}

func slugConflict(err error, slug string) error {
	var fe *Error
	if errors.Is(err, ErrConflict) && !errors.As(err, &fe) {
		return &Error{Kind: ErrConflict, Field: "slug", Message: "another upstream already uses the slug “" + slug + "”", Err: err}
	}
	return err
}

// DeleteUpstream removes an upstream and, with it, its tools. ErrNotFound
// if the tenant has no such upstream.
func (s *Service) DeleteUpstream(ctx context.Context, tenantID, id uuid.UUID) error {
	return s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM upstreams WHERE tenant_id = $1 AND id = $2", tenantID, id)
		if err == nil && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	})
}

// UpstreamClientSecret opens the upstream's sealed client secret, for the
// token broker. It returns "" when none is set (a public client) and
// ErrNotFound if the tenant has no such upstream. Never log the result.
func (s *Service) UpstreamClientSecret(ctx context.Context, tenantID, id uuid.UUID) (string, error) {
	var sealed []byte
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT client_secret_sealed FROM upstreams WHERE tenant_id = $1 AND id = $2", tenantID, id).Scan(&sealed)
	})
	if err != nil || sealed == nil {
		return "", err
	}
	pt, err := s.sealer.Open(ctx, tenantID, id, secretField, sealed)
	if err != nil {
		return "", fmt.Errorf("tenants: upstream client secret %s: %w", id, err)
	}
	return string(pt), nil
}

// prepareUpstream validates and normalises in, discovering endpoints when
// asked. It does I/O (DNS through the egress guard, metadata fetches).
func (s *Service) prepareUpstream(ctx context.Context, in UpstreamInput) (Upstream, error) {
	u := Upstream{
		Slug: strings.TrimSpace(in.Slug), Name: strings.TrimSpace(in.Name), Kind: strings.TrimSpace(in.Kind),
		BaseURL: strings.TrimSpace(in.BaseURL), AuthMode: strings.TrimSpace(in.AuthMode), Preset: strings.TrimSpace(in.Preset),
		Issuer: strings.TrimSpace(in.Issuer), AuthorizeURL: strings.TrimSpace(in.AuthorizeURL),
		TokenURL: strings.TrimSpace(in.TokenURL), RevocationURL: strings.TrimSpace(in.RevocationURL),
		ClientID: strings.TrimSpace(in.ClientID), PKCE: in.PKCE, RefreshNarrows: in.RefreshNarrows,
		RevokeAfterUse: in.RevokeAfterUse, Resource: strings.TrimSpace(in.Resource),
		ExchangeVariant: strings.TrimSpace(in.ExchangeVariant), ExchangeAudience: strings.TrimSpace(in.ExchangeAudience),
		ScopeParam: strings.TrimSpace(in.ScopeParam),
	}
	switch {
	case len(u.Slug) < 2 || len(u.Slug) > 40:
		return u, Invalid("slug", "the slug must be 2 to 40 characters long")
	case !upstreamSlugRE.MatchString(u.Slug) || strings.Contains(u.Slug, "--"):
		return u, Invalid("slug", "use lowercase letters, digits and single hyphens, starting and ending with a letter or digit")
	}
	if err := ValidateName("name", u.Name); err != nil {
		return u, err
	}
	if !utf8.ValidString(u.Name) || strings.IndexFunc(u.Name, unicode.IsControl) >= 0 {
		return u, Invalid("name", "the name can't contain control characters")
	}
	switch u.Kind {
	case "":
		u.Kind = UpstreamREST
	case UpstreamREST, UpstreamMCP:
	default:
		return u, Invalid("kind", "the kind must be rest or mcp")
	}
	if u.Preset == "" {
		u.Preset = UpstreamPresetCustom
	}
	authParams := in.AuthParams
	if u.Preset != UpstreamPresetCustom {
		p, ok := LookupUpstreamPreset(u.Preset)
		if !ok {
			return u, Invalid("preset", "unknown preset “"+truncate(u.Preset, 40)+"”; choose one from the list or custom")
		}
		u.BaseURL = orString(u.BaseURL, p.BaseURL)
		u.AuthorizeURL = orString(u.AuthorizeURL, p.AuthorizeURL)
		u.TokenURL = orString(u.TokenURL, p.TokenURL)
		u.RevocationURL = orString(u.RevocationURL, p.RevocationURL)
		u.ScopeParam = orString(u.ScopeParam, p.ScopeParam)
		if authParams == nil {
			authParams = p.AuthParams
		}
	}
	var err error
	if u.BaseURL, err = s.checkEndpoint(ctx, "base_url", "the base URL", u.BaseURL, true); err != nil {
		return u, err
	}
	if u.BaseURL == "" {
		return u, Invalid("base_url", "enter the API's base URL, e.g. https://api.example.com")
	}
	u.BaseURL = strings.TrimRight(u.BaseURL, "/")

	scopes, err := normalizeScopes("scopes_offered", in.ScopesOffered, 200)
	if err != nil {
		return u, err
	}
	switch u.AuthMode {
	case "":
		u.AuthMode = AuthOAuth2
	case AuthOAuth2, AuthTokenExchange, AuthNone:
	default:
		return u, Invalid("auth_mode", "the auth mode must be oauth2, token_exchange or none")
	}
	if u.Issuer != "" {
		if msg := issuerShape(u.Issuer); msg != "" {
			return u, Invalid("issuer", msg)
		}
	}
	if u.AuthMode == AuthOAuth2 && u.Issuer != "" && (u.AuthorizeURL == "" || u.TokenURL == "") {
		d, err := s.DiscoverUpstream(ctx, u.Issuer)
		if err != nil {
			return u, err
		}
		u.AuthorizeURL = orString(u.AuthorizeURL, d.AuthorizeURL)
		u.TokenURL = orString(u.TokenURL, d.TokenURL)
		u.RevocationURL = orString(u.RevocationURL, d.RevocationURL)
		if len(scopes) == 0 {
			if scopes, err = normalizeScopes("scopes_offered", d.ScopesSupported, 200); err != nil {
				return u, Invalid("issuer", "the metadata lists a scope that is not valid")
			}
		}
	}
	u.ScopesOffered = scopes
	for _, e := range []struct {
		field, what string
		v           *string
	}{
		{"authorize_url", "the authorization endpoint", &u.AuthorizeURL},
		{"token_url", "the token endpoint", &u.TokenURL},
		{"revocation_url", "the revocation endpoint", &u.RevocationURL},
	} {
		if *e.v, err = s.checkEndpoint(ctx, e.field, e.what, *e.v, false); err != nil {
			return u, err
		}
	}
	if err := checkToken("client_id", "the client ID", u.ClientID, 255); err != nil {
		return u, err
	}
	if in.ClientSecret != nil {
		if err := checkSecret(*in.ClientSecret); err != nil {
			return u, err
		}
	}
	switch u.ExchangeVariant {
	case "":
		u.ExchangeVariant = ExchangeRFC8693
	case ExchangeRFC8693, ExchangeEntraOBO:
	default:
		return u, Invalid("exchange_variant", "the exchange variant must be rfc8693 or entra_obo")
	}
	switch u.AuthMode {
	case AuthOAuth2:
		switch {
		case u.AuthorizeURL == "":
			return u, Invalid("authorize_url", "enter the authorization endpoint, or an issuer to discover it from")
		case u.TokenURL == "":
			return u, Invalid("token_url", "enter the token endpoint, or an issuer to discover it from")
		case u.ClientID == "":
			return u, Invalid("client_id", "enter the client ID registered at the upstream for "+s.RedirectURI())
		}
	case AuthTokenExchange:
		if u.ExchangeVariant == ExchangeRFC8693 && u.ExchangeAudience == "" && u.Resource == "" {
			return u, Invalid("exchange_audience", "enter the audience (or the resource) the IdP should issue the exchanged token for")
		}
	}
	if u.RevokeAfterUse {
		switch {
		case u.AuthMode == AuthNone:
			return u, Invalid("revoke_after_use", "there are no per-user tokens to revoke when users don't grant access (auth mode none); turn this off")
		case u.RevocationURL == "":
			return u, Invalid("revoke_after_use", "revoking tokens after each call needs a revocation endpoint (RFC 7009); enter it, or turn this off")
		}
	}
	if err := checkToken("exchange_audience", "the audience", u.ExchangeAudience, 1000); err != nil {
		return u, err
	}
	if u.Resource != "" {
		r, err := url.Parse(u.Resource)
		if err != nil || !r.IsAbs() || r.Fragment != "" || strings.Contains(u.Resource, "#") || len(u.Resource) > 2000 {
			return u, Invalid("resource", "the resource must be an absolute URI without a fragment (RFC 8707)")
		}
		if err := checkToken("resource", "the resource", u.Resource, 2000); err != nil {
			return u, err
		}
	}
	switch u.ScopeParam {
	case "":
		u.ScopeParam = "scope"
	case "scope", "user_scope":
	default:
		return u, Invalid("scope_param", "the scope parameter must be scope or user_scope")
	}
	if u.AuthParams, err = validateAuthParams(authParams); err != nil {
		return u, err
	}
	return u, nil
}

// checkEndpoint validates an optional absolute URL with the egress guard
// (scheme, user info, forbidden addresses) and returns it trimmed ("" for
// ""). No URL may have a fragment or a {placeholder}; a base URL (isBase)
// may not have a query either.
func (s *Service) checkEndpoint(ctx context.Context, field, what, raw string, isBase bool) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", nil
	}
	if len(raw) > 2000 {
		return "", Invalid(field, what+" is too long")
	}
	if strings.ContainsAny(raw, "{}") {
		return "", Invalid(field, what+" still contains a {placeholder}; replace it with your value")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || !u.IsAbs() {
		return "", Invalid(field, what+" must be an absolute https URL")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return "", Invalid(field, what+" can't have a fragment")
	}
	if isBase && u.RawQuery != "" {
		return "", Invalid(field, what+" can't have a query")
	}
	if err := s.egress.CheckURL(ctx, raw); err != nil {
		return "", &Error{Kind: ErrInvalid, Field: field, Message: what + ": " + err.Error(), Err: err}
	}
	return raw, nil
}

// validateAuthParams checks an upstream's extra authorization parameters.
// It never returns nil.
func validateAuthParams(in map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(in))
	if len(in) > 20 {
		return nil, Invalid("auth_params", "use at most 20 extra authorization parameters")
	}
	for k, v := range in {
		k = strings.TrimSpace(k)
		switch {
		case !authParamNameRE.MatchString(k):
			return nil, Invalid("auth_params", fmt.Sprintf("%q is not a valid parameter name (letters, digits, _ . -)", truncate(k, 40)))
		case reservedAuthParams[k]:
			return nil, Invalid("auth_params", "“"+k+"” is set by Locksmith and can't be overridden")
		case len(v) > 500:
			return nil, Invalid("auth_params", "the value of “"+k+"” is too long (at most 500 characters)")
		}
		if err := checkToken("auth_params", "the value of “"+k+"”", strings.ReplaceAll(v, " ", ""), 500); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

func orString(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
