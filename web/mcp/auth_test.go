package mcp_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/idp"
)

const listBody = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`

// claimsFor are valid Token A claims for tenant A's endpoint.
func (b *testBundle) claimsFor() map[string]any {
	user, _ := b.idpA.LookupUser(idp.UsernameEngineer)
	now := time.Now()
	return map[string]any{
		"iss": b.idpA.URL(), "sub": user.Subject, "aud": b.resource, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(),
		"jti": "forged-1", "client_id": idp.ClientMCPAgent, "scope": endpointScope, "email": user.Email,
	}
}

func signRS256(t *testing.T, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", kid))
	require.NoError(t, err)
	payload, err := json.Marshal(claims)
	require.NoError(t, err)
	jws, err := s.Sign(payload)
	require.NoError(t, err)
	out, err := jws.CompactSerialize()
	require.NoError(t, err)
	return out
}

func b64(v any) string {
	j, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(j)
}

func TestTokenARefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	kid := b.idpA.CurrentKeyID()

	pub := b.idpA.JWKS().Keys[0].Key.(*rsa.PublicKey)
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	hsInput := b64(map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": kid}) + "." + b64(b.claimsFor())
	mac := hmac.New(sha256.New, pubPEM)
	mac.Write([]byte(hsInput))
	hs256 := hsInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))

	algNone := b64(map[string]any{"alg": "none", "typ": "at+jwt", "kid": kid}) + "." + b64(b.claimsFor()) + "."

	idToken, err := b.idpA.MintIDToken(idp.MintRequest{User: idp.UsernameEngineer, Audience: []string{b.resource}, Extra: map[string]any{"scope": endpointScope}})
	require.NoError(t, err)
	fromB, err := b.idpB.MintAccessToken(idp.MintRequest{User: idp.UsernameEngineer, Audience: []string{b.resource}, Scopes: []string{endpointScope}})
	require.NoError(t, err)

	tests := []struct {
		name      string
		auth      string // full Authorization header; "" sends none
		status    int
		errCode   string // the challenge's error=, "" for none
		inMessage string
	}{
		{name: "no token", auth: "", status: 401, inMessage: "needs an access token"},
		{name: "other scheme", auth: "Basic dXNlcjpwYXNz", status: 401, errCode: "invalid_token", inMessage: "Bearer scheme"},
		{name: "empty bearer", auth: "Bearer ", status: 401, errCode: "invalid_token"},
		{name: "malformed", auth: "Bearer not-a-jwt", status: 401, errCode: "invalid_token"},
		{name: "malformed three segments", auth: "Bearer a.b.c", status: 401, errCode: "invalid_token"},
		{name: "expired", auth: "Bearer " + b.tokenA(t, func(r *idp.MintRequest) { r.Lifetime = -time.Hour }), status: 401, errCode: "invalid_token", inMessage: "expired"},
		{name: "nbf in the future", auth: "Bearer " + b.tokenA(t, func(r *idp.MintRequest) { r.Extra = map[string]any{"nbf": time.Now().Add(time.Hour)} }), status: 401, errCode: "invalid_token"},
		{name: "wrong issuer", auth: "Bearer " + b.tokenA(t, func(r *idp.MintRequest) { r.Extra = map[string]any{"iss": "https://evil.example"} }), status: 401, errCode: "invalid_token"},
		{name: "wrong audience: tenant B's URL at tenant A", auth: "Bearer " + b.tokenA(t, func(r *idp.MintRequest) { r.Audience = []string{b.resB} }), status: 401, errCode: "invalid_token"},
		{name: "token from tenant B's IdP at tenant A", auth: "Bearer " + fromB, status: 401, errCode: "invalid_token"},
		{name: "another key with the same kid", auth: "Bearer " + signRS256(t, otherKey, kid, b.claimsFor()), status: 401, errCode: "invalid_token"},
		{name: "alg none", auth: "Bearer " + algNone, status: 401, errCode: "invalid_token"},
		{name: "HS256 signed with the RSA public key", auth: "Bearer " + hs256, status: 401, errCode: "invalid_token"},
		{name: "ID token", auth: "Bearer " + idToken, status: 401, errCode: "invalid_token"},
		{name: "missing scope", auth: "Bearer " + b.tokenA(t, func(r *idp.MintRequest) { r.Scopes = []string{"openid"} }), status: 403, errCode: "insufficient_scope", inMessage: endpointScope},
		{name: "valid", auth: "Bearer " + b.tokenA(t), status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hdr := map[string]string{}
			if tt.auth != "" {
				hdr["Authorization"] = tt.auth
			}
			resp, body := rpc(t, http.MethodPost, b.resource, listBody, hdr)
			require.Equal(t, tt.status, resp.StatusCode, body)
			if tt.status == 200 {
				return
			}
			ch := resp.Header.Get("WWW-Authenticate")
			require.True(t, strings.HasPrefix(ch, "Bearer "), ch)
			require.Contains(t, ch, `resource_metadata="`+b.base+"/.well-known/oauth-protected-resource/t/"+b.tenantA.Slug+`/mcp"`)
			require.Contains(t, ch, `scope="`+endpointScope+`"`)
			if tt.errCode == "" {
				require.NotContains(t, ch, "error=")
			} else {
				require.Contains(t, ch, `error="`+tt.errCode+`"`)
				require.Contains(t, ch, "error_description=")
			}
			var e struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			require.NoError(t, json.Unmarshal([]byte(body), &e), body)
			require.NotEmpty(t, e.Description)
			if tt.inMessage != "" {
				require.Contains(t, e.Description, tt.inMessage)
			}
		})
	}
}

func TestUnknownKidRefetchesOnceThenRateLimited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, body := rpc(t, http.MethodPost, b.resource, listBody, map[string]string{"Authorization": "Bearer " + b.tokenA(t)})
	require.Equal(t, 200, resp.StatusCode, body)
	warm := b.idpA.JWKSFetchCount()

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	for i, kid := range []string{"unknown-kid-1", "unknown-kid-2", "unknown-kid-3"} {
		resp, body := rpc(t, http.MethodPost, b.resource, listBody, map[string]string{"Authorization": "Bearer " + signRS256(t, key, kid, b.claimsFor())})
		require.Equal(t, 401, resp.StatusCode, body)
		require.Contains(t, resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`)
		require.Equal(t, warm+1, b.idpA.JWKSFetchCount(), "after unknown kid %d", i+1)
	}
}

func TestTokenInQueryRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, body := rpc(t, http.MethodPost, b.resource+"?access_token="+b.tokenA(t), listBody, nil)
	require.Equal(t, 400, resp.StatusCode, body)
	require.Contains(t, resp.Header.Get("WWW-Authenticate"), `error="invalid_request"`)
	require.Contains(t, body, "Authorization: Bearer")
}

func TestProtectedResourceMetadata(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, body := rpc(t, http.MethodGet, b.base+"/.well-known/oauth-protected-resource/t/"+b.tenantA.Slug+"/mcp", "", nil)
	require.Equal(t, 200, resp.StatusCode, body)
	var prm map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &prm))
	require.Equal(t, b.resource, prm["resource"])
	require.Equal(t, []any{b.idpA.URL()}, prm["authorization_servers"])
	require.Equal(t, []any{endpointScope}, prm["scopes_supported"])
	require.Equal(t, []any{"header"}, prm["bearer_methods_supported"])
	require.NotContains(t, body, "offline_access")

	// Tenant B's metadata names tenant B's IdP.
	_, body = rpc(t, http.MethodGet, b.base+"/.well-known/oauth-protected-resource/t/"+b.tenantB.Slug+"/mcp", "", nil)
	require.Contains(t, body, b.idpB.URL())
	require.NotContains(t, body, b.idpA.URL())

	for _, p := range []string{
		"/.well-known/oauth-protected-resource/t/no-such-tenant/mcp",
		"/t/no-such-tenant/mcp",
		"/t/" + b.tenantA.Slug + "/mcp/extra",
	} {
		resp, body := rpc(t, http.MethodPost, b.base+p, listBody, map[string]string{"Authorization": "Bearer " + b.tokenA(t)})
		if strings.HasPrefix(p, "/.well-known") {
			resp, body = rpc(t, http.MethodGet, b.base+p, "", nil)
		}
		require.Equal(t, 404, resp.StatusCode, "%s: %s", p, body)
		require.Empty(t, resp.Header.Get("WWW-Authenticate"), p)
	}
}

func TestHostAndOrigin(t *testing.T) {
	t.Parallel()
	b := setup(t)
	auth := "Bearer " + b.tokenA(t)
	host := strings.TrimPrefix(b.base, "http://")
	tests := []struct {
		name   string
		hdr    map[string]string
		status int
	}{
		{"foreign Host", map[string]string{"Host": "evil.example", "Authorization": auth}, http.StatusMisdirectedRequest},
		{"rebound Host with our port", map[string]string{"Host": "attacker.example:" + strings.Split(host, ":")[1], "Authorization": auth}, http.StatusMisdirectedRequest},
		{"foreign Origin", map[string]string{"Origin": "https://evil.example", "Authorization": auth}, http.StatusForbidden},
		{"null Origin", map[string]string{"Origin": "null", "Authorization": auth}, http.StatusForbidden},
		{"own Origin", map[string]string{"Origin": b.base, "Authorization": auth}, http.StatusOK},
		{"no Origin", map[string]string{"Authorization": auth}, http.StatusOK},
		{"upper-case Host", map[string]string{"Host": strings.ToUpper(host), "Authorization": auth}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body := rpc(t, http.MethodPost, b.resource, listBody, tt.hdr)
			require.Equal(t, tt.status, resp.StatusCode, body)
		})
	}
	// The metadata is public to every origin but still checks Host.
	resp, _ := rpc(t, http.MethodGet, b.base+"/.well-known/oauth-protected-resource/t/"+b.tenantA.Slug+"/mcp", "", map[string]string{"Origin": "https://any.example"})
	require.Equal(t, 200, resp.StatusCode)
	resp, _ = rpc(t, http.MethodGet, b.base+"/.well-known/oauth-protected-resource/t/"+b.tenantA.Slug+"/mcp", "", map[string]string{"Host": "evil.example"})
	require.Equal(t, http.StatusMisdirectedRequest, resp.StatusCode)
}
