package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants"
)

type fakeReady struct{ err error }

func (f fakeReady) Ready(context.Context) error { return f.err }

type testBundle struct {
	srv  *Server
	http *httptest.Server
	logs *strings.Builder
}

func setup(t *testing.T, ready error, base string) *testBundle {
	t.Helper()
	logs := &strings.Builder{}
	u, err := url.Parse(base)
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(Config{
		Logger:   logger,
		BaseURL:  u,
		Ready:    fakeReady{ready},
		Registry: NewRegistry(),
		Tenants:  newTenantsService(t, logger, base),
	})
	require.NoError(t, err)
	s.Handle("GET /panic", func(w http.ResponseWriter, r *http.Request) error { panic("kaboom") })
	s.Handle("POST /echo", func(w http.ResponseWriter, r *http.Request) error {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
	s.Handle("GET /api/v1/missing", func(w http.ResponseWriter, r *http.Request) error {
		return &tenants.Error{Kind: tenants.ErrNotFound, Message: "no such tool"}
	})
	s.Handle("GET /api/v1/invalid", func(w http.ResponseWriter, r *http.Request) error {
		return tenants.Invalid("slug", "the slug must be 3-40 lowercase letters, digits or hyphens")
	})
	s.Handle("GET /api/v1/unavailable", func(w http.ResponseWriter, r *http.Request) error {
		// What a store returns while PostgreSQL restarts.
		return fmt.Errorf("tenants: list tools: %w", lsql.Translate(fmt.Errorf("secret-db-user: receive message failed: %w", io.ErrUnexpectedEOF)))
	})
	s.Handle("GET /internal", func(w http.ResponseWriter, r *http.Request) error {
		return errors.New("pq: password authentication failed for user secret-db-user")
	})
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return &testBundle{srv: s, http: hs, logs: logs}
}

func TestServer(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, "https://locksmith.example.com")
	tests := []struct {
		name, method, path, body string
		wantStatus               int
		wantContains             string
	}{
		{"healthz", "GET", "/healthz", "", 200, "ok"},
		{"readyz", "GET", "/readyz", "", 200, "ready"},
		{"metrics", "GET", "/metrics", "", 200, "go_goroutines"},
		{"unknown path", "GET", "/nope", "", 404, "no page at /nope"},
		{"panic becomes 500 with request id", "GET", "/panic", "", 500, "quote request id"},
		{"body within limit", "POST", "/echo", "hello", 200, "hello"},
		{"body over 1 MiB", "POST", "/echo", strings.Repeat("x", DefaultMaxBodyBytes+1), 413, "too large"},
		{"domain not found → problem json", "GET", "/api/v1/missing", "", 404, `"detail":"no such tool"`},
		{"invalid names the field", "GET", "/api/v1/invalid", "", 400, `"field":"slug"`},
		{"internal detail hidden", "GET", "/internal", "", 500, "request id"},
		{"database unavailable → 503, retry", "GET", "/api/v1/unavailable", "", 503, "retry in a few seconds"},
		{"wrong method", "POST", "/healthz", "", 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, b.http.URL+tt.path, strings.NewReader(tt.body))
			require.NoError(t, err)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			require.Equal(t, tt.wantStatus, resp.StatusCode, string(body))
			require.Contains(t, string(body), tt.wantContains)
			require.NotContains(t, string(body), "secret-db-user")
			require.NotEmpty(t, resp.Header.Get("X-Request-Id"))
			require.Contains(t, resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
			require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
			require.Equal(t, "same-origin", resp.Header.Get("Referrer-Policy"))
			if tt.wantStatus == http.StatusServiceUnavailable && tt.path != "/readyz" {
				require.Equal(t, "5", resp.Header.Get("Retry-After"))
			}
			require.Contains(t, resp.Header.Get("Strict-Transport-Security"), "max-age=")
		})
	}
	// The internal error's detail was logged, with the request id.
	require.Contains(t, b.logs.String(), "secret-db-user")
	require.Contains(t, b.logs.String(), "kaboom")
}

func TestReadyzFailsWhenNotReady(t *testing.T) {
	t.Parallel()
	b := setup(t, errors.New("dial tcp 10.0.0.5:5432: connection refused"), "http://localhost:8080")
	resp, err := http.Get(b.http.URL + "/readyz")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.NotContains(t, string(body), "10.0.0.5")
	require.Empty(t, resp.Header.Get("Strict-Transport-Security"), "no HSTS on plain http")
}

func TestRequestIDFromCallerIsSanitised(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, "http://localhost:8080")
	for in, keep := range map[string]bool{"abc-123": true, "<script>": false, strings.Repeat("a", 100): false} {
		req, _ := http.NewRequest("GET", b.http.URL+"/healthz", nil)
		req.Header.Set("X-Request-Id", in)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, keep, resp.Header.Get("X-Request-Id") == in, in)
	}
}
