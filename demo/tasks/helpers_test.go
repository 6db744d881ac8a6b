package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/oauth2"

	"github.com/locksmithhq/locksmith/demo/tasks"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testRedirectURI is a loopback callback the default client may use; nothing
// listens there, tests read the Location header instead of following it.
const testRedirectURI = "http://127.0.0.1:9/callback"

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type testBundle struct {
	srv   *tasks.Server
	clock *fakeClock
	// http does not follow redirects.
	http  *http.Client
	oauth *oauth2.Config
	// ctx carries http as oauth2.HTTPClient.
	ctx context.Context
}

// setup starts a Server on 127.0.0.1:0 with a fake clock, closed (and its
// client's idle connections too) when the test ends.
func setup(t *testing.T, mutate ...func(*tasks.Config)) *testBundle {
	t.Helper()
	clock := &fakeClock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	cfg := tasks.Config{
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		Clock:  clock.Now,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	srv, err := tasks.New(cfg)
	require.NoError(t, err)
	require.NoError(t, srv.Start("127.0.0.1:0"))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Close(ctx))
	})
	client := &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(client.CloseIdleConnections)
	return &testBundle{
		srv:   srv,
		clock: clock,
		http:  client,
		oauth: &oauth2.Config{
			ClientID:     tasks.DefaultClientID,
			ClientSecret: tasks.DefaultClientSecret,
			Endpoint:     oauth2.Endpoint{AuthURL: srv.AuthURL(), TokenURL: srv.TokenURL(), AuthStyle: oauth2.AuthStyleInHeader},
			RedirectURL:  testRedirectURI,
			Scopes:       []string{tasks.ScopeRead, tasks.ScopeWrite},
		},
		ctx: context.WithValue(t.Context(), oauth2.HTTPClient, client),
	}
}

// do sends a request to the server with an optional bearer token and returns
// the response (body closed) and its body.
func (b *testBundle) do(t *testing.T, method, path, bearer, body string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, b.srv.URL()+path, rd)
	require.NoError(t, err)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.http.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(raw)
}

// postForm posts form to path with the default client's credentials in the
// Basic header (when basic) and returns status, headers and decoded JSON.
func (b *testBundle) postForm(t *testing.T, path string, form url.Values, basic bool) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, b.srv.URL()+path, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(tasks.DefaultClientID, tasks.DefaultClientSecret)
	}
	resp, err := b.http.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	body := map[string]any{}
	if len(raw) > 0 {
		require.NoError(t, json.Unmarshal(raw, &body), string(raw))
	}
	return resp, body
}

// refresh runs a refresh grant through golang.org/x/oauth2.
func (b *testBundle) refresh(rt string) (*oauth2.Token, error) {
	return b.oauth.TokenSource(b.ctx, &oauth2.Token{RefreshToken: rt}).Token()
}

// refreshWithScope runs a refresh grant with a scope parameter.
func (b *testBundle) refreshWithScope(t *testing.T, rt, scope string) (*http.Response, map[string]any) {
	t.Helper()
	return b.postForm(t, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {scope}}, true)
}

// issue creates a grant through the Go API.
func (b *testBundle) issue(t *testing.T, user string, scopes ...string) tasks.TokenResponse {
	t.Helper()
	tok, err := b.srv.IssueTokens(user, tasks.DefaultClientID, scopes)
	require.NoError(t, err)
	return tok
}

var requestIDRE = regexp.MustCompile(`name="request_id" value="([^"]+)"`)

// startAuthorization opens the consent page for authURL and returns the
// pending request id and the page.
func (b *testBundle) startAuthorization(t *testing.T, authURL string) (string, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, authURL, nil)
	require.NoError(t, err)
	resp, err := b.http.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(page))
	m := requestIDRE.FindStringSubmatch(string(page))
	require.NotNil(t, m, "request_id in consent page")
	return m[1], string(page)
}

// decide posts the consent decision and returns the redirect target.
func (b *testBundle) decide(t *testing.T, requestID, user, decision string) *url.URL {
	t.Helper()
	resp, body := b.postDecision(t, url.Values{"request_id": {requestID}, "selected_user": {user}, "decision": {decision}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	loc, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	return loc
}

func (b *testBundle) postDecision(t *testing.T, form url.Values) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, b.srv.URL()+"/authorize/decision", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := b.http.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(raw)
}

// authorize runs the consent flow for user with the bundle's oauth config and
// verifier, and returns the authorization code.
func (b *testBundle) authorize(t *testing.T, user, verifier string, opts ...oauth2.AuthCodeOption) string {
	t.Helper()
	opts = append(opts, oauth2.S256ChallengeOption(verifier))
	reqID, _ := b.startAuthorization(t, b.oauth.AuthCodeURL("state-1", opts...))
	loc := b.decide(t, reqID, user, "allow")
	require.Equal(t, "state-1", loc.Query().Get("state"))
	require.Equal(t, b.srv.URL(), loc.Query().Get("iss"))
	code := loc.Query().Get("code")
	require.NotEmpty(t, code, loc.String())
	return code
}

// errorCode returns the OAuth error code of an x/oauth2 error, or "".
func errorCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}
