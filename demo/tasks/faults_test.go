package tasks_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/locksmithhq/locksmith/demo/tasks"
)

func TestDropNextRefreshResponses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	grant := b.issue(t, "engineer", tasks.ScopeRead)
	b.srv.DropNextRefreshResponses(1)

	_, err := b.refresh(grant.RefreshToken)
	require.Error(t, err)
	require.Empty(t, errorCode(err), "no OAuth response was delivered: %v", err)

	// The rotation was committed server-side before the response was lost.
	st := b.srv.Stats()
	require.Equal(t, 1, st.RefreshGrants)
	require.Equal(t, 1, st.DroppedResponses)
	info, err := b.srv.Inspect(grant.RefreshToken)
	require.NoError(t, err)
	require.True(t, info.Rotated)

	// A naive client retrying with the old token trips reuse detection.
	_, err = b.refresh(grant.RefreshToken)
	require.Equal(t, "invalid_grant", errorCode(err))
	require.True(t, b.srv.FamilyRevoked(grant.RefreshToken))

	// The fault was consumed.
	other := b.issue(t, "engineer", tasks.ScopeRead)
	_, err = b.refresh(other.RefreshToken)
	require.NoError(t, err)
}

func TestHangNextRefreshResponses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	grant := b.issue(t, "engineer", tasks.ScopeRead)
	b.srv.HangNextRefreshResponses(1)

	ctx, cancel := context.WithTimeout(b.ctx, 300*time.Millisecond)
	defer cancel()
	_, err := b.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: grant.RefreshToken}).Token()
	require.ErrorIs(t, err, context.DeadlineExceeded)

	st := b.srv.Stats()
	require.Equal(t, 1, st.HungResponses)
	require.Equal(t, 1, st.RefreshGrants)
	info, err := b.srv.Inspect(grant.RefreshToken)
	require.NoError(t, err)
	require.True(t, info.Rotated)
}

func TestFailTokenEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		status         int
		retryAfter     time.Duration
		wantError      string
		wantRetryAfter string
	}{
		{name: "503 with Retry-After", status: http.StatusServiceUnavailable, retryAfter: 7 * time.Second, wantError: "temporarily_unavailable", wantRetryAfter: "7"},
		{name: "429", status: http.StatusTooManyRequests, retryAfter: 1500 * time.Millisecond, wantError: "temporarily_unavailable", wantRetryAfter: "2"},
		{name: "500", status: http.StatusInternalServerError, wantError: "server_error"},
		{name: "502", status: http.StatusBadGateway, wantError: "server_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			grant := b.issue(t, "engineer", tasks.ScopeRead)
			b.srv.FailTokenEndpoint(tt.status, 2, tt.retryAfter)
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {grant.RefreshToken}}

			for range 2 {
				resp, body := b.postForm(t, "/token", form, true)
				require.Equal(t, tt.status, resp.StatusCode)
				require.Equal(t, tt.wantError, body["error"])
				require.Equal(t, tt.wantRetryAfter, resp.Header.Get("Retry-After"))
			}
			info, err := b.srv.Inspect(grant.RefreshToken)
			require.NoError(t, err)
			require.False(t, info.Rotated, "a failed call rotates nothing")

			resp, body := b.postForm(t, "/token", form, true)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			st := b.srv.Stats()
			require.Equal(t, 3, st.TokenEndpointCalls)
			require.Equal(t, 2, st.InjectedFailures)
			require.Equal(t, 1, st.RefreshGrants)
		})
	}
}
