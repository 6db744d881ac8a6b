package idp_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/locksmithhq/locksmith/demo/idp"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	mcpResource      = "https://locksmith.example/t/acme/mcp"
	upstreamResource = "https://api.upstream.example"
)

type testBundle struct {
	idp      *idp.IdP
	client   *http.Client // cookie jar, follows redirects
	ctx      context.Context
	callback string // a loopback redirect URI served by a real server
}

func setup(t *testing.T, configure ...func(*idp.Config)) *testBundle {
	t.Helper()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(transport.CloseIdleConnections)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	client := &http.Client{Transport: transport, Jar: jar, Timeout: 10 * time.Second}

	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "callback reached")
	}))
	t.Cleanup(cb.Close)

	ctx := context.WithValue(t.Context(), oauth2.HTTPClient, client)
	ctx = oidc.ClientContext(ctx, client)
	return &testBundle{
		idp:      idp.NewTestServer(t, configure...),
		client:   client,
		ctx:      ctx,
		callback: cb.URL + "/callback",
	}
}

func (b *testBundle) provider(t *testing.T) *oidc.Provider {
	t.Helper()
	p, err := oidc.NewProvider(b.ctx, b.idp.URL())
	require.NoError(t, err)
	return p
}

// accessTokenVerifier verifies access tokens for audience with a fresh JWKS cache.
func (b *testBundle) accessTokenVerifier(audience string) *oidc.IDTokenVerifier {
	keys := oidc.NewRemoteKeySet(b.ctx, b.idp.JWKSURL())
	return oidc.NewVerifier(b.idp.URL(), keys, &oidc.Config{ClientID: audience, SupportedSigningAlgs: []string{oidc.RS256}})
}

func (b *testBundle) mcpAgent() *oauth2.Config {
	return &oauth2.Config{
		ClientID:    idp.ClientMCPAgent,
		Endpoint:    oauth2.Endpoint{AuthURL: b.idp.AuthorizeURL(), TokenURL: b.idp.TokenURL(), AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: b.callback,
		Scopes:      []string{oidc.ScopeOpenID, "email", "profile", oidc.ScopeOfflineAccess, "mcp:tools"},
	}
}

// login drives the authorization endpoint and the login page as username (empty: press
// Cancel) and returns the query the client's callback received.
func (b *testBundle) login(t *testing.T, cfg *oauth2.Config, username, state string, opts ...oauth2.AuthCodeOption) url.Values {
	t.Helper()
	resp, err := b.client.Get(cfg.AuthCodeURL(state, opts...))
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Equal(t, "/login", resp.Request.URL.Path)
	button := username
	if button == "" {
		button = "cancel"
	}
	require.Contains(t, string(body), `data-testid="login-`+button+`"`)
	authRequestID := resp.Request.URL.Query().Get("authRequestID")
	require.NotEmpty(t, authRequestID)

	form := url.Values{"authRequestID": {authRequestID}, "username": {username}}
	if username == "" {
		form = url.Values{"authRequestID": {authRequestID}, "cancel": {"1"}}
	}
	resp, err = b.client.PostForm(b.idp.URL()+"/login", form)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, b.callback, resp.Request.URL.Scheme+"://"+resp.Request.URL.Host+resp.Request.URL.Path)
	q := resp.Request.URL.Query()
	require.Equal(t, state, q.Get("state"))
	return q
}

type accessClaims struct {
	Subject  string   `json:"sub"`
	ClientID string   `json:"client_id"`
	Scope    string   `json:"scope"`
	JTI      string   `json:"jti"`
	Email    string   `json:"email"`
	Groups   []string `json:"groups"`
	IssuedAt int64    `json:"iat"`
	Act      *struct {
		Subject string `json:"sub"`
	} `json:"act"`
}

func header(t *testing.T, token string) jose.Header {
	t.Helper()
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256})
	require.NoError(t, err)
	return jws.Signatures[0].Protected
}

func typ(t *testing.T, token string) any {
	t.Helper()
	return header(t, token).ExtraHeaders[jose.HeaderType]
}

// verifyAccessToken checks the token with go-oidc for audience and returns its claims.
func (b *testBundle) verifyAccessToken(t *testing.T, token, audience string) accessClaims {
	t.Helper()
	require.Equal(t, "at+jwt", typ(t, token))
	tok, err := b.accessTokenVerifier(audience).Verify(b.ctx, token)
	require.NoError(t, err)
	var c accessClaims
	require.NoError(t, tok.Claims(&c))
	require.NotEmpty(t, c.JTI)
	require.NotZero(t, c.IssuedAt)
	return c
}

func oauthErrorCode(t *testing.T, err error) string {
	t.Helper()
	var re *oauth2.RetrieveError
	require.ErrorAs(t, err, &re)
	return re.ErrorCode
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.provider(t)
	var meta struct {
		Issuer               string   `json:"issuer"`
		JWKSURI              string   `json:"jwks_uri"`
		CodeChallengeMethods []string `json:"code_challenge_methods_supported"`
		GrantTypes           []string `json:"grant_types_supported"`
	}
	require.NoError(t, p.Claims(&meta))
	require.Equal(t, b.idp.URL(), meta.Issuer)
	require.Equal(t, b.idp.JWKSURL(), meta.JWKSURI)
	require.Contains(t, meta.CodeChallengeMethods, "S256")
	require.Contains(t, meta.GrantTypes, idp.GrantTokenExchange)
	require.Contains(t, meta.GrantTypes, idp.GrantClientCredentials)
	require.Contains(t, meta.GrantTypes, idp.GrantRefreshToken)
	require.True(t, strings.HasPrefix(b.idp.URL(), "http://127.0.0.1:"))
}

func TestAuthorizationCodePKCE(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.provider(t)
	cfg := b.mcpAgent()
	verifier := oauth2.GenerateVerifier()
	resource := oauth2.SetAuthURLParam("resource", mcpResource)

	q := b.login(t, cfg, idp.UsernameApprover, "state-1", oauth2.S256ChallengeOption(verifier), oidc.Nonce("nonce-1"), resource)
	tok, err := cfg.Exchange(b.ctx, q.Get("code"), oauth2.VerifierOption(verifier), resource)
	require.NoError(t, err)
	require.NotEmpty(t, tok.RefreshToken)

	t.Run("id token", func(t *testing.T) {
		raw, _ := tok.Extra("id_token").(string)
		idTok, err := p.Verifier(&oidc.Config{ClientID: idp.ClientMCPAgent, SupportedSigningAlgs: []string{oidc.RS256}}).Verify(b.ctx, raw)
		require.NoError(t, err)
		require.Equal(t, idp.UserApprover, idTok.Subject)
		require.Equal(t, "nonce-1", idTok.Nonce)
		var c struct {
			Email  string   `json:"email"`
			Groups []string `json:"groups"`
		}
		require.NoError(t, idTok.Claims(&c))
		require.Equal(t, "approver@acme.example", c.Email)
		require.Equal(t, []string{"approvers", "engineering"}, c.Groups)
		require.NoError(t, idTok.VerifyAccessToken(tok.AccessToken))
	})

	t.Run("access token", func(t *testing.T) {
		c := b.verifyAccessToken(t, tok.AccessToken, mcpResource)
		require.Equal(t, idp.UserApprover, c.Subject)
		require.Equal(t, idp.ClientMCPAgent, c.ClientID)
		require.Equal(t, "openid email profile offline_access mcp:tools", c.Scope)
		require.Equal(t, "approver@acme.example", c.Email)
		require.Equal(t, []string{"approvers", "engineering"}, c.Groups)

		_, err := b.accessTokenVerifier(idp.ClientMCPAgent).Verify(b.ctx, tok.AccessToken)
		require.ErrorContains(t, err, "audience", "aud is the resource, not the client id")
	})

	t.Run("userinfo", func(t *testing.T) {
		info, err := p.UserInfo(b.ctx, oauth2.StaticTokenSource(tok))
		require.NoError(t, err)
		require.Equal(t, idp.UserApprover, info.Subject)
		require.Equal(t, "approver@acme.example", info.Email)
	})

	t.Run("code is single use", func(t *testing.T) {
		_, err := cfg.Exchange(b.ctx, q.Get("code"), oauth2.VerifierOption(verifier))
		require.Equal(t, "invalid_grant", oauthErrorCode(t, err))
	})

	t.Run("refresh", func(t *testing.T) {
		refreshed, err := cfg.TokenSource(b.ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		require.NoError(t, err)
		require.NotEqual(t, tok.AccessToken, refreshed.AccessToken)
		require.NotEqual(t, tok.RefreshToken, refreshed.RefreshToken, "refresh tokens rotate")
		c := b.verifyAccessToken(t, refreshed.AccessToken, mcpResource)
		require.Equal(t, idp.UserApprover, c.Subject)

		_, err = cfg.TokenSource(b.ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		require.Equal(t, "invalid_grant", oauthErrorCode(t, err), "a rotated refresh token is dead")
	})
}

func TestAuthorizationCodeRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.mcpAgent()

	t.Run("wrong PKCE verifier", func(t *testing.T) {
		t.Parallel()
		q := b.login(t, cfg, idp.UsernameEngineer, "s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
		_, err := cfg.Exchange(b.ctx, q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
		require.Equal(t, "invalid_grant", oauthErrorCode(t, err))
	})

	t.Run("missing PKCE verifier", func(t *testing.T) {
		t.Parallel()
		q := b.login(t, cfg, idp.UsernameEngineer, "s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
		_, err := cfg.Exchange(b.ctx, q.Get("code"))
		require.Equal(t, "invalid_request", oauthErrorCode(t, err))
	})

	t.Run("public client without PKCE", func(t *testing.T) {
		t.Parallel()
		q := b.login(t, cfg, idp.UsernameEngineer, "s")
		_, err := cfg.Exchange(b.ctx, q.Get("code"))
		require.Equal(t, "invalid_request", oauthErrorCode(t, err))
	})

	t.Run("resource not granted", func(t *testing.T) {
		t.Parallel()
		v := oauth2.GenerateVerifier()
		q := b.login(t, cfg, idp.UsernameEngineer, "s", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("resource", mcpResource))
		_, err := cfg.Exchange(b.ctx, q.Get("code"), oauth2.VerifierOption(v), oauth2.SetAuthURLParam("resource", upstreamResource))
		require.Equal(t, "invalid_target", oauthErrorCode(t, err))
	})

	t.Run("user cancels", func(t *testing.T) {
		t.Parallel()
		q := b.login(t, cfg, "", "s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
		require.Equal(t, "access_denied", q.Get("error"))
	})

	for _, tc := range []struct{ name, clientID, redirect string }{
		{"userinfo trick", idp.ClientMCPAgent, "http://localhost:1@evil.example/callback"},
		{"other host", idp.ClientMCPAgent, "http://evil.example/callback"},
		{"https elsewhere", idp.ClientMCPAgent, "https://evil.example/callback"},
		{"confidential userinfo trick", idp.ClientLocksmith, "http://127.0.0.1:1@evil.example/callback"},
		{"confidential other host", idp.ClientLocksmith, "http://evil.example/callback"},
	} {
		t.Run("redirect "+tc.name, func(t *testing.T) {
			t.Parallel()
			c := *cfg
			c.ClientID, c.RedirectURL = tc.clientID, tc.redirect
			noFollow := &http.Client{Transport: b.client.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := noFollow.Get(c.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			require.Equal(t, http.StatusBadRequest, resp.StatusCode)
			require.Empty(t, resp.Header.Get("Location"))
		})
	}
}

func TestConfidentialSignIn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := &oauth2.Config{
		ClientID:     idp.ClientLocksmith,
		ClientSecret: idp.DefaultLocksmithSecret,
		Endpoint:     oauth2.Endpoint{AuthURL: b.idp.AuthorizeURL(), TokenURL: b.idp.TokenURL()},
		RedirectURL:  b.callback,
		Scopes:       []string{oidc.ScopeOpenID, "email"},
	}
	q := b.login(t, cfg, idp.UsernameApprover2, "s")
	tok, err := cfg.Exchange(b.ctx, q.Get("code"))
	require.NoError(t, err)
	raw, _ := tok.Extra("id_token").(string)
	idTok, err := b.provider(t).Verifier(&oidc.Config{ClientID: idp.ClientLocksmith}).Verify(b.ctx, raw)
	require.NoError(t, err)
	require.Equal(t, idp.UserApprover2, idTok.Subject)

	bad := *cfg
	bad.ClientSecret = "wrong"
	q = b.login(t, &bad, idp.UsernameApprover2, "s")
	_, err = bad.Exchange(b.ctx, q.Get("code"))
	require.Equal(t, "invalid_client", oauthErrorCode(t, err))
}

func TestClientCredentials(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := clientcredentials.Config{
		ClientID:       idp.ClientServiceAgent,
		ClientSecret:   idp.DefaultServiceAgentSecret,
		TokenURL:       b.idp.TokenURL(),
		Scopes:         []string{"reports:read"},
		EndpointParams: url.Values{"resource": {mcpResource}},
	}
	tok, err := cfg.Token(b.ctx)
	require.NoError(t, err)
	c := b.verifyAccessToken(t, tok.AccessToken, mcpResource)
	require.Equal(t, idp.ClientServiceAgent, c.Subject)
	require.Equal(t, idp.ClientServiceAgent, c.ClientID)
	require.Equal(t, "reports:read", c.Scope)
	require.Empty(t, c.Email)

	t.Run("without resource the audience is the client", func(t *testing.T) {
		c2 := cfg
		c2.EndpointParams = nil
		tok, err := c2.Token(b.ctx)
		require.NoError(t, err)
		b.verifyAccessToken(t, tok.AccessToken, idp.ClientServiceAgent)
	})

	t.Run("wrong secret", func(t *testing.T) {
		c2 := cfg
		c2.ClientSecret = "wrong"
		_, err := c2.Token(b.ctx)
		require.Equal(t, "invalid_client", oauthErrorCode(t, err))
	})

	t.Run("client without the grant", func(t *testing.T) {
		c2 := cfg
		c2.ClientID, c2.ClientSecret = idp.ClientLocksmith, idp.DefaultLocksmithSecret
		_, err := c2.Token(b.ctx)
		require.Equal(t, "unauthorized_client", oauthErrorCode(t, err))
	})
}

type exchangeResponse struct {
	status           int
	AccessToken      string `json:"access_token"`
	IssuedTokenType  string `json:"issued_token_type"`
	TokenType        string `json:"token_type"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

func (b *testBundle) exchange(t *testing.T, clientID, secret string, form url.Values) exchangeResponse {
	t.Helper()
	form.Set("grant_type", idp.GrantTokenExchange)
	if form.Get("subject_token_type") == "" {
		form.Set("subject_token_type", "urn:ietf:params:oauth:token-type:access_token")
	}
	req, err := http.NewRequestWithContext(b.ctx, http.MethodPost, b.idp.TokenURL(), strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if secret != "" {
		req.SetBasicAuth(clientID, secret)
	} else {
		form.Set("client_id", clientID)
	}
	resp, err := b.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out := exchangeResponse{status: resp.StatusCode}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out
}

func TestTokenExchange(t *testing.T) {
	t.Parallel()
	b := setup(t)
	subject, err := b.idp.MintAccessToken(idp.MintRequest{User: idp.UsernameEngineer, Audience: []string{mcpResource}, Scopes: []string{"mcp:tools"}})
	require.NoError(t, err)
	before := b.idp.TokenExchangeCount()

	got := b.exchange(t, idp.ClientLocksmith, idp.DefaultLocksmithSecret, url.Values{
		"subject_token": {subject},
		"resource":      {upstreamResource},
		"scope":         {"repo:read"},
	})
	require.Equal(t, http.StatusOK, got.status, got.ErrorDescription)
	require.Equal(t, "urn:ietf:params:oauth:token-type:access_token", got.IssuedTokenType)
	require.Equal(t, "Bearer", got.TokenType)
	c := b.verifyAccessToken(t, got.AccessToken, upstreamResource)
	require.Equal(t, idp.UserEngineer, c.Subject)
	require.Equal(t, idp.ClientLocksmith, c.ClientID)
	require.Equal(t, "repo:read", c.Scope)
	require.Equal(t, "engineer@acme.example", c.Email)
	require.Equal(t, []string{"engineering"}, c.Groups)

	t.Run("scopes carry over and an issued token can be exchanged", func(t *testing.T) {
		got2 := b.exchange(t, idp.ClientLocksmith, idp.DefaultLocksmithSecret, url.Values{
			"subject_token": {got.AccessToken},
			"audience":      {"upstream-b"},
		})
		require.Equal(t, http.StatusOK, got2.status, got2.ErrorDescription)
		c := b.verifyAccessToken(t, got2.AccessToken, "upstream-b")
		require.Equal(t, "repo:read", c.Scope)
	})

	expired, err := b.idp.MintAccessToken(idp.MintRequest{User: idp.UsernameEngineer, Lifetime: -time.Minute})
	require.NoError(t, err)
	wrongTyp, err := b.idp.MintAccessToken(idp.MintRequest{User: idp.UsernameEngineer, Type: "JWT"})
	require.NoError(t, err)
	idToken, err := b.idp.MintIDToken(idp.MintRequest{User: idp.UsernameEngineer})
	require.NoError(t, err)
	forged := subject[:strings.LastIndex(subject, ".")+1] + "AAAA"

	for _, tc := range []struct {
		name, clientID, secret, subjectToken, wantError string
		wantStatus                                      int
	}{
		{"garbage subject token", idp.ClientLocksmith, idp.DefaultLocksmithSecret, "not-a-token", "invalid_request", 400},
		{"bad signature", idp.ClientLocksmith, idp.DefaultLocksmithSecret, forged, "invalid_request", 400},
		{"expired subject token", idp.ClientLocksmith, idp.DefaultLocksmithSecret, expired, "invalid_request", 400},
		{"subject token typ JWT", idp.ClientLocksmith, idp.DefaultLocksmithSecret, wrongTyp, "invalid_request", 400},
		{"id token as access token", idp.ClientLocksmith, idp.DefaultLocksmithSecret, idToken, "invalid_request", 400},
		{"client not allowed", idp.ClientServiceAgent, idp.DefaultServiceAgentSecret, subject, "unauthorized_client", 400},
		{"wrong secret", idp.ClientLocksmith, "wrong", subject, "invalid_client", 401},
		{"public client", idp.ClientMCPAgent, "", subject, "invalid_client", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := b.exchange(t, tc.clientID, tc.secret, url.Values{"subject_token": {tc.subjectToken}, "resource": {upstreamResource}})
			require.Equal(t, tc.wantStatus, got.status)
			require.Equal(t, tc.wantError, got.Error)
			require.Empty(t, got.AccessToken)
		})
	}

	t.Run("invalid resource", func(t *testing.T) {
		got := b.exchange(t, idp.ClientLocksmith, idp.DefaultLocksmithSecret, url.Values{"subject_token": {subject}, "resource": {"not a uri"}})
		require.Equal(t, "invalid_target", got.Error)
	})

	require.Equal(t, before+11, b.idp.TokenExchangeCount())
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	oldKID := b.idp.CurrentKeyID()
	oldToken, err := b.idp.MintAccessToken(idp.MintRequest{User: idp.UserFinance})
	require.NoError(t, err)
	require.Equal(t, oldKID, header(t, oldToken).KeyID)

	newKID, err := b.idp.RotateKey()
	require.NoError(t, err)
	require.NotEqual(t, oldKID, newKID)
	require.Equal(t, newKID, b.idp.CurrentKeyID())
	require.Len(t, b.idp.JWKS().Keys, 2)

	cc := clientcredentials.Config{ClientID: idp.ClientServiceAgent, ClientSecret: idp.DefaultServiceAgentSecret, TokenURL: b.idp.TokenURL()}
	tok, err := cc.Token(b.ctx)
	require.NoError(t, err)
	require.Equal(t, newKID, header(t, tok.AccessToken).KeyID, "issued tokens use the new key")

	b.verifyAccessToken(t, tok.AccessToken, idp.ClientServiceAgent)
	b.verifyAccessToken(t, oldToken, idp.ClientMCPAgent)

	require.ErrorIs(t, b.idp.RetireKey(newKID), idp.ErrCurrentKey)
	require.ErrorIs(t, b.idp.RetireKey("no-such-key"), idp.ErrUnknownKey)
	require.NoError(t, b.idp.RetireKey(oldKID))
	require.Len(t, b.idp.JWKS().Keys, 1)

	_, err = b.accessTokenVerifier(idp.ClientMCPAgent).Verify(b.ctx, oldToken)
	require.Error(t, err, "a retired key's tokens fail")
	b.verifyAccessToken(t, tok.AccessToken, idp.ClientServiceAgent)

	_, err = b.idp.RotateKey()
	require.NoError(t, err)
	require.Equal(t, []string{newKID}, b.idp.RetireOldKeys())
}

func TestMint(t *testing.T) {
	t.Parallel()
	b := setup(t)

	t.Run("expired", func(t *testing.T) {
		tok, err := b.idp.MintAccessToken(idp.MintRequest{User: idp.UserEngineer, Extra: map[string]any{"exp": time.Now().Add(-time.Hour)}})
		require.NoError(t, err)
		_, err = b.accessTokenVerifier(idp.ClientMCPAgent).Verify(b.ctx, tok)
		var expired *oidc.TokenExpiredError
		require.ErrorAs(t, err, &expired)
	})

	t.Run("claims overridden and removed, typ omitted", func(t *testing.T) {
		tok, err := b.idp.MintAccessToken(idp.MintRequest{
			User: idp.UsernameFinance, ClientID: "other-agent", Audience: []string{"a", "b"},
			Extra: map[string]any{"email": nil, "nonce": "n"}, OmitType: true,
		})
		require.NoError(t, err)
		require.Nil(t, typ(t, tok))
		v, err := b.accessTokenVerifier("b").Verify(b.ctx, tok)
		require.NoError(t, err)
		var c map[string]any
		require.NoError(t, v.Claims(&c))
		require.NotContains(t, c, "email")
		require.Equal(t, "n", c["nonce"])
		require.Equal(t, "other-agent", c["client_id"])
		require.Equal(t, idp.UserFinance, c["sub"])
	})

	t.Run("id token", func(t *testing.T) {
		tok, err := b.idp.MintIDToken(idp.MintRequest{User: idp.UsernameEngineer, ClientID: idp.ClientLocksmith, Extra: map[string]any{"nonce": "n1"}})
		require.NoError(t, err)
		require.Equal(t, "JWT", typ(t, tok))
		v, err := b.provider(t).Verifier(&oidc.Config{ClientID: idp.ClientLocksmith}).Verify(b.ctx, tok)
		require.NoError(t, err)
		require.Equal(t, "n1", v.Nonce)
	})

	t.Run("forged with the signing key", func(t *testing.T) {
		key := b.idp.SigningKeyForTests()
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("at+jwt"))
		require.NoError(t, err)
		payload, err := json.Marshal(map[string]any{"iss": b.idp.URL(), "sub": "x", "aud": "forged", "exp": time.Now().Add(time.Minute).Unix(), "jti": "j"})
		require.NoError(t, err)
		jws, err := signer.Sign(payload)
		require.NoError(t, err)
		raw, err := jws.CompactSerialize()
		require.NoError(t, err)
		_, err = b.accessTokenVerifier("forged").Verify(b.ctx, raw)
		require.NoError(t, err)
	})

	t.Run("unknown user", func(t *testing.T) {
		_, err := b.idp.MintAccessToken(idp.MintRequest{User: "nobody"})
		require.ErrorIs(t, err, idp.ErrUnknownUser)
	})
}

func TestJWKSFetchCount(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tok, err := b.idp.MintAccessToken(idp.MintRequest{User: idp.UserEngineer})
	require.NoError(t, err)
	before := b.idp.JWKSFetchCount()
	keys := oidc.NewRemoteKeySet(b.ctx, b.idp.JWKSURL())
	for range 3 {
		_, err := keys.VerifySignature(b.ctx, tok)
		require.NoError(t, err)
	}
	require.Equal(t, before+1, b.idp.JWKSFetchCount(), "the remote key set caches")
}

func TestNewValidation(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]idp.Config{
		"no logger":                 {},
		"http on a public host":     {Issuer: "http://idp.example"},
		"issuer with a path":        {Issuer: "https://idp.example/tenant"},
		"negative lifetime":         {AccessTokenLifetime: -time.Second},
		"duplicate client":          {Clients: []idp.Client{{ID: "a"}, {ID: "a"}}},
		"public client_credentials": {Clients: []idp.Client{{ID: "a", GrantTypes: []string{idp.GrantClientCredentials}}}},
		"duplicate user":            {Users: []idp.User{{Subject: "s", Username: "u"}, {Subject: "s", Username: "v"}}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if name != "no logger" {
				cfg.Logger = slogDiscard()
			}
			_, err := idp.New(cfg)
			require.ErrorIs(t, err, idp.ErrInvalidConfig)
		})
	}
}

// TestStartCloseLeaksNothing is not parallel: it checks that a full round of flows and Close
// leave no goroutine behind.
func TestStartCloseLeaksNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	i, err := idp.New(idp.Config{Logger: slogDiscard()})
	require.NoError(t, err)
	require.NoError(t, i.Start("127.0.0.1:0"))
	require.ErrorIs(t, i.Start("127.0.0.1:0"), idp.ErrAlreadyStarted)

	transport := http.DefaultTransport.(*http.Transport).Clone()
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	ctx := oidc.ClientContext(context.WithValue(t.Context(), oauth2.HTTPClient, client), client)
	_, err = oidc.NewProvider(ctx, i.URL())
	require.NoError(t, err)
	cc := clientcredentials.Config{ClientID: idp.ClientServiceAgent, ClientSecret: idp.DefaultServiceAgentSecret, TokenURL: i.TokenURL()}
	_, err = cc.Token(ctx)
	require.NoError(t, err)

	closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, i.Close(closeCtx))
	require.NoError(t, i.Close(closeCtx), "Close is idempotent")
	_, err = client.Get(i.URL() + "/healthz")
	require.Error(t, err, "the listener is closed")
	require.False(t, errors.Is(err, context.Canceled))
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
