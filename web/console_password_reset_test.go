package web

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
)

// sentSentence is what every accepted reset request answers.
const sentSentence = "If an account exists for that address, a link is on its way; it works once, for 30 minutes."

// withResets turns password reset by email on: the Service enqueues its
// jobs through an insert-only River client on the package database.
func withResets(t *testing.T) func(*tenants.Config) {
	t.Helper()
	inserter, err := river.NewClient(riverpgxv5.New(sqltest.DB(t).Pool()), &river.Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	return func(c *tenants.Config) { c.PasswordResets = inserter }
}

// resetJobCount counts the account's password-reset jobs.
func resetJobCount(t *testing.T, accountID uuid.UUID) int {
	t.Helper()
	var n int
	require.NoError(t, sqltest.DB(t).Pool().QueryRow(context.Background(),
		"SELECT count(*) FROM river_job WHERE kind = 'password_reset_email' AND args->>'account_id' = $1", accountID.String()).Scan(&n))
	return n
}

func forgot(br *browser, email string) response {
	return br.post("/forgot-password", url.Values{"email": {email}})
}

// TestForgotPasswordWithoutMail: without a mail server the page says so
// and how the operator makes a link; there is no form, and a post does
// nothing.
func TestForgotPasswordWithoutMail(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	br := b.browser(t)
	r := br.get("/signin")
	require.Regexp(t, `<a href="/forgot-password" data-testid="signin-forgot">Forgot your password\?</a>`, r.body)

	r = br.get("/forgot-password")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `data-testid="forgot-off"`)
	require.Contains(t, r.body, "Password reset by email is not set up on this server.")
	require.Contains(t, r.body, "locksmith account reset-password --email you@example.com")
	require.NotContains(t, r.body, `data-testid="forgot-form"`)
	require.NotContains(t, r.body, `action="/forgot-password"`)

	acct, err := b.svc.SignUp(t.Context(), "off-"+uniq()+"@acme.example", testPassword)
	require.NoError(t, err)
	r = forgot(br, acct.Email)
	require.Equal(t, http.StatusNotFound, r.status)
	require.Contains(t, r.body, `data-testid="forgot-off"`)
	require.NotContains(t, r.body, sentSentence)
	require.Zero(t, resetJobCount(t, acct.ID))
}

// nonces are the per-request parts of a page.
var nonces = regexp.MustCompile(`nonce="[^"]*"`)

// TestForgotPasswordSameAnswer: a known and an unknown email get the same
// page, byte for byte but the CSP nonce, no sooner than the floor; only the
// known one enqueues an email.
func TestForgotPasswordSameAnswer(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, withResets(t))
	acct, err := b.svc.SignUp(t.Context(), "known-"+uniq()+"@acme.example", testPassword)
	require.NoError(t, err)

	r := b.browser(t).get("/forgot-password")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `data-testid="forgot-form"`)
	require.Contains(t, r.body, "it works once, for 30 minutes.")

	var pages []string
	for _, email := range []string{acct.Email, "unknown-" + uniq() + "@acme.example"} {
		start := time.Now()
		r := forgot(b.browser(t), email)
		took := time.Since(start)
		require.Equal(t, http.StatusOK, r.status, r.body)
		require.Contains(t, r.body, `data-testid="forgot-sent"`)
		require.Contains(t, r.body, sentSentence)
		require.NotContains(t, r.body, email, "the address is not echoed")
		require.GreaterOrEqual(t, took, forgotPasswordFloor, email)
		pages = append(pages, nonces.ReplaceAllString(r.body, ""))
	}
	require.Equal(t, pages[0], pages[1])
	require.Equal(t, 1, resetJobCount(t, acct.ID), "one email for the known account")

	r = forgot(b.browser(t), "not an email")
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.Contains(t, r.body, `data-testid="forgot-email-error"`)
	require.Contains(t, r.body, "Enter an email address")
}

// TestForgotPasswordRateLimit: five requests a minute per email (known or
// not), ten per client IP; past either the answer is 429 with Retry-After
// and a clear message, and nothing is enqueued.
func TestForgotPasswordRateLimit(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, withResets(t))
	acct, err := b.svc.SignUp(t.Context(), "limited-"+uniq()+"@acme.example", testPassword)
	require.NoError(t, err)
	br := b.browser(t)
	for range resetEmailLimit {
		require.Equal(t, http.StatusOK, forgot(br, acct.Email).status)
	}
	r := forgot(br, acct.Email)
	require.Equal(t, http.StatusTooManyRequests, r.status)
	require.Regexp(t, `Too many password-reset requests from your network or for this email. Try again in \d+ seconds.`, r.body)
	require.NotEmpty(t, r.header.Get("Retry-After"))
	require.NotContains(t, r.body, sentSentence)
	require.Equal(t, resetEmailLimit, resetJobCount(t, acct.ID), "the refused request enqueued nothing")
	// Another email from the same IP still goes through, until the IP's limit.
	for range resetIPLimit - resetEmailLimit {
		require.Equal(t, http.StatusOK, forgot(br, "other-"+uniq()+"@acme.example").status)
	}
	r = forgot(br, "fresh-"+uniq()+"@acme.example")
	require.Equal(t, http.StatusTooManyRequests, r.status, "ten a minute per IP")
	require.Contains(t, r.body, "Too many password-reset requests")
	// Sign-in is counted apart.
	require.Equal(t, http.StatusSeeOther, br.signIn(acct.Email, testPassword).status)

	// An unknown email is limited the same way, so a 429 reveals nothing.
	b2 := setupConsole(t, withResets(t))
	br2 := b2.browser(t)
	unknown := "unknown-" + uniq() + "@acme.example"
	for range resetEmailLimit {
		require.Equal(t, http.StatusOK, forgot(br2, unknown).status)
	}
	require.Equal(t, http.StatusTooManyRequests, forgot(br2, unknown).status)
}

// TestResetLinkSignsOutEverywhere: setting a password through a reset
// link ends the account's sessions in every browser, and the page asks to
// sign in with the new password.
func TestResetLinkSignsOutEverywhere(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, withResets(t))
	email := "everywhere-" + uniq() + "@acme.example"
	laptop := b.browser(t)
	laptop.signUp(email)
	require.Equal(t, http.StatusOK, laptop.get("/console").status)
	acct, err := b.svc.AccountByEmail(t.Context(), email)
	require.NoError(t, err)
	_, tok, _, err := b.svc.MintPasswordReset(t.Context(), acct.ID)
	require.NoError(t, err)

	phone := b.browser(t)
	r := phone.get("/set-password?token=" + url.QueryEscape(tok))
	require.Equal(t, http.StatusOK, r.status)
	r = phone.post("/set-password", url.Values{"token": {tok}, "password": {"a brand new passphrase"}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Equal(t, "/signin?done=password", r.location)

	r = laptop.get("/console")
	require.Equal(t, http.StatusSeeOther, r.status, "the other browser is signed out")
	require.Equal(t, "/signin?next=%2Fconsole", r.location)
	require.Empty(t, laptop.session(), "and its cookie cleared")
	require.Equal(t, http.StatusUnprocessableEntity, phone.signIn(email, testPassword).status, "the old password is refused")
	require.Equal(t, http.StatusSeeOther, phone.signIn(email, "a brand new passphrase").status)
}
