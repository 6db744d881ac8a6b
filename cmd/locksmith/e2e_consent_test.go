package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/web"
)

// withConsentPages makes sure the server mounts the end-user pages: when
// Main's web server was built without its token broker (web.Config.Consent),
// the test rebuilds it with the broker. Once Main passes the broker, this
// does nothing.
func withConsentPages(t *testing.T, m *Main) {
	rec := httptest.NewRecorder()
	m.Server.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/oauth/callback", nil))
	if rec.Code != http.StatusNotFound {
		return
	}
	srv, err := web.New(web.Config{Logger: m.Logger, BaseURL: m.Config.BaseURL, Ready: readiness{m.DB}, Tenants: m.Tenants,
		Registry: web.NewRegistry(), Consent: m.Broker})
	require.NoError(t, err)
	m.Server = srv
	m.http = srv.HTTPServer(m.Config.Addr)
}

// TestBrowserConsent drives the end-user pages in headless Chromium: a demo
// user follows a consent link, signs in through the demo IdP, allows Acme
// Tasks at Locksmith and at Acme Tasks, sees the grant in My connections
// and disconnects it; Acme Tasks receives the revocation and the broker
// refuses the grant from then on. Screenshots of each step go to
// screenshots/ (git-ignored).
func TestBrowserConsent(t *testing.T) {
	t.Parallel()
	st := startStack(t, withConsentPages)
	ctx := browser(t)
	bg := context.Background()
	svc := st.Main.Tenants

	owner, err := svc.SignUp(bg, "owner-"+uuid.NewString()[:8]+"@example.com", "a long enough password")
	require.NoError(t, err)
	tn, err := svc.CreateTenant(bg, owner.ID, "consent-"+uuid.NewString()[:8], "Acme Corp")
	require.NoError(t, err)
	idpSecret := idp.DefaultLocksmithSecret
	_, err = svc.SaveIdP(bg, tn.ID, tenants.IdPInput{Issuer: st.IdP.URL(), Preset: "generic", ClientID: idp.ClientLocksmith, ClientSecret: &idpSecret})
	require.NoError(t, err)
	acmeSecret := tasks.DefaultClientSecret
	up, err := svc.CreateUpstream(bg, tn.ID, tenants.UpstreamInput{
		Slug: "acme-tasks", Name: "Acme Tasks", Kind: tenants.UpstreamREST, BaseURL: st.Tasks.URL(), AuthMode: tenants.AuthOAuth2,
		Issuer: st.Tasks.URL(), ClientID: tasks.DefaultClientID, ClientSecret: &acmeSecret, ScopesOffered: tasks.SupportedScopes(),
		PKCE: true, RefreshNarrows: true,
	})
	require.NoError(t, err)

	// The link an agent hands its user.
	link := consent.ConsentURL(st.URL, tn.Slug, up.Slug, []string{tasks.ScopeRead, tasks.ScopeWrite}) + "&" + url.Values{
		"agent": {"Claude Desktop"}, "return_to": {"/t/" + tn.Slug + "/me"}}.Encode()

	// Signed out, so Locksmith sends the user to the tenant's IdP.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(link),
		chromedp.WaitVisible(tid("login-engineer")),
	))
	require.Equal(t, idp.ClientLocksmith, text(t, ctx, "login-client"))
	screenshot(t, ctx, "idp-login")

	// Back at Locksmith: the consent page.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("login-engineer")),
		chromedp.WaitVisible(tid("consent-allow")),
	))
	require.Equal(t, "Acme Corp", text(t, ctx, "eu-tenant"))
	require.Equal(t, "Acme Tasks", text(t, ctx, "consent-upstream"))
	require.Contains(t, text(t, ctx, "consent-agent"), "Claude Desktop")
	require.Contains(t, text(t, ctx, "consent-scopes"), "Read your tasks")
	require.Contains(t, text(t, ctx, "consent-scopes"), "Create and change your tasks")
	require.Equal(t, "engineer@acme.example", text(t, ctx, "eu-user"))
	screenshot(t, ctx, "consent")

	// Allow → Acme Tasks' own consent page: pick the user, allow.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("consent-allow")),
		chromedp.WaitVisible(tid("as-user-engineer")),
		chromedp.Click(tid("as-user-engineer")),
		chromedp.WaitVisible(tid("as-selected-user")),
	))
	screenshot(t, ctx, "acme-consent")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("as-allow")),
		chromedp.WaitVisible(tid("connected")),
	))
	require.Equal(t, "Connected. You can go back to your agent.", text(t, ctx, "page-title"))
	screenshot(t, ctx, "connected")

	// The grant is bound to the IdP user and works.
	user := consent.User{Issuer: st.IdP.URL(), Subject: idp.UserEngineer}
	tok, err := st.Main.Broker.Token(bg, tn.ID, up.ID, user, []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.NotEmpty(t, tok.Value)

	// My connections lists it; disconnect.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("connected-return")),
		chromedp.WaitVisible(tid("connections")),
	))
	require.Equal(t, "Acme Tasks", text(t, ctx, "connection-upstream"))
	require.Equal(t, "Connected", text(t, ctx, "connection-status"))
	require.Contains(t, text(t, ctx, "connection-scopes"), "Read your tasks")
	screenshot(t, ctx, "my-connections")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("connection-disconnect")),
		chromedp.WaitVisible(tid("notice")),
		chromedp.WaitVisible(tid("connections-empty")),
	))
	screenshot(t, ctx, "disconnected")

	// The broker refuses the grant at once; the job revokes it at Acme Tasks.
	_, err = st.Main.Broker.Token(bg, tn.ID, up.ID, user, nil)
	require.True(t, errors.Is(err, consent.ErrRevoked), "%v", err)
	require.Eventually(t, func() bool { return len(st.Tasks.Stats().Revocations) > 0 }, 10*time.Second, 50*time.Millisecond,
		"Acme Tasks received no revocation")
	rev := st.Tasks.Stats().Revocations[0]
	require.Equal(t, tasks.DefaultClientID, rev.ClientID)
	require.Equal(t, tasks.KindRefreshToken, rev.Kind, "the refresh token, which revokes the whole family")
	require.True(t, rev.Revoked)
	_, err = st.Main.Broker.Token(bg, tn.ID, up.ID, user, []string{tasks.ScopeRead})
	require.True(t, errors.Is(err, consent.ErrRevoked), "%v", err)

	// A link the MCP endpoint made for another user is refused.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(link+"&sub_hint="+idp.UserApprover),
		chromedp.WaitVisible(tid("eu-switch-account")),
	))
	require.Equal(t, "This link was made for a different account", text(t, ctx, "page-title"))
	screenshot(t, ctx, "other-account")
}
