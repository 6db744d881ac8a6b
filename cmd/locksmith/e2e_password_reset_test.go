package main

import (
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/inbox"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants/mail"
)

// resetStack is the whole application with a mail server: its own
// database (so only its workers take its password-reset jobs) and an
// in-process SMTP inbox reached over loopback.
type resetStack struct {
	*stack
	inbox *inbox.Server
	dbURL string
}

func startResetStack(t *testing.T) *resetStack {
	t.Helper()
	in := inbox.NewTestServer(t, inbox.Config{})
	dbURL := sqltest.NewDatabase(t)
	srv, err := mail.ParseURL("smtp+insecure://" + in.Addr())
	require.NoError(t, err)
	st := startStackWith(t, func(c *Config) {
		c.DatabaseURL = dbURL
		c.SMTP = &srv
		c.MailFrom = "Locksmith <no-reply@locksmith.example>"
	})
	return &resetStack{stack: st, inbox: in, dbURL: dbURL}
}

// awaitLink waits for the n-th email to addr and returns it and the token
// of its set-password link.
func (rs *resetStack) awaitLink(t *testing.T, addr string, n int) (inbox.Mail, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	mails, err := rs.inbox.Await(ctx, n, inbox.To(addr))
	require.NoError(t, err)
	m := mails[n-1]
	link := regexp.MustCompile(`(?m)^http://\S+$`).FindString(m.Text)
	require.True(t, strings.HasPrefix(link, rs.URL+"/set-password?token="), "link %q in:\n%s", link, m.Text)
	u, err := url.Parse(link)
	require.NoError(t, err)
	return m, u.Query().Get("token")
}

// ownerExec runs SQL on the stack's database as its owner.
func (rs *resetStack) ownerExec(t *testing.T, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, rs.dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	require.NoError(t, err)
}

// ownerQuery returns the first column of the first row.
func (rs *resetStack) ownerQuery(t *testing.T, sql string, args ...any) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, rs.dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var out string
	require.NoError(t, conn.QueryRow(ctx, sql, args...).Scan(&out))
	return out
}

// formClient is a browser without a browser: a cookie jar, same-origin
// form posts, redirects not followed.
type formClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newFormClient(t *testing.T, base string) *formClient {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &formClient{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (fc *formClient) do(method, path string, form url.Values) (int, string, string) {
	fc.t.Helper()
	req, err := http.NewRequest(method, fc.base+path, strings.NewReader(form.Encode()))
	require.NoError(fc.t, err)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", fc.base)
	}
	resp, err := fc.c.Do(req)
	require.NoError(fc.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(fc.t, err)
	return resp.StatusCode, string(b), resp.Header.Get("Location")
}

const resetSent = "If an account exists for that address, a link is on its way; it works once, for 30 minutes."

// TestPasswordResetByEmail runs the whole flow through the real
// application (HTTP server, River workers, SMTP): ask → the email arrives
// with a link → the link sets the password → the old password is refused
// and the new one accepted → a session signed in earlier is signed out →
// the used link is refused → an expired link is refused → an earlier link
// stops working after a new request. An unknown email gets the same page
// and no email; River's job row never holds a token.
func TestPasswordResetByEmail(t *testing.T) {
	t.Parallel()
	rs := startResetStack(t)
	email := "reset-" + uuid.NewString()[:8] + "@example.com"
	const oldPW, newPW = "the old passphrase", "a brand new passphrase"

	laptop := newFormClient(t, rs.URL)
	status, _, _ := laptop.do(http.MethodPost, "/signup", url.Values{"email": {email}, "password": {oldPW}})
	require.Equal(t, http.StatusSeeOther, status)
	status, _, _ = laptop.do(http.MethodGet, "/console", nil)
	require.Equal(t, http.StatusOK, status, "signed in on the laptop")

	phone := newFormClient(t, rs.URL)
	_, body, _ := phone.do(http.MethodGet, "/signin", nil)
	require.Contains(t, body, `href="/forgot-password"`)
	status, body, _ = phone.do(http.MethodGet, "/forgot-password", nil)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, `data-testid="forgot-form"`)
	status, body, _ = phone.do(http.MethodPost, "/forgot-password", url.Values{"email": {email}})
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, resetSent)

	m, tok := rs.awaitLink(t, email, 1)
	require.Contains(t, m.Subject, "Reset your Locksmith password on "+strings.TrimPrefix(rs.URL, "http://"))
	require.Contains(t, m.Text, "If you did not ask, ignore this email; your password is unchanged.")

	// River's row: the account id and nothing else; no token anywhere in it.
	acct, err := rs.Main.Tenants.AccountByEmail(t.Context(), email)
	require.NoError(t, err)
	args := rs.ownerQuery(t, "SELECT args::text FROM river_job WHERE kind = 'password_reset_email'")
	require.JSONEq(t, `{"account_id": "`+acct.ID.String()+`"}`, args)
	row := rs.ownerQuery(t, "SELECT row_to_json(j)::text FROM river_job j WHERE kind = 'password_reset_email'")
	require.NotContains(t, row, tok)

	// An unknown email: the same answer, no job, no email.
	status, unknownBody, _ := newFormClient(t, rs.URL).do(http.MethodPost, "/forgot-password", url.Values{"email": {"nobody-" + uuid.NewString()[:8] + "@example.com"}})
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, unknownBody, resetSent)
	require.Equal(t, "1", rs.ownerQuery(t, "SELECT count(*)::text FROM river_job WHERE kind = 'password_reset_email'"))

	// The link sets the password and asks to sign in.
	status, body, _ = phone.do(http.MethodGet, "/set-password?token="+url.QueryEscape(tok), nil)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, `data-testid="setpw-form"`)
	status, body, loc := phone.do(http.MethodPost, "/set-password", url.Values{"token": {tok}, "password": {newPW}})
	require.Equal(t, http.StatusSeeOther, status, body)
	require.Equal(t, "/signin?done=password", loc)
	_, body, _ = phone.do(http.MethodGet, loc, nil)
	require.Contains(t, body, "signed out everywhere")

	status, _, loc = laptop.do(http.MethodGet, "/console", nil)
	require.Equal(t, http.StatusSeeOther, status, "the laptop's earlier session is signed out")
	require.True(t, strings.HasPrefix(loc, "/signin"), loc)
	status, _, _ = phone.do(http.MethodPost, "/signin", url.Values{"email": {email}, "password": {oldPW}})
	require.Equal(t, http.StatusUnprocessableEntity, status, "the old password is refused")
	status, _, _ = phone.do(http.MethodPost, "/signin", url.Values{"email": {email}, "password": {newPW}})
	require.Equal(t, http.StatusSeeOther, status, "the new one is accepted")

	refused := func(tok, why string) {
		t.Helper()
		status, body, _ := newFormClient(t, rs.URL).do(http.MethodPost, "/set-password", url.Values{"token": {tok}, "password": {"yet another passphrase"}})
		require.Equal(t, http.StatusUnprocessableEntity, status, why)
		require.Contains(t, body, "expired or was already used", why)
	}
	refused(tok, "a used link")

	// An expired link: the second email's link, aged past its 30 minutes.
	status, _, _ = phone.do(http.MethodPost, "/forgot-password", url.Values{"email": {email}})
	require.Equal(t, http.StatusOK, status)
	_, tok2 := rs.awaitLink(t, email, 2)
	sum := sha256.Sum256([]byte(tok2))
	rs.ownerExec(t, "UPDATE account_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1", sum[:])
	refused(tok2, "an expired link")

	// Two requests: the earlier link stops working, the later one works.
	for range 2 {
		status, _, _ = phone.do(http.MethodPost, "/forgot-password", url.Values{"email": {email}})
		require.Equal(t, http.StatusOK, status)
	}
	_, tok3 := rs.awaitLink(t, email, 3)
	_, tok4 := rs.awaitLink(t, email, 4)
	refused(tok3, "an earlier link after a new request")
	status, _, _ = newFormClient(t, rs.URL).do(http.MethodPost, "/set-password", url.Values{"token": {tok4}, "password": {"the final passphrase"}})
	require.Equal(t, http.StatusSeeOther, status)

	require.Len(t, rs.inbox.Mails(), 4, "four requests for the account, none for the unknown address")
}

// TestBrowserPasswordReset drives the reset in headless Chromium: "Forgot
// your password?" on the sign-in page, the form, the emailed link, the new
// password, and signing in with it. Screenshots go to screenshots/.
func TestBrowserPasswordReset(t *testing.T) {
	t.Parallel()
	rs := startResetStack(t)
	email := "browser-reset-" + uuid.NewString()[:8] + "@example.com"
	_, err := rs.Main.Tenants.SignUp(t.Context(), email, "the old passphrase")
	require.NoError(t, err)
	ctx := browser(t)

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(rs.URL+"/signin"),
		chromedp.WaitVisible(tid("signin-forgot")),
		chromedp.Click(tid("signin-forgot")),
		chromedp.WaitVisible(tid("forgot-email")),
		chromedp.SendKeys(tid("forgot-email"), email),
	))
	screenshot(t, ctx, "forgot-form")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("forgot-submit")),
		chromedp.WaitVisible(tid("forgot-sent")),
	))
	require.Contains(t, text(t, ctx, "forgot-sent"), "it works once, for 30 minutes")
	screenshot(t, ctx, "forgot-sent")

	_, tok := rs.awaitLink(t, email, 1)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(rs.URL+"/set-password?token="+url.QueryEscape(tok)),
		chromedp.WaitVisible(tid("setpw-password")),
		chromedp.SendKeys(tid("setpw-password"), "a brand new passphrase"),
		chromedp.Click(tid("setpw-submit")),
		chromedp.WaitVisible(tid("notice")),
	))
	require.Contains(t, text(t, ctx, "notice"), "Sign in with the new password")
	screenshot(t, ctx, "password-set")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys(tid("signin-email"), email),
		chromedp.SendKeys(tid("signin-password"), "a brand new passphrase"),
		chromedp.Click(tid("signin-submit")),
		chromedp.WaitVisible(tid("tenant-slug")),
	))
}
