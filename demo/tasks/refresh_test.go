package tasks_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/tasks"
)

func TestRefreshRotation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := b.issue(t, "engineer", tasks.ScopeRead, tasks.ScopeWrite)

	second, err := b.refresh(first.RefreshToken)
	require.NoError(t, err)
	require.NotEqual(t, first.RefreshToken, second.RefreshToken, "refresh token rotates")
	require.NotEqual(t, first.AccessToken, second.AccessToken)
	require.Equal(t, "tasks:read tasks:write", second.Extra("scope"))

	old, err := b.srv.Inspect(first.RefreshToken)
	require.NoError(t, err)
	require.True(t, old.Rotated)
	require.False(t, old.Active)

	_, err = b.refresh(first.RefreshToken)
	require.Equal(t, "invalid_grant", errorCode(err), "a rotated refresh token is refused")

	st := b.srv.Stats()
	require.Equal(t, 1, st.RefreshGrants)
	require.Equal(t, 2, st.TokenEndpointCalls)
}

func TestRefreshReuseRevokesFamily(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := b.issue(t, "engineer", tasks.ScopeRead)
	bystander := b.issue(t, "approver", tasks.ScopeRead)

	second, err := b.refresh(first.RefreshToken)
	require.NoError(t, err)
	third, err := b.refresh(second.RefreshToken)
	require.NoError(t, err)
	resp, _ := b.do(t, http.MethodGet, "/tasks", third.AccessToken, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// An attacker replays the first refresh token.
	_, err = b.refresh(first.RefreshToken)
	require.Equal(t, "invalid_grant", errorCode(err))

	// The newest tokens of the family are dead too.
	for _, at := range []string{first.AccessToken, second.AccessToken, third.AccessToken} {
		resp, _ := b.do(t, http.MethodGet, "/tasks", at, "")
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		require.Contains(t, resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`)
	}
	_, err = b.refresh(third.RefreshToken)
	require.Equal(t, "invalid_grant", errorCode(err), "the newest refresh token is revoked")
	require.True(t, b.srv.FamilyRevoked(third.RefreshToken))
	info, err := b.srv.Inspect(third.RefreshToken)
	require.NoError(t, err)
	require.Equal(t, tasks.ReasonRefreshReuse, info.RevokedReason)

	// Other families are untouched.
	require.False(t, b.srv.FamilyRevoked(bystander.RefreshToken))
	resp, _ = b.do(t, http.MethodGet, "/tasks", bystander.AccessToken, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)

	st := b.srv.Stats()
	require.Equal(t, 1, st.RefreshReuseDetections)
	require.Equal(t, 1, st.FamiliesRevoked)
	require.Equal(t, 2, st.RefreshGrants)
}

func TestRefreshDownscoping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		scope      string
		wantStatus int
		wantError  string
		wantScope  string
	}{
		{name: "narrower", scope: "tasks:read", wantStatus: http.StatusOK, wantScope: "tasks:read"},
		{name: "same", scope: "tasks:write tasks:read", wantStatus: http.StatusOK, wantScope: "tasks:read tasks:write"},
		{name: "wider", scope: "tasks:read tasks:delete", wantStatus: http.StatusBadRequest, wantError: "invalid_scope"},
		{name: "unknown", scope: "tasks:admin", wantStatus: http.StatusBadRequest, wantError: "invalid_scope"},
		{name: "blank", scope: " ", wantStatus: http.StatusBadRequest, wantError: "invalid_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			grant := b.issue(t, "engineer", tasks.ScopeRead, tasks.ScopeWrite)

			resp, body := b.refreshWithScope(t, grant.RefreshToken, tt.scope)
			require.Equal(t, tt.wantStatus, resp.StatusCode, body)
			if tt.wantError != "" {
				require.Equal(t, tt.wantError, body["error"])
				// A refused request rotates nothing.
				_, err := b.refresh(grant.RefreshToken)
				require.NoError(t, err)
				return
			}
			require.Equal(t, tt.wantScope, body["scope"])
			at, rt := body["access_token"].(string), body["refresh_token"].(string)
			info, err := b.srv.Inspect(at)
			require.NoError(t, err)
			require.Equal(t, tt.wantScope, strings.Join(info.Scopes, " "))
			info, err = b.srv.Inspect(rt)
			require.NoError(t, err)
			require.Equal(t, []string{tasks.ScopeRead, tasks.ScopeWrite}, info.Scopes, "refresh token keeps the family's scopes")

			// A later refresh without scope gets the full grant back.
			tok, err := b.refresh(rt)
			require.NoError(t, err)
			require.Equal(t, "tasks:read tasks:write", tok.Extra("scope"))
		})
	}
}

func TestDownscopedTokenIsEnforced(t *testing.T) {
	t.Parallel()
	b := setup(t)
	grant := b.issue(t, "engineer", tasks.ScopeRead, tasks.ScopeWrite)
	_, body := b.refreshWithScope(t, grant.RefreshToken, tasks.ScopeRead)
	at := body["access_token"].(string)

	resp, _ := b.do(t, http.MethodGet, "/tasks", at, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = b.do(t, http.MethodPost, "/tasks", at, `{"title":"x"}`)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
}

func TestTokenEndpointClientAuth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		basic      bool
		form       url.Values
		wantStatus int
		wantError  string
	}{
		{name: "basic", basic: true, wantStatus: http.StatusOK},
		{name: "post", form: url.Values{"client_id": {tasks.DefaultClientID}, "client_secret": {tasks.DefaultClientSecret}}, wantStatus: http.StatusOK},
		{name: "none", wantStatus: http.StatusUnauthorized, wantError: "invalid_client"},
		{name: "wrong secret", form: url.Values{"client_id": {tasks.DefaultClientID}, "client_secret": {"nope"}}, wantStatus: http.StatusUnauthorized, wantError: "invalid_client"},
		{name: "unknown client", form: url.Values{"client_id": {"mallory-app"}, "client_secret": {"x"}}, wantStatus: http.StatusUnauthorized, wantError: "invalid_client"},
		{name: "two methods", basic: true, form: url.Values{"client_secret": {tasks.DefaultClientSecret}}, wantStatus: http.StatusBadRequest, wantError: "invalid_request"},
		{name: "other client's token", form: url.Values{"client_id": {"other"}, "client_secret": {"other-secret"}}, wantStatus: http.StatusBadRequest, wantError: "invalid_grant"},
		{name: "unsupported grant", basic: true, form: url.Values{"grant_type": {"password"}}, wantStatus: http.StatusBadRequest, wantError: "unsupported_grant_type"},
		{name: "missing grant", basic: true, form: url.Values{"grant_type": {""}}, wantStatus: http.StatusBadRequest, wantError: "invalid_request"},
		{name: "duplicate parameter", basic: true, form: url.Values{"refresh_token": {"a", "b"}}, wantStatus: http.StatusBadRequest, wantError: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(c *tasks.Config) {
				c.Clients = []tasks.Client{
					{ID: tasks.DefaultClientID, Secret: tasks.DefaultClientSecret, AllowLoopbackRedirects: true},
					{ID: "other", Secret: "other-secret", RedirectURIs: []string{"https://other.example/cb"}},
				}
			})
			grant := b.issue(t, "engineer", tasks.ScopeRead)
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {grant.RefreshToken}}
			for k, v := range tt.form {
				form[k] = v
			}
			resp, body := b.postForm(t, "/token", form, tt.basic)
			require.Equal(t, tt.wantStatus, resp.StatusCode, body)
			require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
			if tt.wantError != "" {
				require.Equal(t, tt.wantError, body["error"])
			}
			if tt.wantStatus == http.StatusUnauthorized {
				require.NotEmpty(t, resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}
