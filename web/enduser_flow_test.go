package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
)

// TestEndUserConsentFlow runs the whole flow against the real demo IdP and
// Acme Tasks: sign-in, consent, the grant bound to the IdP user, My
// connections, incremental consent, disconnect.
func TestEndUserConsentFlow(t *testing.T) {
	t.Parallel()
	b := setupEndUser(t)
	br := b.browser(t)
	slug := b.tenant.Slug
	q := url.Values{"scope": {tasks.ScopeRead + " " + tasks.ScopeWrite}, "agent": {"Claude Desktop"}, "return_to": {"/t/" + slug + "/me"}}

	// Signed out: the consent link sends the browser through the IdP and back.
	page := br.signIn(b.connectPath(q), idp.UsernameEngineer)
	require.Equal(t, http.StatusOK, page.status, page.body)
	require.Equal(t, br.abs(b.connectPath(q)), page.url, "back on the consent page after sign-in")
	for _, want := range []string{
		`data-testid="eu-tenant">Acme Corp<`, `data-testid="consent-upstream">Acme Tasks<`, "Claude Desktop",
		"Read your tasks", "Create and change your tasks", `data-testid="eu-user"`, "engineer@acme.example", `data-testid="eu-not-you"`,
	} {
		require.Contains(t, page.body, want)
	}
	require.NotContains(t, page.body, "Delete your tasks")
	csp := page.header.Get("Content-Security-Policy")
	require.Contains(t, csp, "form-action 'self' "+b.acme.URL(), "Allow leads to Acme Tasks' authorize endpoint")
	require.Contains(t, csp, "frame-ancestors 'none'")

	authz := br.allow(q)
	au, err := url.Parse(authz)
	require.NoError(t, err)
	aq := au.Query()
	require.Equal(t, tasks.DefaultClientID, aq.Get("client_id"))
	require.Equal(t, b.base+"/oauth/callback", aq.Get("redirect_uri"))
	require.Equal(t, "S256", aq.Get("code_challenge_method"))
	require.NotEmpty(t, aq.Get("code_challenge"))
	require.Equal(t, tasks.ScopeRead+" "+tasks.ScopeWrite, aq.Get("scope"))
	require.True(t, strings.HasPrefix(aq.Get("state"), slug+"."))

	done := br.follow(br.get(b.acmeApprove(t, authz, "engineer")), nil)
	require.Equal(t, http.StatusOK, done.status, done.body)
	require.Contains(t, done.body, "Connected. You can go back to your agent.")
	require.Contains(t, done.body, `href="/t/`+slug+`/me" data-testid="connected-return"`)

	g, ok := b.grant(t, idp.UserEngineer)
	require.True(t, ok)
	require.Equal(t, consent.StatusActive, g.Status)
	require.Equal(t, b.idp.URL(), g.Issuer)
	require.Equal(t, "engineer@acme.example", g.Email)
	require.Equal(t, []string{tasks.ScopeRead, tasks.ScopeWrite}, g.Scopes)
	user := consent.User{Issuer: b.idp.URL(), Subject: idp.UserEngineer}
	tok, err := b.broker.Token(context.Background(), b.tenant.ID, b.up.ID, user, []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.NotEmpty(t, tok.Value)

	// My connections lists it.
	me := br.get("/t/" + slug + "/me")
	require.Equal(t, http.StatusOK, me.status, me.body)
	require.Contains(t, me.body, `data-testid="connection-`+g.ID.String()+`"`)
	require.Contains(t, me.body, "Read your tasks")
	require.Contains(t, me.body, `data-testid="actions-empty"`)

	// Asking for more later merges the scopes (incremental consent), and the
	// upstream is asked for all of them.
	q2 := url.Values{"scope": {tasks.ScopeDelete}}
	page = br.get(b.connectPath(q2))
	require.Contains(t, page.body, "Delete your tasks")
	require.Contains(t, page.body, `data-testid="risk-tasks:delete"`)
	authz = br.allow(q2)
	au, _ = url.Parse(authz)
	require.ElementsMatch(t, tasks.SupportedScopes(), strings.Fields(au.Query().Get("scope")))
	done = br.follow(br.get(b.acmeApprove(t, authz, "engineer")), nil)
	require.Equal(t, http.StatusOK, done.status, done.body)
	require.NotContains(t, done.body, `data-testid="connected-return"`, "no return_to, no link")
	g, _ = b.grant(t, idp.UserEngineer)
	require.Equal(t, []string{tasks.ScopeDelete, tasks.ScopeRead, tasks.ScopeWrite}, g.Scopes)

	// Disconnect: tokens gone at once, the broker refuses from then on.
	r := br.post("/t/"+slug+"/me/connections/"+g.ID.String()+"/disconnect", nil)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	me = br.follow(r, nil)
	require.Contains(t, me.body, `data-testid="notice"`)
	require.Contains(t, me.body, `data-testid="connections-empty"`)
	g, _ = b.grant(t, idp.UserEngineer)
	require.Equal(t, consent.StatusRevoked, g.Status)
	_, err = b.broker.Token(context.Background(), b.tenant.ID, b.up.ID, user, nil)
	require.True(t, errors.Is(err, consent.ErrRevoked), "%v", err)

	// Disconnecting again, or an id that is not the user's, is a 404.
	r = br.post("/t/"+slug+"/me/connections/"+g.ID.String()+"/disconnect", nil)
	require.Equal(t, http.StatusSeeOther, r.status, "revoking a revoked grant is a no-op")
	r = br.post("/t/"+slug+"/me/connections/00000000-0000-0000-0000-000000000001/disconnect", nil)
	require.Equal(t, http.StatusNotFound, r.status)
}

// TestEndUserSessionRotatesAtSignIn: the session id changes at every
// sign-in, the previous one stops working, and a planted cookie is never
// adopted. The cookie is scoped to the tenant's pages.
func TestEndUserSessionRotatesAtSignIn(t *testing.T) {
	t.Parallel()
	b := setupEndUser(t)
	br := b.browser(t)
	slug := b.tenant.Slug
	br.setSession("planted-by-an-attacker-planted-by-an-attacker")

	r := br.get("/t/" + slug + "/me")
	require.Equal(t, http.StatusSeeOther, r.status, "a planted cookie is not a session")
	r = br.signIn("/t/"+slug+"/me", idp.UsernameEngineer)
	require.Equal(t, http.StatusOK, r.status, r.body)
	first := br.session()
	require.NotEmpty(t, first)
	require.NotEqual(t, "planted-by-an-attacker-planted-by-an-attacker", first)

	r = br.signIn("/t/"+slug+"/auth/signin?next=/t/"+slug+"/me", idp.UsernameEngineer)
	require.Equal(t, http.StatusOK, r.status, r.body)
	second := br.session()
	require.NotEmpty(t, second)
	require.NotEqual(t, first, second)

	stale := b.browser(t)
	stale.setSession(first)
	require.Equal(t, http.StatusSeeOther, stale.get("/t/"+slug+"/me").status, "the previous session ended")
	require.Equal(t, http.StatusOK, br.get("/t/"+slug+"/me").status)

	// Cookie attributes under https.
	s := &Server{cfg: Config{BaseURL: mustURL(t, "https://locksmith.example.com")}}
	c := s.enduserCookie("acme", "v", 60)
	require.Equal(t, "__Secure-locksmith-user", c.Name)
	require.Equal(t, "/t/acme/", c.Path)
	require.True(t, c.Secure)
	require.True(t, c.HttpOnly)
	require.Equal(t, http.SameSiteLaxMode, c.SameSite)

	// Sign-out deletes the session server-side.
	r = br.post("/t/"+slug+"/auth/signout", nil)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, "You are signed out")
	stale.setSession(second)
	require.Equal(t, http.StatusSeeOther, stale.get("/t/"+slug+"/me").status)
}

func mustURL(t *testing.T, raw string) *url.URL {
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u
}

// TestEndUserNotYou: "Not you?" signs out and signs in again, asking the
// IdP for its login screen, and comes back to the consent page.
func TestEndUserNotYou(t *testing.T) {
	t.Parallel()
	b := setupEndUser(t)
	br := b.browser(t)
	slug := b.tenant.Slug
	path := b.connectPath(url.Values{"scope": {tasks.ScopeRead}})
	br.signIn(path, idp.UsernameEngineer)
	r := br.post("/t/"+slug+"/auth/signout", url.Values{"switch": {"1"}, "next": {path}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Equal(t, br.abs("/t/"+slug+"/auth/signin?next="+url.QueryEscape(path)+"&switch=1"), r.location)
	r = br.get(r.location)
	require.Equal(t, http.StatusSeeOther, r.status)
	require.Contains(t, r.location, "prompt=login")
	page := br.signIn(r.location, idp.UsernameApprover)
	require.Equal(t, br.abs(path), page.url)
	require.Contains(t, page.body, "approver@acme.example")
}

// TestEndUserPagesNeedKnownTenantAndIdP: an unknown tenant is a 404; a
// tenant without an IdP says sign-in isn't set up.
func TestEndUserPagesNeedKnownTenantAndIdP(t *testing.T) {
	t.Parallel()
	b := setupEndUser(t)
	br := b.browser(t)
	r := br.get("/t/no-such-tenant-" + uniq() + "/me")
	require.Equal(t, http.StatusNotFound, r.status)
	require.Contains(t, r.body, "There is no organisation at this address")

	require.NoError(t, b.svc.DeleteIdP(context.Background(), b.tenant.ID))
	r = br.follow(br.get("/t/"+b.tenant.Slug+"/me"), nil)
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Contains(t, r.body, "Sign-in isn&#39;t set up yet")

	r = br.get("/t/" + b.tenant.Slug + "/connect/nope")
	require.Equal(t, http.StatusNotFound, r.status)
}

// TestEndUserConnectionsPage: a connection that stopped working offers
// Reconnect (to a consent page that says so), and the user's own recent
// agent actions are listed, nobody else's.
func TestEndUserConnectionsPage(t *testing.T) {
	t.Parallel()
	b := setupEndUser(t)
	ctx := context.Background()
	slug := b.tenant.Slug
	br := b.signedIn(t, idp.UsernameEngineer)
	issued, err := b.acme.IssueTokens("engineer", tasks.DefaultClientID, []string{tasks.ScopeRead})
	require.NoError(t, err)
	g, err := b.broker.Vault().SaveGrant(ctx, b.tenant.ID, b.up.ID, consent.User{Issuer: b.idp.URL(), Subject: idp.UserEngineer},
		consent.Tokens{AccessToken: issued.AccessToken, RefreshToken: issued.RefreshToken, Scopes: []string{tasks.ScopeRead}})
	require.NoError(t, err)
	require.NoError(t, b.broker.Vault().MarkNeedsReauth(ctx, b.tenant.ID, g.ID, consent.NeedsReauthInvalidGrant))

	require.NoError(t, b.svc.DB().InTenant(ctx, b.tenant.ID, func(tx pgx.Tx) error {
		for i, row := range []struct{ subject, tool, decision string }{
			{idp.UserEngineer, "tasks.list", "allow"},
			{idp.UserApprover, "tasks.secret_of_another_user", "allow"},
			{idp.UserEngineer, "tasks.delete", "deny"},
		} {
			if _, err := tx.Exec(ctx, `INSERT INTO audit_events (tenant_id, seq, at, kind, user_issuer, user_subject, agent, tool, upstream, upstream_name, decision, reason)
				VALUES ($1, $2, now(), 'call', $3, $4, 'Claude Desktop', $5, 'acme-tasks', 'Acme Tasks', $6, 'needs 2 approvals')`,
				b.tenant.ID, 2*i+1, b.idp.URL(), row.subject, row.tool, row.decision); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO audit_events (tenant_id, seq, at, kind, intent_seq, status) VALUES ($1, $2, now(), 'outcome', $3, 200)`,
				b.tenant.ID, 2*i+2, 2*i+1); err != nil {
				return err
			}
		}
		return nil
	}))

	me := br.get("/t/" + slug + "/me")
	require.Equal(t, http.StatusOK, me.status, me.body)
	require.Contains(t, me.body, `data-status="needs_reauth"`)
	require.Contains(t, me.body, "no longer accepts this connection")
	reconnect := "/t/" + slug + "/connect/acme-tasks?return_to=%2Ft%2F" + slug + "%2Fme&amp;scope=tasks%3Aread"
	require.Contains(t, me.body, `href="`+reconnect+`"`)
	require.Contains(t, me.body, "tasks.list")
	require.Contains(t, me.body, "denied: needs 2 approvals")
	require.NotContains(t, me.body, "secret_of_another_user")

	page := br.get(strings.ReplaceAll(reconnect, "&amp;", "&"))
	require.Equal(t, http.StatusOK, page.status, page.body)
	require.Contains(t, page.body, `data-testid="consent-reconnect"`)
}
