package tenants

import "slices"

// IdPPreset is what Locksmith knows about one family of identity providers:
// which claims of its access tokens name the user, the user's email,
// groups, scopes and the agent (client), and whether its access tokens
// carry the RFC 9068 header typ "at+jwt". These are the single source of
// those facts; the Token A verifier and the console both read them from
// here. Notes says what an admin must configure at the IdP for the mapping
// to hold, and where a fact is uncertain.
type IdPPreset struct {
	// Name is the value stored in IdP.Preset.
	Name string
	// Label is the display name.
	Label string
	// Claims is the default claim mapping; an empty Groups or Email means
	// the IdP's tokens do not carry that by default.
	Claims ClaimMapping
	// RequireATJWT is true only when the IdP's access tokens are documented
	// to carry typ "at+jwt" in their JOSE header.
	RequireATJWT bool
	// IssuerHint shows the shape of the issuer URL, with placeholders in braces.
	IssuerHint string
	// Notes is advice for the admin, in plain sentences.
	Notes string
}

var idpPresets = []IdPPreset{
	{
		Name:         "generic",
		Label:        "Any OpenID Connect provider (RFC 9068 access tokens)",
		Claims:       ClaimMapping{Subject: "sub", Email: "email", Groups: "groups", Scopes: "scope", Agent: "client_id"},
		RequireATJWT: true,
		IssuerHint:   "https://idp.example.com",
		Notes: "For providers that issue JWT access tokens as RFC 9068 describes: header typ at+jwt, scope as a " +
			"space-separated string, the client in client_id. If your provider's access tokens are plain JWTs " +
			"(typ JWT), turn \"require at+jwt\" off; Locksmith then refuses tokens that look like ID tokens instead.",
	},
	{
		Name:         "okta",
		Label:        "Okta",
		Claims:       ClaimMapping{Subject: "uid", Email: "sub", Groups: "groups", Scopes: "scp", Agent: "cid"},
		RequireATJWT: false,
		IssuerHint:   "https://{yourOktaDomain}/oauth2/default",
		Notes: "Use a custom authorization server (issuer …/oauth2/default or …/oauth2/{id}); access tokens from the " +
			"org authorization server (issuer without /oauth2/…) are meant for Okta's own APIs and can't be validated " +
			"by third parties. Scopes are in scp (an array) and the client id in cid. Okta puts the user's login " +
			"(usually an email address) in sub and the stable Okta user id in uid, so uid is the subject here and " +
			"sub stands in for the email; uid is absent from client-credentials tokens. Groups need a custom \"groups\" " +
			"claim added to the authorization server's access tokens. We have not confirmed that Okta sets typ at+jwt " +
			"in the token header, so \"require at+jwt\" is off. Set the audience to the authorization server's " +
			"audience (api://default by default) or configure it to this tenant's MCP URL.",
	},
	{
		Name:         "entra",
		Label:        "Microsoft Entra ID",
		Claims:       ClaimMapping{Subject: "oid", Email: "preferred_username", Groups: "roles", Scopes: "scp", Agent: "azp"},
		RequireATJWT: false,
		IssuerHint:   "https://login.microsoftonline.com/{tenant-id}/v2.0",
		Notes: "Expose an API in an app registration and set its access token version to 2 " +
			"(requestedAccessTokenVersion: 2 in the manifest); v1 tokens have the issuer https://sts.windows.net/{tenant-id}/ " +
			"and the client in appid instead of azp. The audience of v2 tokens is the API's application (client) ID, " +
			"so enter that as the audience. Delegated scopes are in scp (a space-separated string); app roles are in " +
			"roles (an array), also for users assigned to them. oid is the stable user id across apps (sub is " +
			"pairwise per app). preferred_username is usually the UPN and is not a verified email address. The groups " +
			"claim, if enabled, holds group object ids and is omitted above 200 groups (overage). Entra access tokens " +
			"carry typ JWT, not at+jwt. Tokens issued for Microsoft Graph can't be validated by anyone but Graph.",
	},
	{
		Name:         "auth0",
		Label:        "Auth0",
		Claims:       ClaimMapping{Subject: "sub", Email: "email", Groups: "permissions", Scopes: "scope", Agent: "azp"},
		RequireATJWT: false,
		IssuerHint:   "https://{your-tenant}.auth0.com/ (with the trailing slash)",
		Notes: "Create an API whose identifier is this tenant's MCP URL (or enter the identifier as the audience); " +
			"without an audience Auth0 issues opaque access tokens. The issuer ends with a slash. Scopes are in scope " +
			"(a space-separated string), the client in azp. permissions (an array) appears when RBAC and \"Add " +
			"Permissions in the Access Token\" are on for the API. Access tokens carry no email unless an Action adds " +
			"a namespaced claim; enter that claim name as the email claim. typ is at+jwt only when the API's token " +
			"dialect is rfc9068_profile (or rfc9068_profile_authz); with that dialect, turn \"require at+jwt\" on and " +
			"set the agent claim to client_id.",
	},
	{
		Name:         "keycloak",
		Label:        "Keycloak",
		Claims:       ClaimMapping{Subject: "sub", Email: "email", Groups: "groups", Scopes: "scope", Agent: "azp"},
		RequireATJWT: false,
		IssuerHint:   "https://{host}/realms/{realm}",
		Notes: "Scopes are in scope (a space-separated string), the client in azp. groups needs a \"Group Membership\" " +
			"mapper on a client scope (turn \"Full group path\" off for plain names); realm roles are in " +
			"realm_access.roles instead. Add an audience mapper so aud contains this tenant's MCP URL. Keycloak's " +
			"access tokens carry header typ JWT and a typ claim of \"Bearer\", not at+jwt. Lightweight access tokens " +
			"(Keycloak 24+) may leave out email and other claims.",
	},
	{
		Name:         "google",
		Label:        "Google",
		Claims:       ClaimMapping{Subject: "sub", Email: "email", Groups: "", Scopes: "scope", Agent: "azp"},
		RequireATJWT: false,
		IssuerHint:   "https://accounts.google.com",
		Notes: "Google's OAuth access tokens are opaque, not JWTs, so they can't be Token A. This preset only fits " +
			"Google-signed JWTs such as ID tokens (for example for a service account, or minted through Workload " +
			"Identity Federation) whose aud is set to this tenant's MCP URL. Those tokens carry no scopes and no " +
			"groups, so required scopes can't be used. They have typ JWT and no at+jwt header.",
	},
}

// IdPPresets returns the claim-mapping presets for IdP registrations, in
// display order. The slice is a copy.
func IdPPresets() []IdPPreset { return slices.Clone(idpPresets) }

// LookupIdPPreset returns the IdP preset called name (generic, okta, entra,
// auth0, keycloak or google).
func LookupIdPPreset(name string) (IdPPreset, bool) {
	for _, p := range idpPresets {
		if p.Name == name {
			return p, true
		}
	}
	return IdPPreset{}, false
}

// UpstreamPresetCustom is the preset name of an upstream entered by hand.
const UpstreamPresetCustom = "custom"

// UpstreamPreset describes a common upstream OAuth provider: its endpoints,
// what its authorization server supports and the quirks the token broker
// and the admin must know. Endpoints with placeholders in braces (a tenant
// or domain) must be edited before use. Where a fact is not documented or we
// are not sure, Notes says so.
type UpstreamPreset struct {
	Name  string
	Label string
	// BaseURL is the API's base URL ("" when it differs per customer).
	BaseURL       string
	Issuer        string
	AuthorizeURL  string
	TokenURL      string
	RevocationURL string
	// PKCE is true when the provider documents PKCE (S256) support.
	PKCE bool
	// RefreshNarrows is true when a refresh may ask for fewer scopes than
	// were granted.
	RefreshNarrows bool
	// Scopes are typical scopes to offer; edit to taste.
	Scopes []string
	// ScopeParam is the authorization request parameter that carries the
	// user's scopes: "scope", or "user_scope" for Slack user tokens.
	ScopeParam string
	// AuthParams are extra parameters of the authorization request.
	AuthParams map[string]string
	// Notes lists quirks, in plain sentences.
	Notes string
	// DocsURL is the provider's OAuth documentation.
	DocsURL string
}

var upstreamPresets = []UpstreamPreset{
	{
		Name:         "github",
		Label:        "GitHub",
		BaseURL:      "https://api.github.com",
		AuthorizeURL: "https://github.com/login/oauth/authorize",
		TokenURL:     "https://github.com/login/oauth/access_token",
		PKCE:         true,
		Scopes:       []string{"repo", "read:user", "user:email", "read:org", "workflow", "gist"},
		ScopeParam:   "scope",
		Notes: "OAuth app tokens don't expire and come without a refresh token, so they can't be narrowed or " +
			"rotated; GitHub Apps ignore scopes (permissions are set on the app) and issue 8-hour user tokens with " +
			"a 6-month refresh token only when \"expire user authorization tokens\" is enabled — each refresh returns " +
			"a new refresh token. Refresh can't narrow scopes. The token endpoint answers form-encoded unless the " +
			"request sends Accept: application/json. There is no RFC 7009 endpoint: revoke with DELETE " +
			"https://api.github.com/applications/{client_id}/grant (basic auth with the client credentials). PKCE " +
			"(S256) is supported since July 2025.",
		DocsURL: "https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps",
	},
	{
		Name:          "google",
		Label:         "Google",
		BaseURL:       "https://www.googleapis.com",
		Issuer:        "https://accounts.google.com",
		AuthorizeURL:  "https://accounts.google.com/o/oauth2/v2/auth",
		TokenURL:      "https://oauth2.googleapis.com/token",
		RevocationURL: "https://oauth2.googleapis.com/revoke",
		PKCE:          true,
		Scopes: []string{"openid", "email", "profile", "https://www.googleapis.com/auth/drive.readonly",
			"https://www.googleapis.com/auth/calendar.readonly", "https://www.googleapis.com/auth/gmail.readonly"},
		ScopeParam: "scope",
		AuthParams: map[string]string{"access_type": "offline", "prompt": "consent"},
		Notes: "A refresh token is only returned with access_type=offline, and only on first consent unless " +
			"prompt=consent forces the consent screen again. Access tokens live one hour. Refresh tokens of apps " +
			"whose consent screen is in \"Testing\" status expire after 7 days, and Google keeps a limited number " +
			"of refresh tokens per user and client (older ones stop working). We have not confirmed that a refresh " +
			"can narrow scopes, so narrowing is off. APIs live on several hosts (www.googleapis.com, " +
			"gmail.googleapis.com, …); set the base URL of the API you call.",
		DocsURL: "https://developers.google.com/identity/protocols/oauth2/web-server",
	},
	{
		Name:         "slack",
		Label:        "Slack",
		BaseURL:      "https://slack.com/api",
		AuthorizeURL: "https://slack.com/oauth/v2/authorize",
		TokenURL:     "https://slack.com/api/oauth.v2.access",
		Scopes:       []string{"channels:read", "channels:history", "chat:write", "users:read", "search:read"},
		ScopeParam:   "user_scope",
		Notes: "Locksmith acts for a user, so scopes go in user_scope (scope is for bot scopes) and the user token " +
			"comes back nested in authed_user.access_token of the oauth.v2.access response, which answers HTTP 200 " +
			"with \"ok\": false on errors. Slack documents scope lists as comma-separated. Tokens don't expire " +
			"unless token rotation is enabled for the app; then access tokens last 12 hours and each refresh " +
			"returns a new refresh token. Refresh can't narrow scopes. Revocation is auth.revoke " +
			"(https://slack.com/api/auth.revoke, called with the token itself), not RFC 7009. We are not sure " +
			"Slack supports PKCE for confidential clients, so PKCE is off.",
		DocsURL: "https://api.slack.com/authentication/oauth-v2",
	},
	{
		Name:         "atlassian",
		Label:        "Atlassian (Jira, Confluence)",
		BaseURL:      "https://api.atlassian.com",
		AuthorizeURL: "https://auth.atlassian.com/authorize",
		TokenURL:     "https://auth.atlassian.com/oauth/token",
		Scopes: []string{"offline_access", "read:me", "read:jira-work", "write:jira-work", "read:jira-user",
			"read:confluence-content.all"},
		ScopeParam: "scope",
		AuthParams: map[string]string{"audience": "api.atlassian.com", "prompt": "consent"},
		Notes: "OAuth 2.0 (3LO) needs audience=api.atlassian.com and prompt=consent on the authorization request, " +
			"and the offline_access scope for a refresh token. Refresh tokens rotate: each refresh returns a new one " +
			"and the old one stops working after a short grace period, so refreshes must be single-flight. API " +
			"calls go to https://api.atlassian.com/ex/jira/{cloudid}/… (or /ex/confluence/{cloudid}/…), where the " +
			"cloud id comes from https://api.atlassian.com/oauth/token/accessible-resources. There is no public " +
			"revocation endpoint (users revoke in their account settings). PKCE is not documented, so it is off.",
		DocsURL: "https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/",
	},
	{
		Name:           "microsoft-graph",
		Label:          "Microsoft Graph",
		BaseURL:        "https://graph.microsoft.com/v1.0",
		AuthorizeURL:   "https://login.microsoftonline.com/{tenant-id}/oauth2/v2.0/authorize",
		TokenURL:       "https://login.microsoftonline.com/{tenant-id}/oauth2/v2.0/token",
		PKCE:           true,
		RefreshNarrows: true,
		Scopes:         []string{"offline_access", "User.Read", "Mail.Read", "Calendars.Read", "Files.Read", "Sites.Read.All"},
		ScopeParam:     "scope",
		Notes: "Replace {tenant-id} with the directory's tenant id (or organizations/common for multi-tenant apps). " +
			"The offline_access scope is needed for a refresh token. A refresh may ask for any subset of the " +
			"consented scopes, so narrowing works; each refresh also returns a new refresh token (use the newest). " +
			"There is no RFC 7009 revocation endpoint; an admin revokes sessions with Graph's " +
			"revokeSignInSessions. When the tenant's IdP is Entra ID, token exchange with the On-Behalf-Of variant " +
			"(auth mode token_exchange, variant entra_obo) avoids a separate consent.",
		DocsURL: "https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow",
	},
	{
		Name:          "salesforce",
		Label:         "Salesforce",
		AuthorizeURL:  "https://login.salesforce.com/services/oauth2/authorize",
		TokenURL:      "https://login.salesforce.com/services/oauth2/token",
		RevocationURL: "https://login.salesforce.com/services/oauth2/revoke",
		PKCE:          true,
		Scopes:        []string{"api", "refresh_token", "id", "openid"},
		ScopeParam:    "scope",
		Notes: "Set the base URL to your org's My Domain (https://{domain}.my.salesforce.com); the token response " +
			"also names the org's instance_url, which is where API calls must go. Use test.salesforce.com (or the " +
			"My Domain) for the endpoints of a sandbox. refresh_token (or offline_access) is needed for a refresh " +
			"token; refresh tokens don't rotate unless rotation is enabled on the connected app, and their " +
			"lifetime is set there too. We are not sure a refresh can narrow scopes, so narrowing is off.",
		DocsURL: "https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_web_server_flow.htm",
	},
	{
		Name:         "hubspot",
		Label:        "HubSpot",
		BaseURL:      "https://api.hubapi.com",
		AuthorizeURL: "https://app.hubspot.com/oauth/authorize",
		TokenURL:     "https://api.hubapi.com/oauth/v1/token",
		Scopes: []string{"oauth", "crm.objects.contacts.read", "crm.objects.contacts.write",
			"crm.objects.companies.read", "crm.objects.deals.read"},
		ScopeParam: "scope",
		Notes: "The requested scopes must match the app's configured required scopes (optional_scope carries the " +
			"optional ones). The client id and secret go in the form body of the token request. Access tokens " +
			"last 30 minutes; refresh tokens don't expire and don't rotate. There is no RFC 7009 endpoint: a " +
			"refresh token is revoked with DELETE https://api.hubapi.com/oauth/v1/refresh-tokens/{token}. PKCE is " +
			"not documented, so it is off. Refresh can't narrow scopes.",
		DocsURL: "https://developers.hubspot.com/docs/api/oauth-quickstart-guide",
	},
	{
		Name:          "linear",
		Label:         "Linear",
		BaseURL:       "https://api.linear.app",
		AuthorizeURL:  "https://linear.app/oauth/authorize",
		TokenURL:      "https://api.linear.app/oauth/token",
		RevocationURL: "https://api.linear.app/oauth/revoke",
		PKCE:          true,
		Scopes:        []string{"read", "write", "issues:create", "comments:create"},
		ScopeParam:    "scope",
		Notes: "The API is GraphQL at https://api.linear.app/graphql. Linear documents the scope list as " +
			"comma-separated. Older apps got long-lived access tokens without refresh tokens; newer apps get " +
			"refresh tokens with short-lived access tokens — check the app's settings. We are not sure the revoke " +
			"endpoint follows RFC 7009 exactly, nor whether refresh can narrow scopes (off).",
		DocsURL: "https://developers.linear.app/docs/oauth/authentication",
	},
	{
		Name:         "notion",
		Label:        "Notion",
		BaseURL:      "https://api.notion.com/v1",
		AuthorizeURL: "https://api.notion.com/v1/oauth/authorize",
		TokenURL:     "https://api.notion.com/v1/oauth/token",
		ScopeParam:   "scope",
		AuthParams:   map[string]string{"owner": "user"},
		Notes: "Notion has no scopes: what a token may do is set by the integration's capabilities and by the " +
			"pages the user shares during consent, so tools can't be narrowed by scope. The authorization request " +
			"needs owner=user; the token request uses HTTP Basic authentication with a JSON body. Every API call " +
			"needs a Notion-Version header. We are not sure about refresh tokens and revocation for public " +
			"integrations (historically tokens didn't expire), and PKCE is not documented, so it is off.",
		DocsURL: "https://developers.notion.com/docs/authorization",
	},
}

// UpstreamPresets returns the presets for common upstream providers, in
// display order. The slice and its maps are copies.
func UpstreamPresets() []UpstreamPreset {
	out := make([]UpstreamPreset, len(upstreamPresets))
	for i, p := range upstreamPresets {
		out[i] = p.clone()
	}
	return out
}

// LookupUpstreamPreset returns the upstream preset called name.
func LookupUpstreamPreset(name string) (UpstreamPreset, bool) {
	for _, p := range upstreamPresets {
		if p.Name == name {
			return p.clone(), true
		}
	}
	return UpstreamPreset{}, false
}

func (p UpstreamPreset) clone() UpstreamPreset {
	p.Scopes = slices.Clone(p.Scopes)
	if p.AuthParams != nil {
		m := make(map[string]string, len(p.AuthParams))
		for k, v := range p.AuthParams {
			m[k] = v
		}
		p.AuthParams = m
	}
	return p
}

// Input returns an UpstreamInput prefilled from the preset (an oauth2 REST
// upstream), for a form to start from; slug, name, client id and secret
// are left for the admin.
func (p UpstreamPreset) Input() UpstreamInput {
	p = p.clone()
	return UpstreamInput{
		Kind: UpstreamREST, BaseURL: p.BaseURL, AuthMode: AuthOAuth2, Preset: p.Name, Issuer: p.Issuer,
		AuthorizeURL: p.AuthorizeURL, TokenURL: p.TokenURL, RevocationURL: p.RevocationURL,
		ScopesOffered: p.Scopes, PKCE: p.PKCE, RefreshNarrows: p.RefreshNarrows,
		ScopeParam: p.ScopeParam, AuthParams: p.AuthParams,
	}
}
