package mcp

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/locksmithhq/locksmith/tenants/tokena"
)

// authenticate checks Token A for snap's tenant. On failure it writes the
// 400/401/403/503 answer and returns false.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request, snap *snapshot) (*reqState, bool) {
	ctx := r.Context()
	rid := requestID(w)
	scope := func() string { return strings.Join(challengeScopes(snap.idp.RequiredScopes), " ") }
	if r.URL.RawQuery != "" && (r.URL.Query().Has("access_token") || r.URL.Query().Has("token")) {
		h.challenge(w, snap, http.StatusBadRequest, "invalid_request",
			"never put the access token in the URL (it ends up in logs); send it as the header Authorization: Bearer <token>", scope())
		return nil, false
	}
	raw, problem := bearerToken(r)
	switch {
	case problem == "" && raw == "":
		h.challenge(w, snap, http.StatusUnauthorized, "",
			"this MCP endpoint needs an access token from "+snap.idp.Issuer+" for "+snap.resource+
				"; send it as Authorization: Bearer <token> (the resource metadata at "+snap.prmURL+" says where to get one)", scope())
		return nil, false
	case problem != "":
		h.challenge(w, snap, http.StatusUnauthorized, "invalid_token", problem, scope())
		return nil, false
	}
	p, err := h.cfg.Verifier.Verify(ctx, snap.idp, snap.audience, raw)
	if err != nil {
		var te *tokena.Error
		switch {
		case errors.Is(err, tokena.ErrUnavailable):
			h.log.WarnContext(ctx, "mcp token check unavailable", "tenant_id", snap.tenant.ID, "request_id", rid, "err", err)
			w.Header().Set("Retry-After", "30")
			writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable",
				"the signing keys of "+snap.idp.Issuer+" can't be fetched right now, so the token can't be checked; retry in a minute (request id "+rid+")", "")
		case errors.As(err, &te):
			h.log.InfoContext(ctx, "mcp token refused", "tenant_id", snap.tenant.ID, "request_id", rid, "reason", string(te.Reason))
			h.challenge(w, snap, http.StatusUnauthorized, "invalid_token", te.PublicMessage(), scope())
		case errors.Is(err, tokena.ErrInvalidToken):
			h.challenge(w, snap, http.StatusUnauthorized, "invalid_token", "the access token was refused", scope())
		default:
			h.log.ErrorContext(ctx, "mcp token check failed", "tenant_id", snap.tenant.ID, "request_id", rid, "err", err)
			writeOAuthError(w, http.StatusInternalServerError, "server_error",
				"something went wrong on our side while checking the token; quote request id "+rid+" if you contact support", "")
		}
		return nil, false
	}
	if missing := p.MissingScopes(snap.idp.RequiredScopes...); len(missing) > 0 {
		h.challenge(w, snap, http.StatusForbidden, "insufficient_scope",
			"the access token lacks the scopes "+strings.Join(missing, " ")+"; get a new token that also grants them (all scopes this endpoint needs are listed in scope)", scope())
		return nil, false
	}
	return &reqState{snap: snap, principal: p, rawToken: raw, tokenKey: tokenKey(raw), requestID: rid}, true
}

// bearerToken extracts the token of the one Authorization: Bearer header.
// It returns ("", "") when no bearer credentials were sent, and a problem
// phrased for the caller when the header is malformed.
func bearerToken(r *http.Request) (token, problem string) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return "", ""
	}
	if len(vals) > 1 {
		return "", "send exactly one Authorization header"
	}
	scheme, tok, _ := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", "the Authorization header must use the Bearer scheme: Authorization: Bearer <token>"
	}
	tok = strings.TrimSpace(tok)
	switch {
	case tok == "":
		return "", "the Authorization header carries no token after Bearer"
	case strings.ContainsAny(tok, " \t"):
		return "", "the bearer token must be a single value without spaces"
	}
	return tok, ""
}

// challengeScopes is what goes in scope= and scopes_supported: the
// registration's required scopes, never offline_access.
func challengeScopes(required []string) []string {
	return slices.DeleteFunc(slices.Clone(required), func(s string) bool { return s == "offline_access" || s == "" })
}

// challenge writes a Bearer challenge (RFC 6750, RFC 9728) with a JSON body
// saying what is wrong. errCode "" means no credentials were sent, so the
// challenge carries no error attribute.
func (h *Handler) challenge(w http.ResponseWriter, snap *snapshot, status int, errCode, msg, scope string) {
	var b strings.Builder
	b.WriteString("Bearer ")
	if errCode != "" {
		b.WriteString(`error="` + errCode + `", error_description="` + quotable(msg) + `", `)
	}
	b.WriteString(`resource_metadata="` + snap.prmURL + `"`)
	if scope != "" {
		b.WriteString(`, scope="` + quotable(scope) + `"`)
	}
	w.Header().Set("WWW-Authenticate", b.String())
	code := errCode
	if code == "" {
		code = "unauthorized"
	}
	writeOAuthError(w, status, code, msg, snap.prmURL)
}

// quotable makes s safe inside an RFC 6750 quoted attribute value
// (%x20-21 / %x23-5B / %x5D-7E).
func quotable(s string) string {
	b := make([]byte, 0, len(s))
	for _, c := range []byte(s) {
		switch {
		case c == '"':
			b = append(b, '\'')
		case c == '\\':
			b = append(b, '/')
		case c < 0x20 || c > 0x7e:
			if len(b) == 0 || b[len(b)-1] != '\'' {
				b = append(b, '\'')
			}
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// oauthError is the JSON body of refusals outside JSON-RPC.
type oauthError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ResourceMetadata string `json:"resource_metadata,omitempty"`
	RequestID        string `json:"request_id,omitempty"`
}

func writeOAuthError(w http.ResponseWriter, status int, code, msg, prm string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		// A temporary failure (a database or IdP outage): say when to retry.
		w.Header().Set("Retry-After", "5")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(oauthError{Error: code, ErrorDescription: msg, ResourceMetadata: prm, RequestID: w.Header().Get("X-Request-Id")})
}

// protectedResourceMetadata is the RFC 9728 document of one tenant's endpoint.
type protectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
}

// serveMetadata serves the tenant's protected resource metadata. It is
// public: any origin may read it.
func (h *Handler) serveMetadata(w http.ResponseWriter, r *http.Request, slug string) {
	if !h.checkHost(w, r) {
		return
	}
	w.Header().Set("Access-Control-Allow-Origin", "*")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		w.Header().Set("Access-Control-Allow-Methods", "GET")
		w.Header().Set("Access-Control-Allow-Headers", "Mcp-Protocol-Version")
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		w.Header().Set("Allow", "GET, HEAD")
		writeOAuthError(w, http.StatusMethodNotAllowed, "method_not_allowed", "the resource metadata is read with GET", "")
		return
	}
	snap, err := h.cache.get(r.Context(), slug)
	if err != nil {
		if errors.Is(err, errNoEndpoint) {
			writeOAuthError(w, http.StatusNotFound, "not_found", "there is no MCP endpoint at this URL", "")
			return
		}
		h.log.ErrorContext(r.Context(), "mcp tenant lookup failed", "err", err, "request_id", requestID(w))
		writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "retry in a few seconds", "")
		return
	}
	scopes := challengeScopes(snap.idp.RequiredScopes)
	if scopes == nil {
		scopes = []string{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_ = json.NewEncoder(w).Encode(protectedResourceMetadata{
		Resource:               snap.resource,
		AuthorizationServers:   []string{snap.idp.Issuer},
		ScopesSupported:        scopes,
		BearerMethodsSupported: []string{"header"},
		ResourceName:           snap.tenant.Name + " tools through Locksmith",
	})
}

// randomID returns 16 random bytes, base64url.
func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
