package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/oauth2"

	"github.com/locksmithhq/locksmith/demo/tasks"
)

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  tasks.Config
	}{
		{name: "negative lifetime", cfg: tasks.Config{AccessTokenLifetime: -time.Second}},
		{name: "relative issuer", cfg: tasks.Config{Issuer: "acme.example"}},
		{name: "issuer with query", cfg: tasks.Config{Issuer: "http://127.0.0.1:1/?x=1"}},
		{name: "client without secret", cfg: tasks.Config{Clients: []tasks.Client{{ID: "c", AllowLoopbackRedirects: true}}}},
		{name: "client without redirects", cfg: tasks.Config{Clients: []tasks.Client{{ID: "c", Secret: "s"}}}},
		{name: "relative redirect", cfg: tasks.Config{Clients: []tasks.Client{{ID: "c", Secret: "s", RedirectURIs: []string{"/cb"}}}}},
		{name: "duplicate client", cfg: tasks.Config{Clients: []tasks.Client{{ID: "c", Secret: "s", AllowLoopbackRedirects: true}, {ID: "c", Secret: "t", AllowLoopbackRedirects: true}}}},
		{name: "bad user name", cfg: tasks.Config{Users: []tasks.User{{Name: "Not Safe", Email: "x@acme.example"}}}},
		{name: "duplicate user", cfg: tasks.Config{Users: []tasks.User{{Name: "engineer"}, {Name: "engineer"}}}},
		{name: "negative limit", cfg: tasks.Config{MaxTokens: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tasks.New(tt.cfg)
			require.ErrorIs(t, err, tasks.ErrInvalidConfig)
		})
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	srv, err := tasks.New(tasks.Config{})
	require.NoError(t, err)
	require.Equal(t, []tasks.User{
		{Name: "engineer", Email: "engineer@acme.example"},
		{Name: "approver", Email: "approver@acme.example"},
		{Name: "approver2", Email: "approver2@acme.example"},
		{Name: "finance", Email: "finance@acme.example"},
	}, srv.Users())
	require.Empty(t, srv.URL())

	tok, err := srv.IssueTokens("engineer", tasks.DefaultClientID, []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.Equal(t, int64(3600), tok.ExpiresIn)
	_, err = srv.IssueTokens("nobody", tasks.DefaultClientID, []string{tasks.ScopeRead})
	require.ErrorIs(t, err, tasks.ErrNotFound)
	_, err = srv.IssueTokens("engineer", "nobody", []string{tasks.ScopeRead})
	require.ErrorIs(t, err, tasks.ErrNotFound)
	_, err = srv.IssueTokens("engineer", tasks.DefaultClientID, nil)
	require.ErrorIs(t, err, tasks.ErrInvalidScope)
	_, err = srv.IssueTokens("engineer", tasks.DefaultClientID, []string{"admin"})
	require.ErrorIs(t, err, tasks.ErrInvalidScope)
	_, err = srv.Inspect("acme_at_NOPE")
	require.ErrorIs(t, err, tasks.ErrNotFound)
	require.NoError(t, srv.Close(t.Context()), "closing an unstarted server")
}

func TestStartAndClose(t *testing.T) {
	t.Parallel()
	srv, err := tasks.New(tasks.Config{})
	require.NoError(t, err)
	require.NoError(t, srv.Start("127.0.0.1:0"))
	require.ErrorIs(t, srv.Start("127.0.0.1:0"), tasks.ErrStarted)
	require.Regexp(t, `^http://127\.0\.0\.1:\d+$`, srv.URL())
	require.NoError(t, srv.Close(t.Context()))
	require.NoError(t, srv.Close(t.Context()), "second close")
	require.ErrorIs(t, srv.Start("127.0.0.1:0"), tasks.ErrClosed)
}

func TestCapacityIsBounded(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	srv, err := tasks.New(tasks.Config{MaxTokens: 4, Clock: clock.Now, AccessTokenLifetime: time.Minute, RefreshTokenLifetime: time.Minute})
	require.NoError(t, err)
	for range 2 {
		_, err = srv.IssueTokens("engineer", tasks.DefaultClientID, []string{tasks.ScopeRead})
		require.NoError(t, err)
	}
	_, err = srv.IssueTokens("engineer", tasks.DefaultClientID, []string{tasks.ScopeRead})
	require.ErrorIs(t, err, tasks.ErrCapacity)

	clock.Advance(time.Minute) // everything expires and is swept
	_, err = srv.IssueTokens("engineer", tasks.DefaultClientID, []string{tasks.ScopeRead})
	require.NoError(t, err)
}

// TestHandlerDerivesIssuer mounts Handler in another server: without a
// configured issuer, metadata and iss follow the request's Host.
func TestHandlerDerivesIssuer(t *testing.T) {
	t.Parallel()
	srv, err := tasks.New(tasks.Config{})
	require.NoError(t, err)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	t.Cleanup(ts.Client().CloseIdleConnections)

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.URL+"/.well-known/oauth-authorization-server", nil)
	require.NoError(t, err)
	resp, err := ts.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var md tasks.ASMetadata
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&md))
	require.Equal(t, ts.URL, md.Issuer)
	require.Equal(t, ts.URL+"/token", md.TokenEndpoint)
}

// TestCloseLeavesNoGoroutines is deliberately not parallel: goleak compares
// against the goroutines present when it starts, which parallel tests would
// disturb. A response held by HangNextRefreshResponses must not keep Close
// (or a goroutine) waiting.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	srv, err := tasks.New(tasks.Config{})
	require.NoError(t, err)
	require.NoError(t, srv.Start("127.0.0.1:0"))
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	cfg := &oauth2.Config{
		ClientID: tasks.DefaultClientID, ClientSecret: tasks.DefaultClientSecret,
		Endpoint: oauth2.Endpoint{TokenURL: srv.TokenURL(), AuthStyle: oauth2.AuthStyleInHeader},
	}
	ctx := context.WithValue(t.Context(), oauth2.HTTPClient, client)
	grant, err := srv.IssueTokens("engineer", tasks.DefaultClientID, []string{tasks.ScopeRead})
	require.NoError(t, err)

	// One normal refresh (leaves a keep-alive connection), then a hung one.
	tok, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: grant.RefreshToken}).Token()
	require.NoError(t, err)
	srv.HangNextRefreshResponses(1)
	errc := make(chan error, 1)
	go func() {
		_, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		errc <- err
	}()
	require.Eventually(t, func() bool { return srv.Stats().HungResponses == 1 }, 5*time.Second, 5*time.Millisecond)

	closeCtx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	require.NoError(t, srv.Close(closeCtx))
	err = <-errc
	require.Error(t, err)
	require.False(t, errors.Is(err, context.DeadlineExceeded), "released by Close, not by a timeout")
}
