package web

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/tenants"
)

// testPassword satisfies the password rules.
const testPassword = "correct horse battery staple"

// consoleBundle is a console served over TLS on port 0, with BaseURL set to
// its own https address (so the session cookie is __Host-locksmith).
type consoleBundle struct {
	srv  *Server
	http *httptest.Server
	svc  *tenants.Service
	base string
	logs *strings.Builder
}

// setupConsole starts the console; configure may adjust the tenants
// Service's Config.
func setupConsole(t *testing.T, configure ...func(*tenants.Config)) *consoleBundle {
	t.Helper()
	hs := httptest.NewUnstartedServer(nil)
	base := "https://" + hs.Listener.Addr().String()
	u, err := url.Parse(base)
	require.NoError(t, err)
	logs := &strings.Builder{}
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	svc := newTenantsService(t, logger, base, configure...)
	s, err := New(Config{Logger: logger, BaseURL: u, Ready: fakeReady{}, Registry: NewRegistry(), Tenants: svc})
	require.NoError(t, err)
	hs.Config.Handler = s
	hs.StartTLS()
	t.Cleanup(hs.Close)
	return &consoleBundle{srv: s, http: hs, svc: svc, base: base, logs: logs}
}

// uniq returns a short random lowercase suffix for slugs and emails, so
// parallel tests on the shared database don't collide.
func uniq() string { return strings.ReplaceAll(uuid.NewString(), "-", "")[:10] }

// browser is an HTTP client with a cookie jar that behaves like a browser
// on this site: its POSTs carry Origin and Sec-Fetch-Site: same-origin. It
// does not follow redirects, so tests can check them.
type browser struct {
	t    *testing.T
	b    *consoleBundle
	c    *http.Client
	jar  *cookiejar.Jar
	hdrs map[string]string
}

func (b *consoleBundle) browser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	c := new(http.Client)
	*c = *b.http.Client() // a copy: the server's client is shared
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{t: t, b: b, c: c, jar: jar}
}

// response is what a test looks at.
type response struct {
	status   int
	body     string
	location string
	header   http.Header
}

// do sends a request; body is a url-encoded form for POST.
func (br *browser) do(method, path, body string, hdr map[string]string) response {
	br.t.Helper()
	req, err := http.NewRequest(method, br.b.base+path, strings.NewReader(body))
	require.NoError(br.t, err)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", br.b.base)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := br.c.Do(req)
	require.NoError(br.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(br.t, err)
	return response{status: resp.StatusCode, body: string(b), location: resp.Header.Get("Location"), header: resp.Header}
}

func (br *browser) get(path string) response { return br.do(http.MethodGet, path, "", nil) }

func (br *browser) post(path string, form url.Values) response {
	return br.do(http.MethodPost, path, form.Encode(), nil)
}

// session returns the session cookie's value ("" if none).
func (br *browser) session() string {
	u, _ := url.Parse(br.b.base)
	for _, c := range br.jar.Cookies(u) {
		if c.Name == "__Host-locksmith" {
			return c.Value
		}
	}
	return ""
}

// setSession plants a session cookie value (as an attacker would).
func (br *browser) setSession(v string) {
	u, _ := url.Parse(br.b.base)
	br.jar.SetCookies(u, []*http.Cookie{{Name: "__Host-locksmith", Value: v, Path: "/", Secure: true}})
}

// signUp creates an account and leaves the browser signed in.
func (br *browser) signUp(email string) {
	br.t.Helper()
	r := br.post("/signup", url.Values{"email": {email}, "password": {testPassword}})
	require.Equal(br.t, http.StatusSeeOther, r.status, r.body)
	require.NotEmpty(br.t, br.session())
}

// signIn signs in and returns the response.
func (br *browser) signIn(email, password string) response {
	return br.post("/signin", url.Values{"email": {email}, "password": {password}})
}

// createTenant creates a tenant and returns its slug.
func (br *browser) createTenant(slug, name string) string {
	br.t.Helper()
	r := br.post("/console/tenants", url.Values{"slug": {slug}, "name": {name}})
	require.Equal(br.t, http.StatusSeeOther, r.status, r.body)
	require.Equal(br.t, "/console/t/"+slug+"?done=created", r.location)
	return slug
}

// newOwner signs a new account up and creates a tenant.
func (b *consoleBundle) newOwner(t *testing.T, name string) (*browser, string, string) {
	t.Helper()
	br := b.browser(t)
	id := uniq()
	email := "owner-" + id + "@acme.example"
	br.signUp(email)
	slug := br.createTenant("acme-"+id, name)
	return br, slug, email
}

// invite creates an invitation link for role and returns its path.
func (br *browser) invite(slug, role string) string {
	br.t.Helper()
	r := br.post("/console/t/"+slug+"/members/invite", url.Values{"role": {role}})
	require.Equal(br.t, http.StatusOK, r.status, r.body)
	m := regexp.MustCompile(`value="(https://[^"]*/invite/[^"]+)"`).FindStringSubmatch(r.body)
	if m != nil {
		u, err := url.Parse(m[1])
		require.NoError(br.t, err)
		return u.Path
	}
	br.t.Fatalf("no invitation link in %s", r.body)
	return ""
}

// joinAs signs a new account up through an invitation link and accepts it.
func (b *consoleBundle) joinAs(t *testing.T, owner *browser, slug, role string) (*browser, string) {
	t.Helper()
	path := owner.invite(slug, role)
	br := b.browser(t)
	email := role + "-" + uniq() + "@acme.example"
	r := br.get(path)
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `data-testid="invite-signup"`)
	r = br.post("/signup", url.Values{"email": {email}, "password": {testPassword}, "next": {path}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Equal(t, path, r.location)
	r = br.post(path, nil)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Equal(t, "/console/t/"+slug+"?done=joined", r.location)
	return br, email
}
