package web

import (
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
)

// apiIdP is the tenant's IdP registration. The client secret is write-only.
type apiIdP struct {
	ID              uuid.UUID  `json:"id"`
	Issuer          string     `json:"issuer" doc:"The OIDC issuer URL; discovery is at issuer + /.well-known/openid-configuration."`
	JWKSURI         string     `json:"jwks_uri" doc:"The JWKS URL found by the last check."`
	Audience        string     `json:"audience" doc:"The audience Token A must carry; empty means the tenant's MCP resource URL."`
	Preset          string     `json:"preset" doc:"generic, okta, entra, auth0, keycloak or google."`
	Claims          apiClaims  `json:"claims"`
	RequireATJWT    bool       `json:"require_at_jwt" doc:"Refuse access tokens whose header typ is not at+jwt (RFC 9068)."`
	RequiredScopes  []string   `json:"required_scopes" doc:"Scopes every MCP request needs."`
	ClientID        string     `json:"client_id" doc:"The OIDC client end users sign in with on consent and approval pages."`
	ClientSecretSet bool       `json:"client_secret_set" doc:"Whether a client secret is stored. The secret itself is never returned."`
	CheckedAt       *time.Time `json:"checked_at" doc:"When the issuer was last checked live."`
	CheckOK         *bool      `json:"check_ok" doc:"The outcome of the last check; null before any."`
	CheckMessage    string     `json:"check_message" doc:"The problems (then warnings) the last check found."`
	CreatedAt       time.Time  `json:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
}

// apiClaims names the token claims a principal is built from.
type apiClaims struct {
	Subject string `json:"subject" doc:"The claim naming the user, e.g. sub."`
	Email   string `json:"email"`
	Groups  string `json:"groups" doc:"The claim with groups or roles."`
	Scopes  string `json:"scopes" doc:"scp (an array) or scope (a space-separated string)."`
	Agent   string `json:"agent" doc:"azp, client_id or act (the innermost actor's sub)."`
}

// apiIdPList is the tenant's IdP registrations: none or one.
type apiIdPList struct {
	Items []apiIdP `json:"items"`
}

// apiIdPInput creates or changes the IdP registration; absent fields keep
// their values (on create: the preset's).
type apiIdPInput struct {
	Issuer         *string         `json:"issuer,omitempty" doc:"The OIDC issuer URL; it must match the discovery document exactly. Required on create."`
	Audience       *string         `json:"audience,omitempty" doc:"Empty means the tenant's MCP resource URL."`
	Preset         *string         `json:"preset,omitempty" doc:"generic (default), okta, entra, auth0, keycloak or google."`
	Claims         *apiClaimsInput `json:"claims,omitempty"`
	RequireATJWT   *bool           `json:"require_at_jwt,omitempty" doc:"Absent on create: the preset's value."`
	RequiredScopes []string        `json:"required_scopes,omitempty"`
	ClientID       *string         `json:"client_id,omitempty"`
	ClientSecret   *string         `json:"client_secret,omitempty" doc:"Write-only. Absent keeps the stored secret, empty removes it."`
}

// apiClaimsInput changes claim names; an empty name takes the preset's.
type apiClaimsInput struct {
	Subject *string `json:"subject,omitempty"`
	Email   *string `json:"email,omitempty"`
	Groups  *string `json:"groups,omitempty"`
	Scopes  *string `json:"scopes,omitempty"`
	Agent   *string `json:"agent,omitempty"`
}

// apiIssuer names an issuer to check or discover.
type apiIssuer struct {
	Issuer string `json:"issuer" api:"required" doc:"The issuer URL."`
}

// apiIdPCheck is the result of a live check of an issuer.
type apiIdPCheck struct {
	OK        bool        `json:"ok" doc:"True when there are no problems."`
	Problems  []string    `json:"problems" doc:"What stops Token A validation, in sentences for the admin."`
	Warnings  []string    `json:"warnings" doc:"What will bite later, e.g. no PKCE S256 advertised."`
	Found     apiIdPFound `json:"found"`
	CheckedAt time.Time   `json:"checked_at"`
}

// apiIdPFound is what the check read from the discovery document and JWKS.
type apiIdPFound struct {
	DiscoveryURL          string   `json:"discovery_url"`
	Issuer                string   `json:"issuer" doc:"The issuer as written in the discovery document."`
	JWKSURI               string   `json:"jwks_uri"`
	KeyCount              int      `json:"key_count" doc:"Usable public signing keys in the JWKS."`
	KeyIDs                []string `json:"key_ids"`
	Algorithms            []string `json:"algorithms"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	UserinfoEndpoint      string   `json:"userinfo_endpoint"`
	RevocationEndpoint    string   `json:"revocation_endpoint"`
	IntrospectionEndpoint string   `json:"introspection_endpoint"`
	EndSessionEndpoint    string   `json:"end_session_endpoint"`
	ScopesSupported       []string `json:"scopes_supported"`
	CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
	GrantTypes            []string `json:"grant_types_supported"`
}

func toAPIIdP(p tenants.IdP) apiIdP {
	c := p.Claims
	return apiIdP{
		ID: p.ID, Issuer: p.Issuer, JWKSURI: p.JWKSURI, Audience: p.Audience, Preset: p.Preset,
		Claims:       apiClaims{Subject: c.Subject, Email: c.Email, Groups: c.Groups, Scopes: c.Scopes, Agent: c.Agent},
		RequireATJWT: p.RequireATJWT, RequiredScopes: apiNonNil(p.RequiredScopes), ClientID: p.ClientID,
		ClientSecretSet: p.HasClientSecret, CheckedAt: p.CheckedAt, CheckOK: p.CheckOK, CheckMessage: p.CheckMessage,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	}
}

func toAPIIdPCheck(c tenants.IdPCheck) apiIdPCheck {
	f := c.Found
	return apiIdPCheck{
		OK: c.OK, Problems: apiNonNil(c.Problems), Warnings: apiNonNil(c.Warnings), CheckedAt: c.CheckedAt,
		Found: apiIdPFound{
			DiscoveryURL: f.DiscoveryURL, Issuer: f.Issuer, JWKSURI: f.JWKSURI, KeyCount: f.KeyCount,
			KeyIDs: apiNonNil(f.KeyIDs), Algorithms: apiNonNil(f.Algorithms), AuthorizationEndpoint: f.AuthorizationEndpoint,
			TokenEndpoint: f.TokenEndpoint, UserinfoEndpoint: f.UserinfoEndpoint, RevocationEndpoint: f.RevocationEndpoint,
			IntrospectionEndpoint: f.IntrospectionEndpoint, EndSessionEndpoint: f.EndSessionEndpoint,
			ScopesSupported: apiNonNil(f.ScopesSupported), CodeChallengeMethods: apiNonNil(f.CodeChallengeMethods),
			GrantTypes: apiNonNil(f.GrantTypes),
		},
	}
}

// apiIdPBase is the input that leaves a registration as it is (the
// client secret kept).
func apiIdPBase(p tenants.IdP) tenants.IdPInput {
	req := p.RequireATJWT
	return tenants.IdPInput{
		Issuer: p.Issuer, Audience: p.Audience, Preset: p.Preset, Claims: p.Claims, RequireATJWT: &req,
		RequiredScopes: p.RequiredScopes, ClientID: p.ClientID,
	}
}

// apply overlays the fields present in in.
func (in apiIdPInput) apply(dst *tenants.IdPInput) {
	apiSet(&dst.Issuer, in.Issuer)
	apiSet(&dst.Audience, in.Audience)
	apiSet(&dst.Preset, in.Preset)
	if c := in.Claims; c != nil {
		apiSet(&dst.Claims.Subject, c.Subject)
		apiSet(&dst.Claims.Email, c.Email)
		apiSet(&dst.Claims.Groups, c.Groups)
		apiSet(&dst.Claims.Scopes, c.Scopes)
		apiSet(&dst.Claims.Agent, c.Agent)
	}
	if in.RequireATJWT != nil {
		dst.RequireATJWT = in.RequireATJWT
	}
	apiSetSlice(&dst.RequiredScopes, in.RequiredScopes)
	apiSet(&dst.ClientID, in.ClientID)
	if in.ClientSecret != nil {
		dst.ClientSecret = in.ClientSecret
	}
}

// tenantIdP returns the tenant's registration if its id is id.
func (s *Server) tenantIdP(r *http.Request, tenantID uuid.UUID) (tenants.IdP, error) {
	id, err := apiPathID(r)
	if err != nil {
		return tenants.IdP{}, err
	}
	p, err := s.cfg.Tenants.IdP(r.Context(), tenantID)
	if err != nil {
		return tenants.IdP{}, err
	}
	if p.ID != id {
		return tenants.IdP{}, tenants.ErrNotFound
	}
	return p, nil
}

func (s *Server) apiListIdPs(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	out := apiIdPList{Items: []apiIdP{}}
	p, err := s.cfg.Tenants.IdP(r.Context(), a.TenantID)
	switch {
	case err == nil:
		out.Items = append(out.Items, toAPIIdP(p))
	case !errors.Is(err, tenants.ErrNotFound):
		return err
	}
	return apiWriteJSON(w, http.StatusOK, out)
}

func (s *Server) apiCreateIdP(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	var body apiIdPInput
	if err := apiDecode(r, &body); err != nil {
		return err
	}
	existing, err := s.cfg.Tenants.IdP(r.Context(), a.TenantID)
	if err == nil {
		return &tenants.Error{Kind: tenants.ErrConflict, Field: "issuer",
			Message: "the tenant already has an IdP registration (" + existing.ID.String() + "); change it with PATCH /api/v1/idps/" + existing.ID.String()}
	}
	if !errors.Is(err, tenants.ErrNotFound) {
		return err
	}
	var in tenants.IdPInput
	body.apply(&in)
	p, err := s.cfg.Tenants.SaveIdP(r.Context(), a.TenantID, in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/idps/"+p.ID.String())
	return apiWriteJSON(w, http.StatusCreated, toAPIIdP(p))
}

func (s *Server) apiGetIdP(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	p, err := s.tenantIdP(r, a.TenantID)
	if err != nil {
		return err
	}
	return apiWriteJSON(w, http.StatusOK, toAPIIdP(p))
}

func (s *Server) apiPatchIdP(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	p, err := s.tenantIdP(r, a.TenantID)
	if err != nil {
		return err
	}
	var body apiIdPInput
	if err := apiDecode(r, &body); err != nil {
		return err
	}
	in := apiIdPBase(p)
	body.apply(&in)
	p, err = s.cfg.Tenants.SaveIdP(r.Context(), a.TenantID, in)
	if err != nil {
		return err
	}
	return apiWriteJSON(w, http.StatusOK, toAPIIdP(p))
}

func (s *Server) apiDeleteIdP(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	if _, err := s.tenantIdP(r, a.TenantID); err != nil {
		return err
	}
	if err := s.cfg.Tenants.DeleteIdP(r.Context(), a.TenantID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) apiCheckIdP(w http.ResponseWriter, r *http.Request, _ tenants.APIPrincipal) error {
	var body apiIssuer
	if err := apiDecode(r, &body); err != nil {
		return err
	}
	return apiWriteJSON(w, http.StatusOK, toAPIIdPCheck(s.cfg.Tenants.CheckIdP(r.Context(), body.Issuer)))
}

func (s *Server) apiRecheckIdP(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	if _, err := s.tenantIdP(r, a.TenantID); err != nil {
		return err
	}
	c, err := s.cfg.Tenants.RecheckIdP(r.Context(), a.TenantID)
	if err != nil {
		return err
	}
	return apiWriteJSON(w, http.StatusOK, toAPIIdPCheck(c))
}
