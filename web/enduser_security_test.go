package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
)

// Every test here tries to break one rule of the consent flow (see
// THREATS.md, "Consent and browser flows") and checks that nothing was
// granted.

var readScope = url.Values{"scope": {tasks.ScopeRead}}

// signedIn returns a browser signed in as the demo user username.
func (b *euBundle) signedIn(t *testing.T, username string) *euBrowser {
	t.Helper()
	br := b.browser(t)
	r := br.signIn("/t/"+b.tenant.Slug+"/me", username)
	require.Equal(t, http.StatusOK, r.status, r.body)
	return br
}

func TestEndUserReplayedState(t *testing.T) {
	t.Parallel()
	b := setupEndUser(t)
	br := b.signedIn(t, idp.UsernameEngineer)
	callback := b.acmeApprove(t, br.allow(readScope), "engineer")
	r := br.follow(br.get(callback), nil)
	require.Equal(t, http.StatusOK, r.status, r.body)
	g, ok := b.grant(t, idp.UserEngineer)
	require.True(t, ok)

	r = br.follow(br.get(callback), nil)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.body, "This link was already used")
	// The code was not presented again (Acme Tasks would have revoked the
	// token family on a replayed code): the grant still works.
	again, _ := b.grant(t, idp.UserEngineer)
	require.Equal(t, g.Version, again.Version)
	_, err := b.broker.Token(context.Background(), b.tenant.ID, b.up.ID, consent.User{Issuer: b.idp.URL(), Subject: idp.UserEngineer}, nil)
	require.NoError(t, err)
	require.Zero(t, b.acme.Stats().CodeReplays)
}

func TestEndUserStateFromAnotherBrowserSession(t *testing.T) {
	t.Parallel()
	b := setupEndUser(t)
	first := b.signedIn(t, idp.UsernameEngineer)
	callback := b.acmeApprove(t, first.allow(readScope), "engineer")

	// The same person, signed in in another browser (another session).
	other := b.signedIn(t, idp.UsernameEngineer)
	r := other.follow(other.get(callback), nil)
	require.Equal(t, http.StatusForbidden, r.status)
	require.Contains(t, r.body, "started in another browser session")
	// A browser with no session at all.
	anon := b.browser(t)
	r = anon.follow(anon.get(callback), nil)
	require.Equal(t, http.StatusForbidden, r.status)
	b.requireNoGrant(t, idp.UserEngineer)

	// The refusal did not burn the state: the browser that started it finishes.
	r = first.follow(first.get(callback), nil)
	require.Equal(t, http.StatusOK, r.status, r.body)
	_, ok := b.grant(t, idp.UserEngineer)
	require.True(t, ok)
}

func TestEndUserExpiredState(t *testing.T) {
	t.Parallel()
	b := setupEndUser(t)
	br := b.signedIn(t, idp.UsernameEngineer)
	callback := b.acmeApprove(t, br.allow(readScope), "engineer")
	b.expireStates(t)
	r := br.follow(br.get(callback), nil)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.body, "This link expired")
	b.requireNoGrant(t, idp.UserEngineer)
}

func TestEndUserMissingOrForgedState(t *testing.T) {
	t.Parallel()
	b := setupEndUser(t)
	br := b.signedIn(t, idp.UsernameEngineer)
	for _, q := range []string{"code=x", "code=x&state=", "code=x&state=" + b.tenant.Slug + ".forged", "code=x&state=no-dot", "code=x&state=UPPER.x"} {
		r := br.follow(br.get("/oauth/callback?"+q), nil)
		require.Equal(t, http.StatusBadRequest, r.status, q)
		require.Contains(t, r.body, "This link doesn", q)
	}
	b.requireNoGrant(t, idp.UserEngineer)
}

func TestEndUserTamperedCode(t *testing.T) {
	t.Parallel()
	b := setupEndUser(t)
	br := b.signedIn(t, idp.UsernameEngineer)
	callback := b.acmeApprove(t, br.allow(readScope), "engineer")
	u, err := url.Parse(callback)
	require.NoError(t, err)
	q := u.Query()
	q.Set("code", q.Get("code")+"x")
	u.RawQuery = q.Encode()
	r := br.follow(br.get(u.String()), nil)
	require.Equal(t, http.StatusBadRequest, r.status, r.body)
	require.Contains(t, r.body, "Acme Tasks refused the connection")
	require.Contains(t, r.body, "invalid_grant")
	b.requireNoGrant(t, idp.UserEngineer)
}

func TestEndUserIssuerMixUp(t *testing.T) {
	t.Parallel()
	b := setupEndUser(t)
	br := b.signedIn(t, idp.UsernameEngineer)
	callback := b.acmeApprove(t, br.allow(readScope), "engineer")
	u, err := url.Parse(callback)
	require.NoError(t, err)
	q := u.Query()
	require.Equal(t, b.acme.URL(), q.Get("iss"), "Acme Tasks sends RFC 9207 iss")
	q.Set("iss", "https://evil.example")
	u.RawQuery = q.Encode()
	r := br.follow(br.get(u.String()), nil)
	require.Equal(t, http.StatusBadRequest, r.status, r.body)
	require.Contains(t, r.body, "The answer came from the wrong place")
	b.requireNoGrant(t, idp.UserEngineer)
}

// TestEndUserSecondUserCompletesFirstUsersLink: the upstream authorization
// started by one user, completed in another user's browser, grants nothing
// to either; a consent link made for one user (login_hint, for, sub_hint)
// is refused to another before anything starts.
func TestEndUserSecondUserCompletesFirstUsersLink(t *testing.T) {
	t.Parallel()
	b := setupEndUser(t)
	engineer := b.signedIn(t, idp.UsernameEngineer)
	approver := b.signedIn(t, idp.UsernameApprover)

	authz := engineer.allow(readScope)
	for _, acmeUser := range []string{"engineer", "approver"} {
		r := approver.follow(approver.get(b.acmeApprove(t, authz, acmeUser)), nil)
		require.Equal(t, http.StatusForbidden, r.status, r.body)
		require.Contains(t, r.body, "This link was made for a different account")
	}
	b.requireNoGrant(t, idp.UserEngineer, idp.UserApprover)

	for _, hint := range []url.Values{
		{"sub_hint": {idp.UserEngineer}},
		{"login_hint": {"engineer@acme.example"}},
		{"for": {idp.UserEngineer}},
	} {
		q := url.Values{"scope": {tasks.ScopeRead}}
		for k, v := range hint {
			q[k] = v
		}
		r := approver.get(b.connectPath(q))
		require.Equal(t, http.StatusForbidden, r.status, "%v", hint)
		require.Contains(t, r.body, "This link was made for a different account")
		require.Contains(t, r.body, `data-testid="eu-switch-account"`)
		form := url.Values{"decision": {"allow"}}
		for k, v := range q {
			form[k] = v
		}
		r = approver.post("/t/"+b.tenant.Slug+"/connect/"+b.up.Slug, form)
		require.Equal(t, http.StatusForbidden, r.status, "%v", hint)

		// The user it was made for gets the consent page.
		r = engineer.get(b.connectPath(q))
		require.Equal(t, http.StatusOK, r.status, "%v", hint)
	}
	b.requireNoGrant(t, idp.UserEngineer, idp.UserApprover)
}

func TestEndUserCrossSitePostRefused(t *testing.T) {
	t.Parallel()
	b := setupEndUser(t)
	br := b.signedIn(t, idp.UsernameEngineer)
	r := br.follow(br.get(b.acmeApprove(t, br.allow(readScope), "engineer")), nil)
	require.Equal(t, http.StatusOK, r.status, r.body)
	g, _ := b.grant(t, idp.UserEngineer)
	slug := b.tenant.Slug

	for _, hdr := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
		{"Sec-Fetch-Site": "", "Origin": "https://evil.example"},
		{"Sec-Fetch-Site": "same-site", "Origin": "http://evil.localhost"},
	} {
		for _, path := range []string{
			"/t/" + slug + "/me/connections/" + g.ID.String() + "/disconnect",
			"/t/" + slug + "/connect/" + b.up.Slug,
			"/t/" + slug + "/auth/signout",
		} {
			r := br.do(http.MethodPost, path, url.Values{"decision": {"allow"}, "scope": {tasks.ScopeRead}}, hdr)
			require.Equal(t, http.StatusForbidden, r.status, "%s %v", path, hdr)
			require.Contains(t, r.body, "came from another site")
			require.Contains(t, r.body, `data-testid="eu-tenant">Acme Corp<`, "the refusal is branded")
		}
	}
	g2, _ := b.grant(t, idp.UserEngineer)
	require.Equal(t, consent.StatusActive, g2.Status)
	require.NotEmpty(t, br.session())
	require.Equal(t, http.StatusOK, br.get("/t/"+slug+"/me").status, "still signed in")
}

// TestEndUserSignInBoundToBrowser: an IdP answer for a sign-in started in
// another browser is refused (login CSRF), and its state can't be replayed.
func TestEndUserSignInBoundToBrowser(t *testing.T) {
	t.Parallel()
	b := setupEndUser(t)
	attacker := b.browser(t)
	r := attacker.get("/t/" + b.tenant.Slug + "/auth/signin?next=/t/" + b.tenant.Slug + "/me")
	require.Equal(t, http.StatusSeeOther, r.status)
	// The attacker signs in at the IdP and hands the callback to a victim.
	r = attacker.follow(r, nil)
	m := authRequestIDRE.FindStringSubmatch(r.body)
	require.NotNil(t, m)
	login, _ := url.Parse(r.url)
	login.Path, login.RawQuery = "/login", ""
	r = attacker.follow(attacker.do(http.MethodPost, login.String(), url.Values{"authRequestID": {m[1]}, "username": {idp.UsernameApprover}}, nil),
		func(loc string) bool { return strings.Contains(loc, "/auth/callback?") })
	callback := r.location
	require.Contains(t, callback, "/t/"+b.tenant.Slug+"/auth/callback?")

	victim := b.browser(t)
	r = victim.get(callback)
	require.Equal(t, http.StatusForbidden, r.status, r.body)
	require.Contains(t, r.body, "This sign-in was started elsewhere")
	require.Empty(t, victim.session())

	r = attacker.get(callback)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.NotEmpty(t, attacker.session())
	r = attacker.get(callback)
	require.Equal(t, http.StatusBadRequest, r.status, "a sign-in state is single use")
}

// TestEndUserNamesRenderedInert: names and the agent from the link are
// escaped, never markup.
func TestEndUserNamesRenderedInert(t *testing.T) {
	t.Parallel()
	b := setupEndUser(t)
	require.NoError(t, b.svc.RenameTenant(context.Background(), b.tenant.ID, `<script>alert("t")</script>`))
	br := b.signedIn(t, idp.UsernameEngineer)
	r := br.get(b.connectPath(url.Values{"scope": {tasks.ScopeRead + ` x:<img/src=x>`}, "agent": {`<script>alert(1)</script>`}}))
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.NotContains(t, r.body, "<script>alert")
	require.NotContains(t, r.body, "<img/src")
	require.Contains(t, r.body, "&lt;script&gt;alert(1)&lt;/script&gt;")
}

func TestEndUserSafeReturnPath(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		"", "https://evil.example", "http://evil.example/t/x/me", "//evil.example", "///evil.example", "https:evil", "https:/evil",
		`/\evil.example`, `\\evil.example`, `\/evil.example`, "/\t/evil.example", "/\n/evil.example", "javascript:alert(1)",
		"evil.example", " /t/x", "/t/x me", "/\x01x", "//", "/" + strings.Repeat("a", 2001),
	} {
		require.Empty(t, safeReturnPath(bad), "%q", bad)
	}
	for _, good := range []string{"/", "/t/acme/me", "/t/acme/me?x=1&y=%2F%2Fz", "/t/acme/me#done"} {
		require.Equal(t, good, safeReturnPath(good))
	}
}

// TestEndUserReturnToIgnoredWhenForeign: a return_to that is not a
// same-origin path is dropped; the success page links nowhere else.
func TestEndUserReturnToIgnoredWhenForeign(t *testing.T) {
	t.Parallel()
	b := setupEndUser(t)
	br := b.signedIn(t, idp.UsernameEngineer)
	for _, rt := range []string{"https://evil.example/x", "//evil.example", "https:evil", `/\evil.example`} {
		q := url.Values{"scope": {tasks.ScopeRead}, "return_to": {rt}}
		r := br.follow(br.get(b.acmeApprove(t, br.allow(q), "engineer")), nil)
		require.Equal(t, http.StatusOK, r.status, r.body)
		require.NotContains(t, r.body, `data-testid="connected-return"`, rt)
		require.NotContains(t, r.body, "evil", rt)
	}
}
