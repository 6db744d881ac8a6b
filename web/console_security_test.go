package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/tenants"
)

func TestSessionCookieAndRotation(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	br := b.browser(t)
	email := "rotate-" + uniq() + "@acme.example"

	// A cookie planted before sign-up (fixation) is replaced, not adopted.
	br.setSession("planted-by-an-attacker")
	r := br.post("/signup", url.Values{"email": {email}, "password": {testPassword}})
	require.Equal(t, http.StatusSeeOther, r.status)
	setCookie := r.header.Get("Set-Cookie")
	require.True(t, strings.HasPrefix(setCookie, "__Host-locksmith="), setCookie)
	for _, attr := range []string{"Path=/", "HttpOnly", "Secure", "SameSite=Lax"} {
		require.Contains(t, setCookie, attr)
	}
	require.NotContains(t, setCookie, "Domain=")
	first := br.session()
	require.NotEqual(t, "planted-by-an-attacker", first)

	// Signing in again makes a new session id and ends the previous one.
	r = br.signIn(email, testPassword)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	second := br.session()
	require.NotEmpty(t, second)
	require.NotEqual(t, first, second)
	stale := b.browser(t)
	stale.setSession(first)
	require.Equal(t, http.StatusSeeOther, stale.get("/console").status, "the pre-sign-in session is gone")
	require.Equal(t, http.StatusOK, br.get("/console").status)

	// Under plain http the cookie has no __Host- prefix and no Secure flag.
	u, _ := url.Parse("http://localhost:8080")
	s := &Server{cfg: Config{BaseURL: u}}
	c := s.sessionCookie("v", 60)
	require.Equal(t, "locksmith_session", c.Name)
	require.False(t, c.Secure)
	require.True(t, c.HttpOnly)
}

func TestCrossOriginPostRefused(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	br, slug, _ := b.newOwner(t, "Acme")
	form := url.Values{"slug": {"evil-" + uniq()}, "name": {"Evil"}}.Encode()
	tests := []struct {
		name string
		hdr  map[string]string
	}{
		{"cross-site fetch metadata", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": ""}},
		{"same-site fetch metadata", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": ""}},
		{"foreign origin, no fetch metadata", map[string]string{"Sec-Fetch-Site": "", "Origin": "https://evil.example"}},
		{"foreign origin despite same-origin metadata", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "https://evil.example"}},
		{"null origin", map[string]string{"Sec-Fetch-Site": "", "Origin": "null"}},
	}
	for _, tt := range tests {
		for _, path := range []string{"/console/tenants", "/console/t/" + slug + "/settings", "/signin", "/signout"} {
			r := br.do(http.MethodPost, path, form, tt.hdr)
			require.Equal(t, http.StatusForbidden, r.status, "%s %s", tt.name, path)
			require.Contains(t, r.body, "came from another site", tt.name)
		}
	}
	require.NotContains(t, br.get("/console").body, "Evil", "no tenant was created")
	require.NotEmpty(t, br.session(), "the cross-site sign-out did nothing")
	require.Equal(t, http.StatusOK, br.get("/console").status)
	// A cross-site GET (a link) still works.
	r := br.do(http.MethodGet, "/console", "", map[string]string{"Sec-Fetch-Site": "cross-site"})
	require.Equal(t, http.StatusOK, r.status)
}

// TestNamesRenderInert puts markup in a tenant name, a member's email and an
// API key name, and checks every page that shows them escapes it.
func TestNamesRenderInert(t *testing.T) {
	t.Parallel()
	const evil = "<script>alert(1)</script>"
	const escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
	b := setupConsole(t)
	br, slug, _ := b.newOwner(t, evil)
	tp := "/console/t/" + slug

	// An account whose email holds markup (the sign-up form refuses it, so
	// insert it directly) joins through an invitation.
	evilEmail := strings.ToLower(evil) + uniq() + "@acme.example"
	var acct tenants.Account
	require.NoError(t, b.svc.DB().InTx(t.Context(), func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), "INSERT INTO accounts (email) VALUES ($1) RETURNING id", evilEmail).Scan(&acct.ID)
	}))
	tok := strings.TrimPrefix(br.invite(slug, "viewer"), "/invite/"+slug+"/")
	ten, err := b.svc.TenantBySlug(t.Context(), slug)
	require.NoError(t, err)
	_, err = b.svc.AcceptInvite(t.Context(), ten.ID, acct.ID, tok)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, br.post(tp+"/api-keys", url.Values{"name": {evil}, "role": {"viewer"}}).status)

	pages := []string{"/console", tp, tp + "/members", tp + "/api-keys", tp + "/settings", tp + "/mcp", tp + "/nope"}
	for _, p := range plannedSections() {
		pages = append(pages, tp+"/"+p.key)
	}
	for _, p := range pages {
		r := br.get(p)
		require.NotContains(t, r.body, evil, p)
		require.Contains(t, r.body, escaped, p)
	}
	// Form re-renders echo input escaped too.
	r := br.post("/console/tenants", url.Values{"slug": {"x"}, "name": {evil}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.NotContains(t, r.body, evil)
	require.Contains(t, r.body, escaped)
	r = b.browser(t).post("/signin", url.Values{"email": {evil}, "password": {"x"}})
	require.NotContains(t, r.body, evil)
}

func TestViewerReadsButCannotChange(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	owner, slug, _ := b.newOwner(t, "Acme")
	tp := "/console/t/" + slug
	viewer, _ := b.joinAs(t, owner, slug, "viewer")

	pages := []string{tp, tp + "/members", tp + "/api-keys", tp + "/settings", tp + "/mcp"}
	for _, p := range plannedSections() {
		pages = append(pages, tp+"/"+p.key)
	}
	for _, p := range pages {
		r := viewer.get(p)
		require.Equal(t, http.StatusOK, r.status, p)
		require.NotContains(t, r.body, `method="post" action="`+tp, "a viewer sees no forms that change the tenant: %s", p)
	}
	for _, tt := range []struct{ path, body string }{
		{tp + "/settings", "name=Taken+over"},
		{tp + "/api-keys", "name=k&role=admin"},
		{tp + "/api-keys/revoke", "key_id=x&confirm=x"},
		{tp + "/members/invite", "role=owner"},
		{tp + "/members/role", "account_id=x&role=owner"},
		{tp + "/members/remove", "account_id=x&confirm=x"},
		{tp + "/idp", ""},
		{tp + "/anything", ""},
	} {
		r := viewer.do(http.MethodPost, tt.path, tt.body, nil)
		require.Equal(t, http.StatusForbidden, r.status, tt.path)
		require.Contains(t, r.body, "view-only access", tt.path)
		require.Contains(t, r.body, `data-testid="sidebar"`, "the 403 page is inside the frame")
	}
	require.Contains(t, owner.get(tp+"/settings").body, `value="Acme"`, "nothing changed")
}

func TestNonMemberGets404(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	_, slug, _ := b.newOwner(t, "Acme")
	stranger, _, _ := b.newOwner(t, "Other")

	missing := "nope-" + uniq()
	for _, suffix := range []string{"", "/members", "/api-keys", "/settings", "/idp", "/nope"} {
		r := stranger.get("/console/t/" + slug + suffix)
		require.Equal(t, http.StatusNotFound, r.status, suffix)
		want := stranger.get("/console/t/" + missing + suffix)
		require.Equal(t, http.StatusNotFound, want.status)
		// The answer for someone else's tenant reads exactly like the one for
		// a tenant that doesn't exist.
		require.Equal(t, strings.ReplaceAll(errorMessage(want.body), missing, slug), errorMessage(r.body))
		require.NotContains(t, r.body, "Acme")
	}
	r := stranger.post("/console/t/"+slug+"/settings", url.Values{"name": {"Taken over"}})
	require.Equal(t, http.StatusNotFound, r.status)
}

func errorMessage(body string) string {
	m := regexp.MustCompile(`data-testid="error-message">([^<]*)<`).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

func TestSignInRateLimit(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	br := b.browser(t)
	email := "limited-" + uniq() + "@acme.example"
	br.signUp(email)
	require.Equal(t, http.StatusSeeOther, br.post("/signout", nil).status)

	for i := range signInLimit {
		r := br.signIn(email, "wrong password number "+fmt.Sprint(i))
		require.Equal(t, http.StatusUnprocessableEntity, r.status)
		require.Contains(t, r.body, "That email and password don&#39;t match an account.")
		require.Contains(t, r.body, `data-testid="signin-password-error"`)
	}
	r := br.signIn(email, testPassword)
	require.Equal(t, http.StatusTooManyRequests, r.status, "even the right password waits")
	require.Regexp(t, `Too many failed sign-in attempts. Try again in \d+ seconds.`, r.body)
	require.NotEmpty(t, r.header.Get("Retry-After"))

	// Per IP: failures spread over many emails from one address are capped too.
	b2 := setupConsole(t)
	br2 := b2.browser(t)
	for i := range signInLimit {
		require.Equal(t, http.StatusUnprocessableEntity, br2.signIn(fmt.Sprintf("nobody-%d@acme.example", i), "x").status)
	}
	require.Equal(t, http.StatusTooManyRequests, br2.signIn("someone-else@acme.example", "x").status)
}

func TestLimiterWindow(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	l := newLimiter(2, time.Minute, clock)
	l.fail("a")
	_, blocked := l.blocked("a")
	require.False(t, blocked)
	l.fail("a")
	wait, blocked := l.blocked("a", "b")
	require.True(t, blocked)
	require.Equal(t, time.Minute, wait)
	now = now.Add(59 * time.Second)
	wait, _ = l.blocked("a")
	require.Equal(t, time.Second, wait)
	now = now.Add(time.Second)
	_, blocked = l.blocked("a")
	require.False(t, blocked, "the window ended")
	l.fail("b")
	l.fail("b")
	l.reset("b")
	_, blocked = l.blocked("b")
	require.False(t, blocked)
}

func TestSignedOutRedirectsWithSafeNext(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	br := b.browser(t)
	r := br.get("/console/t/acme/members?tab=1")
	require.Equal(t, http.StatusSeeOther, r.status)
	require.Equal(t, "/signin?next="+url.QueryEscape("/console/t/acme/members?tab=1"), r.location)

	r = br.get("/signin?next=" + url.QueryEscape("https://evil.example/phish"))
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `name="next" value="/console"`)
	require.NotContains(t, r.body, "evil.example")

	email := "next-" + uniq() + "@acme.example"
	br.signUp(email)
	br.post("/signout", nil)
	for next, want := range map[string]string{
		"https://evil.example":     "/console",
		"//evil.example/x":         "/console",
		"/\\evil.example":          "/console",
		"javascript:alert(1)":      "/console",
		"/console/t/acme?done=x":   "/console/t/acme?done=x",
		"":                         "/console",
		"/invite/acme/inv_abc-DEF": "/invite/acme/inv_abc-DEF",
	} {
		r := br.post("/signin", url.Values{"email": {email}, "password": {testPassword}, "next": {next}})
		require.Equal(t, http.StatusSeeOther, r.status, next)
		require.Equal(t, want, r.location, next)
	}
}

func TestCSPNonceOnEveryScript(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	br, slug, _ := b.newOwner(t, "Acme")
	scriptRE := regexp.MustCompile(`<script\b[^>]*>`)
	signedOut := b.browser(t)
	for _, tc := range []struct {
		br   *browser
		path string
	}{
		{signedOut, "/signin"}, {signedOut, "/signup"}, {signedOut, "/set-password?token=x"}, {signedOut, "/invite/acme/x"},
		{signedOut, "/nope"}, {br, "/console"}, {br, "/console/t/" + slug}, {br, "/console/t/" + slug + "/members"},
		{br, "/console/t/" + slug + "/api-keys"}, {br, "/console/t/" + slug + "/mcp"}, {br, "/console/t/nope-" + uniq()},
	} {
		r := tc.br.get(tc.path)
		csp := r.header.Get("Content-Security-Policy")
		m := regexp.MustCompile(`script-src 'self' 'nonce-([A-Za-z0-9_-]+)'`).FindStringSubmatch(csp)
		require.NotNil(t, m, "%s: %s", tc.path, csp)
		scripts := scriptRE.FindAllString(r.body, -1)
		require.NotEmpty(t, scripts, tc.path)
		for _, s := range scripts {
			require.Contains(t, s, `nonce="`+m[1]+`"`, tc.path)
		}
		require.NotRegexp(t, `\son[a-z]+=`, r.body, "no inline event handlers: %s", tc.path)
	}
}

func TestSafeNext(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/console/t/a":           "/console/t/a",
		"/x?y=1#z":               "/x?y=1#z",
		"":                       "/console",
		"console":                "/console",
		"//evil.example":         "/console",
		"/\\evil.example":        "/console",
		"https://evil.example/":  "/console",
		"/ok\r\nSet-Cookie: x=y": "/console",
		"http:/evil.example":     "/console",
	} {
		require.Equal(t, want, safeNext(in), in)
	}
}

// TestSignUpAndSetPasswordRateLimit: failed sign-ups (probing which emails
// have accounts) and failed set-password posts (guessing links) are capped
// per client IP like failed sign-ins; successes are not counted.
func TestSignUpAndSetPasswordRateLimit(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	br := b.browser(t)
	taken := "taken-" + uniq() + "@acme.example"
	br.signUp(taken)
	require.Equal(t, http.StatusSeeOther, br.post("/signout", nil).status)
	br.signUp("fresh-" + uniq() + "@acme.example") // a success doesn't count
	require.Equal(t, http.StatusSeeOther, br.post("/signout", nil).status)

	for range signInLimit {
		r := br.post("/signup", url.Values{"email": {taken}, "password": {testPassword}})
		require.NotEqual(t, http.StatusTooManyRequests, r.status)
		require.NotEqual(t, http.StatusSeeOther, r.status, "a taken email is refused")
	}
	r := br.post("/signup", url.Values{"email": {"another-" + uniq() + "@acme.example"}, "password": {testPassword}})
	require.Equal(t, http.StatusTooManyRequests, r.status, "even a good sign-up waits once the IP is over the limit")
	require.Regexp(t, `Too many failed sign-up attempts. Try again in \d+ seconds.`, r.body)
	require.NotEmpty(t, r.header.Get("Retry-After"))
	// Sign-in is counted apart: this IP can still sign in.
	require.Equal(t, http.StatusSeeOther, br.signIn(taken, testPassword).status)

	b2 := setupConsole(t)
	br2 := b2.browser(t)
	for i := range signInLimit {
		r := br2.post("/set-password", url.Values{"token": {fmt.Sprintf("guess-%d", i)}, "password": {testPassword}})
		require.NotEqual(t, http.StatusTooManyRequests, r.status)
		require.NotEqual(t, http.StatusSeeOther, r.status, "a guessed link is refused")
	}
	r = br2.post("/set-password", url.Values{"token": {"guess-last"}, "password": {testPassword}})
	require.Equal(t, http.StatusTooManyRequests, r.status)
	require.Regexp(t, `Too many failed set-password attempts. Try again in \d+ seconds.`, r.body)
}
