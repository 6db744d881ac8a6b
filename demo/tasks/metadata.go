package tasks

import (
	"net/http"
)

// ASMetadata is the RFC 8414 authorization server metadata served at
// /.well-known/oauth-authorization-server.
type ASMetadata struct {
	// Issuer is the base URL.
	Issuer string `json:"issuer"`
	// AuthorizationEndpoint is Issuer + "/authorize".
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	// TokenEndpoint is Issuer + "/token".
	TokenEndpoint string `json:"token_endpoint"`
	// RevocationEndpoint is Issuer + "/revoke".
	RevocationEndpoint string `json:"revocation_endpoint"`
	// ScopesSupported lists ScopeRead, ScopeWrite, ScopeDelete.
	ScopesSupported []string `json:"scopes_supported"`
	// ResponseTypesSupported is ["code"].
	ResponseTypesSupported []string `json:"response_types_supported"`
	// ResponseModesSupported is ["query"].
	ResponseModesSupported []string `json:"response_modes_supported"`
	// GrantTypesSupported is ["authorization_code", "refresh_token"].
	GrantTypesSupported []string `json:"grant_types_supported"`
	// CodeChallengeMethodsSupported is ["S256"]; PKCE is required.
	CodeChallengeMethodsSupported []string `json:"code_challenge_methods_supported"`
	// TokenEndpointAuthMethodsSupported is client_secret_basic and
	// client_secret_post.
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	// RevocationEndpointAuthMethodsSupported equals the token endpoint's.
	RevocationEndpointAuthMethodsSupported []string `json:"revocation_endpoint_auth_methods_supported"`
	// AuthorizationResponseIssParameterSupported is true (RFC 9207).
	AuthorizationResponseIssParameterSupported bool `json:"authorization_response_iss_parameter_supported"`
	// ServiceDocumentation points at the OpenAPI document.
	ServiceDocumentation string `json:"service_documentation"`
}

// Metadata returns the RFC 8414 metadata for issuer (a base URL without
// trailing slash).
func Metadata(issuer string) ASMetadata {
	authMethods := []string{"client_secret_basic", "client_secret_post"}
	return ASMetadata{
		Issuer:                                     issuer,
		AuthorizationEndpoint:                      issuer + "/authorize",
		TokenEndpoint:                              issuer + "/token",
		RevocationEndpoint:                         issuer + "/revoke",
		ScopesSupported:                            SupportedScopes(),
		ResponseTypesSupported:                     []string{"code"},
		ResponseModesSupported:                     []string{"query"},
		GrantTypesSupported:                        []string{"authorization_code", "refresh_token"},
		CodeChallengeMethodsSupported:              []string{"S256"},
		TokenEndpointAuthMethodsSupported:          authMethods,
		RevocationEndpointAuthMethodsSupported:     authMethods,
		AuthorizationResponseIssParameterSupported: true,
		ServiceDocumentation:                       issuer + "/openapi.json",
	}
}

func (s *Server) handleASMetadata(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, Metadata(s.issuerFor(r)))
	return nil
}

// protectedResourceMetadata is RFC 9728 metadata for the resource API.
type protectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name"`
	ResourceDocumentation  string   `json:"resource_documentation"`
}

func (s *Server) handlePRMetadata(w http.ResponseWriter, r *http.Request) error {
	iss := s.issuerFor(r)
	writeJSON(w, http.StatusOK, protectedResourceMetadata{
		Resource:               iss,
		AuthorizationServers:   []string{iss},
		ScopesSupported:        SupportedScopes(),
		BearerMethodsSupported: []string{"header"},
		ResourceName:           "Acme Tasks",
		ResourceDocumentation:  iss + "/openapi.json",
	})
	return nil
}

func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) error {
	iss := s.issuerFor(r)
	writeJSON(w, http.StatusOK, map[string]string{
		"name":                   "Acme Tasks",
		"openapi":                iss + "/openapi.json",
		"authorization_server":   iss + "/.well-known/oauth-authorization-server",
		"protected_resource":     iss + "/.well-known/oauth-protected-resource",
		"tasks":                  iss + "/tasks",
		"authorization_endpoint": iss + "/authorize",
	})
	return nil
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(OpenAPIDocument(s.issuerFor(r)))
	return nil
}
