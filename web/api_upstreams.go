package web

import (
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
)

// apiUpstream is an upstream registration. The client secret is write-only.
type apiUpstream struct {
	ID               uuid.UUID         `json:"id"`
	Slug             string            `json:"slug"`
	Name             string            `json:"name"`
	Kind             string            `json:"kind" doc:"rest or mcp."`
	BaseURL          string            `json:"base_url"`
	AuthMode         string            `json:"auth_mode" doc:"oauth2 (per-user consent), token_exchange (at the tenant IdP) or none."`
	Preset           string            `json:"preset" doc:"custom, or the preset it was made from."`
	Issuer           string            `json:"issuer"`
	AuthorizeURL     string            `json:"authorize_url"`
	TokenURL         string            `json:"token_url"`
	RevocationURL    string            `json:"revocation_url"`
	ClientID         string            `json:"client_id"`
	ClientSecretSet  bool              `json:"client_secret_set" doc:"Whether a client secret is stored. The secret itself is never returned."`
	ScopesOffered    []string          `json:"scopes_offered"`
	PKCE             bool              `json:"pkce"`
	RefreshNarrows   bool              `json:"refresh_narrows" doc:"A refresh may ask for a narrower scope."`
	RevokeAfterUse   bool              `json:"revoke_after_use" doc:"Tokens minted for one call (narrowed refresh or token exchange) are revoked at revocation_url (RFC 7009) right after it; the grant's own tokens never are."`
	Resource         string            `json:"resource" doc:"RFC 8707 resource indicator, if any."`
	ExchangeVariant  string            `json:"exchange_variant" doc:"rfc8693 or entra_obo."`
	ExchangeAudience string            `json:"exchange_audience"`
	ScopeParam       string            `json:"scope_param" doc:"scope, or user_scope (Slack user tokens)."`
	AuthParams       map[string]string `json:"auth_params" doc:"Extra authorization request parameters."`
	RedirectURI      string            `json:"redirect_uri" doc:"The redirect URI to register at the provider."`
	CreatedAt        time.Time         `json:"created_at"`
	UpdatedAt        time.Time         `json:"updated_at"`
}

// apiUpstreamPage is a page of upstreams.
type apiUpstreamPage struct {
	Items      []apiUpstream `json:"items"`
	NextCursor string        `json:"next_cursor" doc:"Pass as ?cursor= for the next page; empty on the last page."`
}

// apiUpstreamInput creates or changes an upstream; absent fields keep their
// values (on create: the preset's, when preset names one).
type apiUpstreamInput struct {
	Slug             *string           `json:"slug,omitempty" doc:"2 to 40 lowercase letters, digits and single hyphens. Required on create."`
	Name             *string           `json:"name,omitempty" doc:"Required on create."`
	Kind             *string           `json:"kind,omitempty" doc:"rest (default) or mcp."`
	BaseURL          *string           `json:"base_url,omitempty"`
	AuthMode         *string           `json:"auth_mode,omitempty" doc:"oauth2 (default), token_exchange or none."`
	Preset           *string           `json:"preset,omitempty" doc:"custom (default) or a preset name from GET /api/v1/presets."`
	Issuer           *string           `json:"issuer,omitempty" doc:"Discovered (RFC 8414) to fill missing endpoints."`
	AuthorizeURL     *string           `json:"authorize_url,omitempty"`
	TokenURL         *string           `json:"token_url,omitempty"`
	RevocationURL    *string           `json:"revocation_url,omitempty"`
	ClientID         *string           `json:"client_id,omitempty"`
	ClientSecret     *string           `json:"client_secret,omitempty" doc:"Write-only. Absent keeps the stored secret, empty removes it."`
	ScopesOffered    []string          `json:"scopes_offered,omitempty"`
	PKCE             *bool             `json:"pkce,omitempty"`
	RefreshNarrows   *bool             `json:"refresh_narrows,omitempty"`
	RevokeAfterUse   *bool             `json:"revoke_after_use,omitempty" doc:"Needs revocation_url and an auth mode other than none."`
	Resource         *string           `json:"resource,omitempty"`
	ExchangeVariant  *string           `json:"exchange_variant,omitempty"`
	ExchangeAudience *string           `json:"exchange_audience,omitempty"`
	ScopeParam       *string           `json:"scope_param,omitempty"`
	AuthParams       map[string]string `json:"auth_params,omitempty"`
}

// apiUpstreamDiscovery is what discovery found about an authorization server.
type apiUpstreamDiscovery struct {
	Issuer               string   `json:"issuer"`
	MetadataURL          string   `json:"metadata_url" doc:"The document the endpoints came from."`
	AuthorizeURL         string   `json:"authorize_url"`
	TokenURL             string   `json:"token_url"`
	RevocationURL        string   `json:"revocation_url"`
	ScopesSupported      []string `json:"scopes_supported"`
	CodeChallengeMethods []string `json:"code_challenge_methods_supported"`
	PKCE                 bool     `json:"pkce" doc:"S256 is advertised."`
	Warnings             []string `json:"warnings"`
}

func (s *Server) toAPIUpstream(u tenants.Upstream) apiUpstream {
	params := u.AuthParams
	if params == nil {
		params = map[string]string{}
	}
	return apiUpstream{
		ID: u.ID, Slug: u.Slug, Name: u.Name, Kind: u.Kind, BaseURL: u.BaseURL, AuthMode: u.AuthMode, Preset: u.Preset,
		Issuer: u.Issuer, AuthorizeURL: u.AuthorizeURL, TokenURL: u.TokenURL, RevocationURL: u.RevocationURL,
		ClientID: u.ClientID, ClientSecretSet: u.HasClientSecret, ScopesOffered: apiNonNil(u.ScopesOffered), PKCE: u.PKCE,
		RefreshNarrows: u.RefreshNarrows, RevokeAfterUse: u.RevokeAfterUse, Resource: u.Resource,
		ExchangeVariant: u.ExchangeVariant, ExchangeAudience: u.ExchangeAudience, ScopeParam: u.ScopeParam,
		AuthParams: params, RedirectURI: s.cfg.Tenants.RedirectURI(), CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt,
	}
}

// apiUpstreamBase is the input that leaves an upstream as it is (the
// client secret kept).
func apiUpstreamBase(u tenants.Upstream) tenants.UpstreamInput {
	return tenants.UpstreamInput{
		Slug: u.Slug, Name: u.Name, Kind: u.Kind, BaseURL: u.BaseURL, AuthMode: u.AuthMode, Preset: u.Preset,
		Issuer: u.Issuer, AuthorizeURL: u.AuthorizeURL, TokenURL: u.TokenURL, RevocationURL: u.RevocationURL,
		ClientID: u.ClientID, ScopesOffered: u.ScopesOffered, PKCE: u.PKCE, RefreshNarrows: u.RefreshNarrows,
		RevokeAfterUse: u.RevokeAfterUse, Resource: u.Resource, ExchangeVariant: u.ExchangeVariant,
		ExchangeAudience: u.ExchangeAudience, ScopeParam: u.ScopeParam, AuthParams: u.AuthParams,
	}
}

// apply overlays the fields present in in.
func (in apiUpstreamInput) apply(dst *tenants.UpstreamInput) {
	apiSet(&dst.Slug, in.Slug)
	apiSet(&dst.Name, in.Name)
	apiSet(&dst.Kind, in.Kind)
	apiSet(&dst.BaseURL, in.BaseURL)
	apiSet(&dst.AuthMode, in.AuthMode)
	apiSet(&dst.Preset, in.Preset)
	apiSet(&dst.Issuer, in.Issuer)
	apiSet(&dst.AuthorizeURL, in.AuthorizeURL)
	apiSet(&dst.TokenURL, in.TokenURL)
	apiSet(&dst.RevocationURL, in.RevocationURL)
	apiSet(&dst.ClientID, in.ClientID)
	if in.ClientSecret != nil {
		dst.ClientSecret = in.ClientSecret
	}
	apiSetSlice(&dst.ScopesOffered, in.ScopesOffered)
	apiSet(&dst.PKCE, in.PKCE)
	apiSet(&dst.RefreshNarrows, in.RefreshNarrows)
	apiSet(&dst.RevokeAfterUse, in.RevokeAfterUse)
	apiSet(&dst.Resource, in.Resource)
	apiSet(&dst.ExchangeVariant, in.ExchangeVariant)
	apiSet(&dst.ExchangeAudience, in.ExchangeAudience)
	apiSet(&dst.ScopeParam, in.ScopeParam)
	if in.AuthParams != nil {
		dst.AuthParams = in.AuthParams
	}
}

func (s *Server) apiListUpstreams(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	limit, after, err := apiPageParams(r)
	if err != nil {
		return err
	}
	us, err := s.cfg.Tenants.UpstreamsAfter(r.Context(), a.TenantID, after, limit)
	if err != nil {
		return err
	}
	out := apiUpstreamPage{Items: make([]apiUpstream, 0, len(us))}
	for _, u := range us {
		out.Items = append(out.Items, s.toAPIUpstream(u))
	}
	if len(us) > 0 {
		out.NextCursor = apiNextCursor(len(us) == limit, us[len(us)-1].Slug)
	}
	return apiWriteJSON(w, http.StatusOK, out)
}

func (s *Server) apiCreateUpstream(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	var body apiUpstreamInput
	if err := apiDecode(r, &body); err != nil {
		return err
	}
	var in tenants.UpstreamInput
	if body.Preset != nil {
		if p, ok := tenants.LookupUpstreamPreset(*body.Preset); ok {
			in = p.Input()
		}
	}
	body.apply(&in)
	u, err := s.cfg.Tenants.CreateUpstream(r.Context(), a.TenantID, in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/upstreams/"+u.ID.String())
	return apiWriteJSON(w, http.StatusCreated, s.toAPIUpstream(u))
}

func (s *Server) apiGetUpstream(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	id, err := apiPathID(r)
	if err != nil {
		return err
	}
	u, err := s.cfg.Tenants.Upstream(r.Context(), a.TenantID, id)
	if err != nil {
		return err
	}
	return apiWriteJSON(w, http.StatusOK, s.toAPIUpstream(u))
}

func (s *Server) apiPatchUpstream(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	id, err := apiPathID(r)
	if err != nil {
		return err
	}
	u, err := s.cfg.Tenants.Upstream(r.Context(), a.TenantID, id)
	if err != nil {
		return err
	}
	var body apiUpstreamInput
	if err := apiDecode(r, &body); err != nil {
		return err
	}
	in := apiUpstreamBase(u)
	body.apply(&in)
	if u, err = s.cfg.Tenants.UpdateUpstream(r.Context(), a.TenantID, id, in); err != nil {
		return err
	}
	return apiWriteJSON(w, http.StatusOK, s.toAPIUpstream(u))
}

func (s *Server) apiDeleteUpstream(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	id, err := apiPathID(r)
	if err != nil {
		return err
	}
	if err := s.cfg.Tenants.DeleteUpstream(r.Context(), a.TenantID, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) apiDiscoverUpstream(w http.ResponseWriter, r *http.Request, _ tenants.APIPrincipal) error {
	var body apiIssuer
	if err := apiDecode(r, &body); err != nil {
		return err
	}
	d, err := s.cfg.Tenants.DiscoverUpstream(r.Context(), body.Issuer)
	if err != nil {
		return err
	}
	return apiWriteJSON(w, http.StatusOK, apiUpstreamDiscovery{
		Issuer: d.Issuer, MetadataURL: d.MetadataURL, AuthorizeURL: d.AuthorizeURL, TokenURL: d.TokenURL,
		RevocationURL: d.RevocationURL, ScopesSupported: apiNonNil(d.ScopesSupported),
		CodeChallengeMethods: apiNonNil(d.CodeChallengeMethods), PKCE: d.PKCE, Warnings: apiNonNil(d.Warnings),
	})
}

// apiPresets lists what the console offers to start from.
type apiPresets struct {
	IdP       []apiIdPPreset      `json:"idp"`
	Upstreams []apiUpstreamPreset `json:"upstreams"`
}

// apiIdPPreset is a claim-mapping preset of an identity provider family.
type apiIdPPreset struct {
	Name         string    `json:"name" doc:"The value of an IdP's preset."`
	Label        string    `json:"label"`
	Claims       apiClaims `json:"claims"`
	RequireATJWT bool      `json:"require_at_jwt"`
	IssuerHint   string    `json:"issuer_hint" doc:"The shape of the issuer URL, placeholders in braces."`
	Notes        string    `json:"notes"`
}

// apiUpstreamPreset holds a common provider's endpoints and quirks.
type apiUpstreamPreset struct {
	Name           string            `json:"name" doc:"The value of an upstream's preset."`
	Label          string            `json:"label"`
	BaseURL        string            `json:"base_url"`
	Issuer         string            `json:"issuer"`
	AuthorizeURL   string            `json:"authorize_url"`
	TokenURL       string            `json:"token_url"`
	RevocationURL  string            `json:"revocation_url"`
	PKCE           bool              `json:"pkce"`
	RefreshNarrows bool              `json:"refresh_narrows"`
	Scopes         []string          `json:"scopes" doc:"Typical scopes to offer."`
	ScopeParam     string            `json:"scope_param"`
	AuthParams     map[string]string `json:"auth_params"`
	Notes          string            `json:"notes"`
	DocsURL        string            `json:"docs_url"`
}

func (s *Server) apiPresets(w http.ResponseWriter, _ *http.Request, _ tenants.APIPrincipal) error {
	out := apiPresets{IdP: []apiIdPPreset{}, Upstreams: []apiUpstreamPreset{}}
	for _, p := range tenants.IdPPresets() {
		c := p.Claims
		out.IdP = append(out.IdP, apiIdPPreset{
			Name: p.Name, Label: p.Label, RequireATJWT: p.RequireATJWT, IssuerHint: p.IssuerHint, Notes: p.Notes,
			Claims: apiClaims{Subject: c.Subject, Email: c.Email, Groups: c.Groups, Scopes: c.Scopes, Agent: c.Agent},
		})
	}
	for _, p := range tenants.UpstreamPresets() {
		params := p.AuthParams
		if params == nil {
			params = map[string]string{}
		}
		out.Upstreams = append(out.Upstreams, apiUpstreamPreset{
			Name: p.Name, Label: p.Label, BaseURL: p.BaseURL, Issuer: p.Issuer, AuthorizeURL: p.AuthorizeURL,
			TokenURL: p.TokenURL, RevocationURL: p.RevocationURL, PKCE: p.PKCE, RefreshNarrows: p.RefreshNarrows,
			Scopes: apiNonNil(p.Scopes), ScopeParam: p.ScopeParam, AuthParams: params, Notes: p.Notes, DocsURL: p.DocsURL,
		})
	}
	return apiWriteJSON(w, http.StatusOK, out)
}
