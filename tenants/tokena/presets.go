package tokena

import "github.com/locksmithhq/locksmith/tenants"

// Preset is a claim mapping and token-type rule known to fit one kind of
// identity provider. The console offers presets when an admin registers an
// IdP; every field can then be overridden in the registration. The facts
// below are written by us from each vendor's documentation; when a vendor
// changes its token format, change the preset and its comment together.
type Preset struct {
	// Name is the value stored in tenants.IdP.Preset.
	Name string
	// Claims is the mapping. An empty field means the preset maps nothing
	// to it (for example no scopes in Google ID tokens).
	Claims tenants.ClaimMapping
	// RequireATJWT is the recommended tenants.IdP.RequireATJWT: true only
	// where the IdP types its access tokens at+jwt (RFC 9068).
	RequireATJWT bool
	// Note tells the admin what the IdP must be configured to send.
	Note string
}

// Preset names.
const (
	PresetGeneric  = "generic"
	PresetOkta     = "okta"
	PresetEntra    = "entra"
	PresetAuth0    = "auth0"
	PresetKeycloak = "keycloak"
	PresetGoogle   = "google"
)

// presets is the table behind Presets and PresetNamed, in console order.
var presets = []Preset{
	// RFC 9068 "JWT Profile for OAuth 2.0 Access Tokens": header typ
	// at+jwt; claims iss, sub, aud, exp, iat, jti, client_id, and scope as
	// a space-separated string. groups is the RFC 9068 section 2.2.3.1 /
	// SCIM name. The demo IdP issues exactly this shape.
	{
		Name:         PresetGeneric,
		Claims:       tenants.ClaimMapping{Subject: "sub", Email: "email", Groups: "groups", Scopes: "scope", Agent: "client_id"},
		RequireATJWT: true,
		Note:         "RFC 9068 access tokens: typ at+jwt, sub, client_id, space-separated scope.",
	},
	// Okta custom authorization servers (the org authorization server's
	// access tokens are for Okta's own APIs and can't be validated by a
	// third party). Access tokens carry: ver, jti, iss, aud, iat, exp,
	// cid (the client id), uid (the user's immutable id, 00u…; absent in
	// client_credentials tokens), scp (an ARRAY of scopes), auth_time and
	// sub — which in access tokens is the user's *login* (often an email,
	// and mutable), while ID tokens use the uid as sub. We map Subject to
	// uid so that the agent's user matches the user who signs in on
	// consent pages; client_credentials tokens (no uid) are therefore
	// refused. email and groups are not in access tokens unless the admin
	// adds custom claims with those names. No typ at+jwt header.
	{
		Name:   PresetOkta,
		Claims: tenants.ClaimMapping{Subject: "uid", Email: "email", Groups: "groups", Scopes: "scp", Agent: "cid"},
		Note:   "Use a custom authorization server; add access-token claims \"email\" and \"groups\" if policies need them.",
	},
	// Microsoft Entra ID, v2.0 access tokens (the API's app registration
	// must set accessTokenAcceptedVersion: 2; v1.0 tokens have another
	// issuer, sts.windows.net, and appid instead of azp). Header typ is
	// always JWT. iss is https://login.microsoftonline.com/{tenant}/v2.0;
	// aud is the API's application (client) id GUID, so the registration's
	// audience must be that GUID rather than the MCP URL. scp is a
	// space-separated STRING of delegated scopes; app-only tokens carry
	// roles instead of scp. roles also holds app roles assigned to users,
	// which is what we map to groups (the groups claim holds object ids
	// and is dropped on overage). sub is pairwise per application; oid is
	// the user's (or service principal's) immutable object id across the
	// tenant, so Subject maps to oid. preferred_username is the sign-in
	// name (usually a UPN that looks like an email) and is mutable. azp is
	// the client application id.
	{
		Name:   PresetEntra,
		Claims: tenants.ClaimMapping{Subject: "oid", Email: "preferred_username", Groups: "roles", Scopes: "scp", Agent: "azp"},
		Note:   "Requires v2.0 access tokens (accessTokenAcceptedVersion: 2); the audience is the API's application id.",
	},
	// Auth0, default "Auth0" access token profile: typ JWT, iss
	// https://{domain}/ (trailing slash), aud the API identifier (an array
	// also naming /userinfo when openid was requested), azp the client id,
	// scope a space-separated string, no jti. With RBAC and "Add
	// Permissions in the Access Token" a permissions array is added; scope
	// already holds the granted subset, so Scopes stays on scope. Groups
	// or roles need a custom claim added by an Action; "groups" is the
	// name we expect. An API switched to the "RFC 9068" profile types
	// tokens at+jwt and uses client_id instead of azp: pick the generic
	// preset for it.
	{
		Name:   PresetAuth0,
		Claims: tenants.ClaimMapping{Subject: "sub", Email: "email", Groups: "groups", Scopes: "scope", Agent: "azp"},
		Note:   "Default Auth0 token profile; for the RFC 9068 profile use the generic preset. Add email and groups with an Action.",
	},
	// Keycloak: header typ JWT (and a payload claim typ "Bearer"; ID tokens
	// have typ "ID", which we refuse), iss https://{host}/realms/{realm},
	// sub the user id, azp the client id, scope a space-separated string,
	// email and preferred_username from the default scopes. groups only
	// with a "Group Membership" mapper named groups; the aud claim needs an
	// "Audience" mapper naming the MCP URL (by default aud is "account").
	{
		Name:   PresetKeycloak,
		Claims: tenants.ClaimMapping{Subject: "sub", Email: "email", Groups: "groups", Scopes: "scope", Agent: "azp"},
		Note:   "Add an Audience mapper for the MCP URL and a Group Membership mapper named groups.",
	},
	// Google: OAuth access tokens issued by Google (ya29.…) are OPAQUE and
	// can't be verified as JWTs at all. What Google does sign are
	// ID-token-shaped JWTs: service account / Workload Identity ID tokens
	// minted for a chosen audience (iss https://accounts.google.com, aud
	// the requested audience — set it to the MCP URL —, sub the account's
	// numeric id, azp, email, typ JWT, no nonce), and IAP assertions (iss
	// https://cloud.google.com/iap, ES256, their own JWKS). So this preset
	// is for workloads presenting such JWTs, and relies on the audience
	// check plus the ID-token trait checks (nonce, aud == azp) to refuse
	// ID tokens from user sign-ins. There are no scopes or groups in these
	// tokens: policies must rely on subject and email.
	{
		Name:   PresetGoogle,
		Claims: tenants.ClaimMapping{Subject: "sub", Email: "email", Agent: "azp"},
		Note:   "Only Google-signed JWTs minted for the MCP URL as audience (service account or Workload Identity ID tokens, IAP); Google access tokens are opaque.",
	},
}

// Presets returns every preset, generic first. The slice is a copy.
func Presets() []Preset { return append([]Preset(nil), presets...) }

// PresetNamed returns the preset called name and whether it exists.
func PresetNamed(name string) (Preset, bool) {
	for _, p := range presets {
		if p.Name == name {
			return p, true
		}
	}
	return Preset{}, false
}

// effectiveClaims fills the empty fields of m from the registration's
// preset (generic when the name is empty or unknown).
func EffectiveClaims(preset string, m tenants.ClaimMapping) tenants.ClaimMapping {
	p := &presets[0]
	for i := range presets {
		if presets[i].Name == preset {
			p = &presets[i]
			break
		}
	}
	d := p.Claims
	if m.Subject == "" {
		m.Subject = d.Subject
	}
	if m.Email == "" {
		m.Email = d.Email
	}
	if m.Groups == "" {
		m.Groups = d.Groups
	}
	if m.Scopes == "" {
		m.Scopes = d.Scopes
	}
	if m.Agent == "" {
		m.Agent = d.Agent
	}
	return m
}
