package tasks_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/tasks"
)

func TestRevocation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		token       func(g tasks.TokenResponse) string
		basic       bool
		hint        string
		wantStatus  int
		wantKind    string
		wantRevoked bool
		wantATLive  bool
		wantRTLive  bool
	}{
		{name: "access token", token: func(g tasks.TokenResponse) string { return g.AccessToken }, basic: true, hint: "access_token",
			wantStatus: http.StatusOK, wantKind: tasks.KindAccessToken, wantRevoked: true, wantATLive: false, wantRTLive: true},
		{name: "refresh token revokes the family", token: func(g tasks.TokenResponse) string { return g.RefreshToken }, basic: true, hint: "refresh_token",
			wantStatus: http.StatusOK, wantKind: tasks.KindRefreshToken, wantRevoked: true, wantATLive: false, wantRTLive: false},
		{name: "wrong hint is only a hint", token: func(g tasks.TokenResponse) string { return g.RefreshToken }, basic: true, hint: "access_token",
			wantStatus: http.StatusOK, wantKind: tasks.KindRefreshToken, wantRevoked: true, wantATLive: false, wantRTLive: false},
		{name: "unknown token", token: func(tasks.TokenResponse) string { return "acme_at_NOPE" }, basic: true,
			wantStatus: http.StatusOK, wantKind: tasks.KindUnknown, wantATLive: true, wantRTLive: true},
		{name: "no client authentication", token: func(g tasks.TokenResponse) string { return g.RefreshToken },
			wantStatus: http.StatusUnauthorized, wantATLive: true, wantRTLive: true},
		{name: "missing token", token: func(tasks.TokenResponse) string { return "" }, basic: true,
			wantStatus: http.StatusBadRequest, wantATLive: true, wantRTLive: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			grant := b.issue(t, "engineer", tasks.ScopeRead)

			form := url.Values{"token": {tt.token(grant)}}
			if tt.hint != "" {
				form.Set("token_type_hint", tt.hint)
			}
			resp, body := b.postForm(t, "/revoke", form, tt.basic)
			require.Equal(t, tt.wantStatus, resp.StatusCode, body)

			resp, _ = b.do(t, http.MethodGet, "/tasks", grant.AccessToken, "")
			require.Equal(t, tt.wantATLive, resp.StatusCode == http.StatusOK, "access token live")
			info, err := b.srv.Inspect(grant.RefreshToken)
			require.NoError(t, err)
			require.Equal(t, tt.wantRTLive, info.Active, "refresh token live")

			st := b.srv.Stats()
			if tt.wantStatus != http.StatusOK {
				require.Zero(t, st.RevocationCalls)
				return
			}
			require.Equal(t, 1, st.RevocationCalls)
			require.Len(t, st.Revocations, 1)
			rev := st.Revocations[0]
			require.Equal(t, tt.wantKind, rev.Kind)
			require.Equal(t, tt.wantRevoked, rev.Revoked)
			require.Equal(t, tasks.TokenHash(tt.token(grant)), rev.TokenHash)
			require.Equal(t, tasks.DefaultClientID, rev.ClientID)
			require.Equal(t, tt.hint, rev.TokenTypeHint)
		})
	}
}

func TestRevocationOfAnotherClientsToken(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *tasks.Config) {
		c.Clients = []tasks.Client{
			{ID: tasks.DefaultClientID, Secret: tasks.DefaultClientSecret, AllowLoopbackRedirects: true},
			{ID: "other", Secret: "other-secret", RedirectURIs: []string{"https://other.example/cb"}},
		}
	})
	grant := b.issue(t, "engineer", tasks.ScopeRead)

	resp, _ := b.postForm(t, "/revoke", url.Values{"token": {grant.RefreshToken}, "client_id": {"other"}, "client_secret": {"other-secret"}}, false)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.False(t, b.srv.FamilyRevoked(grant.RefreshToken))
	require.Equal(t, tasks.KindUnknown, b.srv.Stats().Revocations[0].Kind)
}

func TestRevokedRefreshTokenCannotRefresh(t *testing.T) {
	t.Parallel()
	b := setup(t)
	grant := b.issue(t, "finance", tasks.ScopeRead)
	next, err := b.refresh(grant.RefreshToken)
	require.NoError(t, err)

	resp, _ := b.postForm(t, "/revoke", url.Values{"token": {next.RefreshToken}}, true)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	_, err = b.refresh(next.RefreshToken)
	require.Equal(t, "invalid_grant", errorCode(err))
	resp, _ = b.do(t, http.MethodGet, "/tasks", next.AccessToken, "")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Equal(t, 1, b.srv.Stats().FamiliesRevoked)
}
