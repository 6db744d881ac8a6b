package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/tenants"
)

// euBundle is the end-user pages served over plain http on 127.0.0.1 (the
// demo IdP accepts loopback redirect URIs), with a tenant whose IdP is a
// real demo IdP and whose upstream is a real Acme Tasks (auto-approving
// the Acme user named by login_hint).
type euBundle struct {
	srv    *Server
	base   string
	svc    *tenants.Service
	broker *consent.Broker
	idp    *idp.IdP
	acme   *tasks.Server
	tenant tenants.Tenant
	up     tenants.Upstream
	logs   *strings.Builder
}

func setupEndUser(t *testing.T) *euBundle {
	t.Helper()
	ctx := context.Background()
	hs := httptest.NewUnstartedServer(nil)
	base := "http://" + hs.Listener.Addr().String()
	u, err := url.Parse(base)
	require.NoError(t, err)
	logs := &strings.Builder{}
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	svc := newTenantsService(t, logger, base)

	demoIdP := idp.NewTestServer(t)
	acme, err := tasks.New(tasks.Config{AutoApprove: true})
	require.NoError(t, err)
	require.NoError(t, acme.Start("127.0.0.1:0"))
	t.Cleanup(func() { _ = acme.Close(context.Background()) })

	acct, err := svc.SignUp(ctx, "owner-"+uniq()+"@acme.example", testPassword)
	require.NoError(t, err)
	tn, err := svc.CreateTenant(ctx, acct.ID, "eu-"+uniq(), "Acme Corp")
	require.NoError(t, err)
	idpSecret := idp.DefaultLocksmithSecret
	_, err = svc.SaveIdP(ctx, tn.ID, tenants.IdPInput{Issuer: demoIdP.URL(), Preset: "generic", ClientID: idp.ClientLocksmith, ClientSecret: &idpSecret})
	require.NoError(t, err)
	acmeSecret := tasks.DefaultClientSecret
	up, err := svc.CreateUpstream(ctx, tn.ID, tenants.UpstreamInput{
		Slug: "acme-tasks", Name: "Acme Tasks", Kind: tenants.UpstreamREST, BaseURL: acme.URL(), AuthMode: tenants.AuthOAuth2,
		Issuer: acme.URL(), ClientID: tasks.DefaultClientID, ClientSecret: &acmeSecret, ScopesOffered: tasks.SupportedScopes(), PKCE: true,
	})
	require.NoError(t, err)

	inserter, err := river.NewClient(riverpgxv5.New(svc.DB().Pool()), &river.Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	vault, err := consent.NewVault(consent.VaultConfig{DB: svc.DB(), Sealer: svc.Sealer(), Inserter: inserter, Logger: logger})
	require.NoError(t, err)
	broker, err := consent.NewBroker(consent.BrokerConfig{Vault: vault, Upstreams: svc, Egress: svc.Egress(), Logger: logger,
		ConsentURL: func(_ context.Context, _ uuid.UUID, up tenants.Upstream, scopes []string) string {
			return consent.ConsentURL(base, tn.Slug, up.Slug, scopes)
		}})
	require.NoError(t, err)

	s, err := New(Config{Logger: logger, BaseURL: u, Ready: fakeReady{}, Registry: NewRegistry(), Tenants: svc, Consent: broker,
		MCP: http.NotFoundHandler()}) // mounted too, so route patterns can't clash
	require.NoError(t, err)
	hs.Config.Handler = s
	hs.Start()
	t.Cleanup(hs.Close)
	return &euBundle{srv: s, base: base, svc: svc, broker: broker, idp: demoIdP, acme: acme, tenant: tn, up: up, logs: logs}
}

// euBrowser is a cookie-keeping HTTP client that follows no redirect by
// itself; its POSTs to Locksmith carry Origin and Sec-Fetch-Site as a
// browser's same-origin form posts do.
type euBrowser struct {
	t   *testing.T
	b   *euBundle
	c   *http.Client
	jar *cookiejar.Jar
}

func (b *euBundle) browser(t *testing.T) *euBrowser {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &euBrowser{t: t, b: b, c: c, jar: jar}
}

// resp is what a test looks at; url is the request's absolute URL.
type resp struct {
	url      string
	status   int
	body     string
	location string
	header   http.Header
}

func (br *euBrowser) abs(u string) string {
	if strings.HasPrefix(u, "/") {
		return br.b.base + u
	}
	return u
}

func (br *euBrowser) do(method, u string, form url.Values, hdr map[string]string) resp {
	br.t.Helper()
	u = br.abs(u)
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	require.NoError(br.t, err)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if strings.HasPrefix(u, br.b.base) {
			req.Header.Set("Origin", br.b.base)
			req.Header.Set("Sec-Fetch-Site", "same-origin")
		}
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	r, err := br.c.Do(req)
	require.NoError(br.t, err)
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	require.NoError(br.t, err)
	loc := ""
	if l, err := r.Location(); err == nil {
		loc = l.String()
	}
	return resp{url: u, status: r.StatusCode, body: string(b), location: loc, header: r.Header}
}

func (br *euBrowser) get(u string) resp { return br.do(http.MethodGet, u, nil, nil) }

func (br *euBrowser) post(u string, form url.Values) resp {
	return br.do(http.MethodPost, u, form, nil)
}

// follow follows redirects from r until a page, or until stop says to
// stop at a redirect target (returned unfollowed as the location).
func (br *euBrowser) follow(r resp, stop func(string) bool) resp {
	br.t.Helper()
	for i := 0; r.location != "" && r.status >= 300 && r.status < 400; i++ {
		require.Less(br.t, i, 20, "redirect loop at %s", r.url)
		if stop != nil && stop(r.location) {
			return r
		}
		r = br.get(r.location)
	}
	return r
}

var authRequestIDRE = regexp.MustCompile(`name="authRequestID" value="([^"]+)"`)

// signIn signs the browser in through the demo IdP as username, starting
// from path (a page that needs sign-in), and returns the page it lands on.
func (br *euBrowser) signIn(path, username string) resp {
	br.t.Helper()
	r := br.follow(br.get(path), nil)
	require.Equal(br.t, http.StatusOK, r.status, "expected the IdP login page at %s: %s", r.url, r.body)
	m := authRequestIDRE.FindStringSubmatch(r.body)
	require.NotNil(br.t, m, "no authRequestID on the IdP login page %s", r.url)
	login, err := url.Parse(r.url)
	require.NoError(br.t, err)
	login.Path, login.RawQuery = "/login", ""
	r = br.do(http.MethodPost, login.String(), url.Values{"authRequestID": {m[1]}, "username": {username}}, nil)
	return br.follow(r, nil)
}

// session returns the end-user session cookie's value ("" if none).
func (br *euBrowser) session() string {
	u, _ := url.Parse(br.b.base + "/t/" + br.b.tenant.Slug + "/me")
	for _, c := range br.jar.Cookies(u) {
		if c.Name == "locksmith_user" {
			return c.Value
		}
	}
	return ""
}

func (br *euBrowser) setSession(v string) {
	u, _ := url.Parse(br.b.base + "/t/" + br.b.tenant.Slug + "/")
	br.jar.SetCookies(u, []*http.Cookie{{Name: "locksmith_user", Value: v, Path: "/t/" + br.b.tenant.Slug + "/"}})
}

// connectPath is the consent page of Acme Tasks with query q.
func (b *euBundle) connectPath(q url.Values) string {
	p := "/t/" + b.tenant.Slug + "/connect/" + b.up.Slug
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return p
}

// allow loads the consent page (the browser must be signed in), clicks
// Allow and returns the upstream authorization URL Locksmith sent it to.
func (br *euBrowser) allow(q url.Values) string {
	br.t.Helper()
	r := br.get(br.b.connectPath(q))
	require.Equal(br.t, http.StatusOK, r.status, r.body)
	require.Contains(br.t, r.body, `data-testid="consent-allow"`)
	form := url.Values{"decision": {"allow"}}
	for k, v := range q {
		form[k] = v
	}
	r = br.post("/t/"+br.b.tenant.Slug+"/connect/"+br.b.up.Slug, form)
	require.Equal(br.t, http.StatusSeeOther, r.status, r.body)
	require.True(br.t, strings.HasPrefix(r.location, br.b.acme.URL()+"/authorize?"), r.location)
	return r.location
}

// acmeApprove has Acme Tasks approve the authorization request as its user
// acmeUser (AutoApprove with login_hint) and returns the callback URL it
// redirects to.
func (b *euBundle) acmeApprove(t *testing.T, authorizeURL, acmeUser string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r, err := c.Get(authorizeURL + "&login_hint=" + url.QueryEscape(acmeUser))
	require.NoError(t, err)
	r.Body.Close()
	require.Equal(t, http.StatusFound, r.StatusCode)
	loc := r.Header.Get("Location")
	require.True(t, strings.HasPrefix(loc, b.base+"/oauth/callback?"), loc)
	return loc
}

// grants returns the tenant's grants of the demo user subject for Acme Tasks.
func (b *euBundle) grant(t *testing.T, subject string) (consent.Grant, bool) {
	t.Helper()
	gs, err := b.broker.Vault().UserGrants(context.Background(), b.tenant.ID, b.idp.URL(), subject)
	require.NoError(t, err)
	for _, g := range gs {
		if g.UpstreamID == b.up.ID {
			return g, true
		}
	}
	return consent.Grant{}, false
}

// requireNoGrant checks that none of the subjects has any grant.
func (b *euBundle) requireNoGrant(t *testing.T, subjects ...string) {
	t.Helper()
	for _, s := range subjects {
		_, ok := b.grant(t, s)
		require.False(t, ok, "%s got a grant", s)
	}
}

// expireStates makes every state of the tenant expired.
func (b *euBundle) expireStates(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, b.svc.DB().InTenant(ctx, b.tenant.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE enduser_states SET expires_at = now() - interval '1 second' WHERE tenant_id = $1", b.tenant.ID)
		return err
	}))
}
