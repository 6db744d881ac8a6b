package tasks_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/locksmithhq/locksmith/demo/tasks"
)

func TestMetadata(t *testing.T) {
	t.Parallel()
	b := setup(t)

	resp, body := b.do(t, http.MethodGet, "/.well-known/oauth-authorization-server", "", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var md map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &md))
	iss := b.srv.URL()
	require.Equal(t, iss, md["issuer"])
	require.Equal(t, iss+"/authorize", md["authorization_endpoint"])
	require.Equal(t, iss+"/token", md["token_endpoint"])
	require.Equal(t, iss+"/revoke", md["revocation_endpoint"])
	require.Equal(t, []any{"tasks:read", "tasks:write", "tasks:delete"}, md["scopes_supported"])
	require.Equal(t, []any{"S256"}, md["code_challenge_methods_supported"])
	require.Equal(t, []any{"authorization_code", "refresh_token"}, md["grant_types_supported"])
	require.Equal(t, []any{"code"}, md["response_types_supported"])
	require.Equal(t, []any{"client_secret_basic", "client_secret_post"}, md["token_endpoint_auth_methods_supported"])
	require.Equal(t, true, md["authorization_response_iss_parameter_supported"])

	resp, body = b.do(t, http.MethodGet, "/.well-known/oauth-protected-resource", "", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `"authorization_servers":["`+iss+`"]`)
}

func TestAuthorizationCodeFlow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	verifier := oauth2.GenerateVerifier()

	// login_hint preselects a user; picking another re-renders the page.
	authURL := b.oauth.AuthCodeURL("state-1", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("login_hint", "engineer"))
	reqID, page := b.startAuthorization(t, authURL)
	for _, want := range []string{
		`data-testid="as-scope-tasks:read"`, `data-testid="as-scope-tasks:write"`,
		`data-testid="as-user-engineer"`, `data-testid="as-user-approver"`, `data-testid="as-user-approver2"`, `data-testid="as-user-finance"`,
		`data-testid="as-allow"`, `data-testid="as-deny"`, `data-testid="as-selected-user">engineer<`,
	} {
		require.Contains(t, page, want)
	}
	require.NotContains(t, page, `data-testid="as-scope-tasks:delete"`)

	resp, page := b.do(t, http.MethodGet, "/authorize/consent?"+url.Values{"request_id": {reqID}, "user": {"approver"}}.Encode(), "", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, page, `data-testid="as-selected-user">approver<`)
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'none'")

	loc := b.decide(t, reqID, "approver", "allow")
	require.Equal(t, "127.0.0.1:9", loc.Host)
	require.Equal(t, "state-1", loc.Query().Get("state"))
	require.Equal(t, b.srv.URL(), loc.Query().Get("iss"), "RFC 9207 iss")

	tok, err := b.oauth.Exchange(b.ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	require.NoError(t, err)
	require.Equal(t, "Bearer", tok.TokenType)
	require.NotEmpty(t, tok.RefreshToken)
	require.Equal(t, "tasks:read tasks:write", tok.Extra("scope"))

	resp, body := b.do(t, http.MethodPost, "/tasks", tok.AccessToken, `{"title":"review the quarterly plan"}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	require.Len(t, b.srv.TasksOf("approver"), 1)
	require.Empty(t, b.srv.TasksOf("engineer"))
	require.Equal(t, 1, b.srv.Stats().AuthorizationCodeGrants)

	// The pending request was single-use.
	resp, _ = b.postDecision(t, url.Values{"request_id": {reqID}, "selected_user": {"approver"}, "decision": {"allow"}})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

func TestCodeExchangeRules(t *testing.T) {
	t.Parallel()
	otherVerifier := oauth2.GenerateVerifier()
	tests := []struct {
		name     string
		exchange func(b *testBundle, code, verifier string) (*oauth2.Token, error)
		wantCode string
	}{
		{
			name: "right verifier",
			exchange: func(b *testBundle, code, verifier string) (*oauth2.Token, error) {
				return b.oauth.Exchange(b.ctx, code, oauth2.VerifierOption(verifier))
			},
		},
		{
			name: "client_secret_post",
			exchange: func(b *testBundle, code, verifier string) (*oauth2.Token, error) {
				cfg := *b.oauth
				cfg.Endpoint.AuthStyle = oauth2.AuthStyleInParams
				return cfg.Exchange(b.ctx, code, oauth2.VerifierOption(verifier))
			},
		},
		{
			name: "wrong verifier",
			exchange: func(b *testBundle, code, _ string) (*oauth2.Token, error) {
				return b.oauth.Exchange(b.ctx, code, oauth2.VerifierOption(otherVerifier))
			},
			wantCode: "invalid_grant",
		},
		{
			name: "missing verifier",
			exchange: func(b *testBundle, code, _ string) (*oauth2.Token, error) {
				return b.oauth.Exchange(b.ctx, code)
			},
			wantCode: "invalid_request",
		},
		{
			name: "other redirect_uri",
			exchange: func(b *testBundle, code, verifier string) (*oauth2.Token, error) {
				return b.oauth.Exchange(b.ctx, code, oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("redirect_uri", "http://127.0.0.1:9/other"))
			},
			wantCode: "invalid_grant",
		},
		{
			name: "wrong client secret",
			exchange: func(b *testBundle, code, verifier string) (*oauth2.Token, error) {
				cfg := *b.oauth
				cfg.ClientSecret = "guess"
				return cfg.Exchange(b.ctx, code, oauth2.VerifierOption(verifier))
			},
			wantCode: "invalid_client",
		},
		{
			name: "forged code",
			exchange: func(b *testBundle, _, verifier string) (*oauth2.Token, error) {
				return b.oauth.Exchange(b.ctx, "acme_code_FORGED", oauth2.VerifierOption(verifier))
			},
			wantCode: "invalid_grant",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			verifier := oauth2.GenerateVerifier()
			code := b.authorize(t, "engineer", verifier)
			tok, err := tt.exchange(b, code, verifier)
			if tt.wantCode == "" {
				require.NoError(t, err)
				require.NotEmpty(t, tok.AccessToken)
				return
			}
			require.Error(t, err)
			require.Equal(t, tt.wantCode, errorCode(err), err.Error())
		})
	}
}

func TestCodeIsBurnedByFailedExchange(t *testing.T) {
	t.Parallel()
	b := setup(t)
	verifier := oauth2.GenerateVerifier()
	code := b.authorize(t, "engineer", verifier)

	_, err := b.oauth.Exchange(b.ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
	require.Equal(t, "invalid_grant", errorCode(err))
	_, err = b.oauth.Exchange(b.ctx, code, oauth2.VerifierOption(verifier))
	require.Equal(t, "invalid_grant", errorCode(err), "a code survives no failed exchange")
}

func TestCodeReplayRevokesIssuedTokens(t *testing.T) {
	t.Parallel()
	b := setup(t)
	verifier := oauth2.GenerateVerifier()
	code := b.authorize(t, "engineer", verifier)

	tok, err := b.oauth.Exchange(b.ctx, code, oauth2.VerifierOption(verifier))
	require.NoError(t, err)
	resp, _ := b.do(t, http.MethodGet, "/tasks", tok.AccessToken, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)

	_, err = b.oauth.Exchange(b.ctx, code, oauth2.VerifierOption(verifier))
	require.Equal(t, "invalid_grant", errorCode(err))

	resp, _ = b.do(t, http.MethodGet, "/tasks", tok.AccessToken, "")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.True(t, b.srv.FamilyRevoked(tok.RefreshToken))
	info, err := b.srv.Inspect(tok.AccessToken)
	require.NoError(t, err)
	require.Equal(t, tasks.ReasonCodeReplay, info.RevokedReason)
	require.Equal(t, 1, b.srv.Stats().CodeReplays)
}

func TestAuthorizeRequestErrors(t *testing.T) {
	t.Parallel()
	challenge := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	valid := func() url.Values {
		return url.Values{
			"response_type":         {"code"},
			"client_id":             {tasks.DefaultClientID},
			"redirect_uri":          {testRedirectURI},
			"scope":                 {"tasks:read"},
			"state":                 {"s1"},
			"code_challenge":        {challenge},
			"code_challenge_method": {"S256"},
		}
	}
	tests := []struct {
		name         string
		mutate       func(url.Values)
		wantStatus   int
		wantError    string // error parameter of the redirect
		wantContains string // in the HTML page
	}{
		{name: "valid", mutate: func(url.Values) {}, wantStatus: http.StatusOK, wantContains: `data-testid="as-consent"`},
		{name: "unknown client", mutate: func(q url.Values) { q.Set("client_id", "nobody") }, wantStatus: http.StatusBadRequest, wantContains: "unknown client_id"},
		{name: "foreign redirect", mutate: func(q url.Values) { q.Set("redirect_uri", "https://attacker.example/cb") }, wantStatus: http.StatusBadRequest, wantContains: "redirect_uri"},
		{name: "missing redirect", mutate: func(q url.Values) { q.Del("redirect_uri") }, wantStatus: http.StatusBadRequest, wantContains: "redirect_uri"},
		{name: "redirect with fragment", mutate: func(q url.Values) { q.Set("redirect_uri", testRedirectURI+"#x") }, wantStatus: http.StatusBadRequest, wantContains: "redirect_uri"},
		{name: "no pkce", mutate: func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, wantStatus: http.StatusFound, wantError: "invalid_request"},
		{name: "plain pkce", mutate: func(q url.Values) { q.Set("code_challenge_method", "plain") }, wantStatus: http.StatusFound, wantError: "invalid_request"},
		{name: "malformed challenge", mutate: func(q url.Values) { q.Set("code_challenge", "short") }, wantStatus: http.StatusFound, wantError: "invalid_request"},
		{name: "unknown scope", mutate: func(q url.Values) { q.Set("scope", "tasks:read admin") }, wantStatus: http.StatusFound, wantError: "invalid_scope"},
		{name: "implicit flow", mutate: func(q url.Values) { q.Set("response_type", "token") }, wantStatus: http.StatusFound, wantError: "unsupported_response_type"},
		{name: "relative resource", mutate: func(q url.Values) { q.Set("resource", "/tasks") }, wantStatus: http.StatusFound, wantError: "invalid_target"},
		{name: "duplicate scope", mutate: func(q url.Values) { q.Add("scope", "tasks:write") }, wantStatus: http.StatusFound, wantError: "invalid_request"},
	}
	b := setup(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := valid()
			tt.mutate(q)
			resp, body := b.do(t, http.MethodGet, "/authorize?"+q.Encode(), "", "")
			require.Equal(t, tt.wantStatus, resp.StatusCode, body)
			if tt.wantContains != "" {
				require.Contains(t, body, tt.wantContains)
			}
			if tt.wantError != "" {
				loc, err := url.Parse(resp.Header.Get("Location"))
				require.NoError(t, err)
				require.True(t, strings.HasPrefix(loc.String(), testRedirectURI+"?"), loc.String())
				require.Equal(t, tt.wantError, loc.Query().Get("error"))
				require.Equal(t, "s1", loc.Query().Get("state"))
				require.Equal(t, b.srv.URL(), loc.Query().Get("iss"))
			}
		})
	}
}

func TestConsentDecisions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	authURL := b.oauth.AuthCodeURL("state-9", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))

	t.Run("deny", func(t *testing.T) {
		t.Parallel()
		reqID, _ := b.startAuthorization(t, authURL)
		loc := b.decide(t, reqID, "", "deny")
		require.Equal(t, "access_denied", loc.Query().Get("error"))
		require.Equal(t, "state-9", loc.Query().Get("state"))
		require.Equal(t, b.srv.URL(), loc.Query().Get("iss"))
		require.Empty(t, loc.Query().Get("code"))
	})
	t.Run("allow without a user", func(t *testing.T) {
		t.Parallel()
		reqID, page := b.startAuthorization(t, authURL)
		require.Contains(t, page, `data-testid="as-allow" disabled`)
		resp, body := b.postDecision(t, url.Values{"request_id": {reqID}, "decision": {"allow"}})
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		require.Contains(t, body, `data-testid="as-error"`)
	})
	t.Run("allow with unknown user", func(t *testing.T) {
		t.Parallel()
		reqID, _ := b.startAuthorization(t, authURL)
		resp, _ := b.postDecision(t, url.Values{"request_id": {reqID}, "selected_user": {"root"}, "decision": {"allow"}})
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	})
	t.Run("unknown request", func(t *testing.T) {
		t.Parallel()
		resp, _ := b.postDecision(t, url.Values{"request_id": {"req_forged"}, "selected_user": {"engineer"}, "decision": {"allow"}})
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	})
	t.Run("expired request", func(t *testing.T) {
		t.Parallel()
		b := setup(t) // own server: it moves the clock
		reqID, _ := b.startAuthorization(t, b.oauth.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		b.clock.Advance(tasks.DefaultAuthorizationCodeLifetime)
		resp, _ := b.postDecision(t, url.Values{"request_id": {reqID}, "selected_user": {"engineer"}, "decision": {"allow"}})
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	})
}

func TestAutoApprove(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *tasks.Config) { c.AutoApprove = true })
	verifier := oauth2.GenerateVerifier()
	authURL := b.oauth.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("login_hint", "finance"))

	resp, _ := b.do(t, http.MethodGet, strings.TrimPrefix(authURL, b.srv.URL()), "", "")
	require.Equal(t, http.StatusFound, resp.StatusCode)
	loc, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	tok, err := b.oauth.Exchange(b.ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	require.NoError(t, err)
	info, err := b.srv.Inspect(tok.AccessToken)
	require.NoError(t, err)
	require.Equal(t, "finance", info.Subject)
}

func TestResourceIndicator(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resource := b.srv.URL() + "/tasks"
	verifier := oauth2.GenerateVerifier()
	code := b.authorize(t, "engineer", verifier, oauth2.SetAuthURLParam("resource", resource))

	_, err := b.oauth.Exchange(b.ctx, code, oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", "https://other.example/"))
	require.Equal(t, "invalid_target", errorCode(err))

	code = b.authorize(t, "engineer", verifier, oauth2.SetAuthURLParam("resource", resource))
	tok, err := b.oauth.Exchange(b.ctx, code, oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", resource))
	require.NoError(t, err)
	info, err := b.srv.Inspect(tok.AccessToken)
	require.NoError(t, err)
	require.Equal(t, []string{resource}, info.Resources)
}
