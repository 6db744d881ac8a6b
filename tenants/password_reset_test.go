package tenants_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/inbox"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/mail"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

// resetBundle is a Service with password reset by email on (an insert-only
// River client on the package database) and a clock the test moves.
type resetBundle struct {
	ctx    context.Context
	svc    *tenants.Service
	offset atomic.Int64 // added to time.Now, in nanoseconds
}

func setupReset(t *testing.T) *resetBundle {
	t.Helper()
	b := &resetBundle{ctx: context.Background()}
	keys, err := masterKeys()
	require.NoError(t, err)
	db := sqltest.DB(t)
	sl, err := seal.New(db, keys)
	require.NoError(t, err)
	eg, err := egress.New(egress.Options{Resolver: testResolver})
	require.NoError(t, err)
	logger := slog.New(slog.DiscardHandler)
	inserter, err := river.NewClient(riverpgxv5.New(db.Pool()), &river.Config{Logger: logger})
	require.NoError(t, err)
	b.svc, err = tenants.New(tenants.Config{
		DB: db, Sealer: sl, Egress: eg, Logger: logger, BaseURL: testBaseURL, PasswordResets: inserter,
		Now: func() time.Time { return time.Now().Add(time.Duration(b.offset.Load())) },
	})
	require.NoError(t, err)
	return b
}

func (b *resetBundle) advance(d time.Duration) { b.offset.Add(int64(d)) }

// resetJobs returns the args of the account's password-reset jobs.
func resetJobs(t *testing.T, accountID uuid.UUID) []map[string]any {
	t.Helper()
	rows, err := sqltest.DB(t).Pool().Query(context.Background(),
		"SELECT args FROM river_job WHERE kind = 'password_reset_email' AND args->>'account_id' = $1 ORDER BY id", accountID.String())
	require.NoError(t, err)
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		var raw []byte
		require.NoError(t, rows.Scan(&raw))
		var m map[string]any
		require.NoError(t, json.Unmarshal(raw, &m))
		out = append(out, m)
	}
	require.NoError(t, rows.Err())
	return out
}

const (
	oldPassword = "the old passphrase"
	newPassword = "a brand new passphrase"
)

// TestRequestPasswordReset: a known email enqueues one job per request
// whose arguments are the account id and nothing else; an unknown email
// returns the same nil; a malformed one is a field error; without a mail
// server the feature is off.
func TestRequestPasswordReset(t *testing.T) {
	t.Parallel()
	b := setupReset(t)
	require.True(t, b.svc.ResetByEmail())
	a, err := b.svc.SignUp(b.ctx, uniqueEmail("reset"), oldPassword)
	require.NoError(t, err)

	require.NoError(t, b.svc.RequestPasswordReset(b.ctx, "  "+strings.ToUpper(a.Email)+" "))
	jobs := resetJobs(t, a.ID)
	require.Len(t, jobs, 1)
	require.Equal(t, map[string]any{"account_id": a.ID.String()}, jobs[0], "the job carries the account id only")
	require.NoError(t, b.svc.RequestPasswordReset(b.ctx, a.Email))
	require.Len(t, resetJobs(t, a.ID), 2, "one email per request (the web layer rate-limits)")

	unknown := uniqueEmail("nobody")
	require.NoError(t, b.svc.RequestPasswordReset(b.ctx, unknown), "an unknown email looks the same")
	_, err = b.svc.AccountByEmail(b.ctx, unknown)
	require.ErrorIs(t, err, tenants.ErrNotFound, "and creates nothing")

	requireFieldError(t, b.svc.RequestPasswordReset(b.ctx, "not an email"), tenants.ErrInvalid, "email", "enter an email address")

	off := newService(t, true)
	require.False(t, off.ResetByEmail())
	require.ErrorIs(t, off.RequestPasswordReset(b.ctx, a.Email), tenants.ErrResetByEmailOff)
}

// TestPasswordResetToken walks a reset token's life: a new request or a
// new token kills earlier ones; the token works until its 30 minutes are
// up, once; using it sets the password, kills the account's other links
// and ends every console session of the account.
func TestPasswordResetToken(t *testing.T) {
	t.Parallel()
	b := setupReset(t)
	a, err := b.svc.SignUp(b.ctx, uniqueEmail("reset"), oldPassword)
	require.NoError(t, err)
	other, err := b.svc.SignUp(b.ctx, uniqueEmail("other"), oldPassword)
	require.NoError(t, err)
	s1, err := b.svc.CreateSession(b.ctx, a.ID)
	require.NoError(t, err)
	s2, err := b.svc.CreateSession(b.ctx, a.ID)
	require.NoError(t, err)
	otherSession, err := b.svc.CreateSession(b.ctx, other.ID)
	require.NoError(t, err)

	requireDead := func(tok, why string) {
		t.Helper()
		_, err := b.svc.SetPasswordWithToken(b.ctx, tok, newPassword)
		requireFieldError(t, err, tenants.ErrInvalid, "token", "expired or was already used")
		_, err = b.svc.SignIn(b.ctx, a.Email, oldPassword)
		require.NoError(t, err, "%s: the password is unchanged", why)
	}

	got, tok1, expires, err := b.svc.MintPasswordReset(b.ctx, a.ID)
	require.NoError(t, err)
	require.Equal(t, a.Email, got.Email)
	require.WithinDuration(t, time.Now().Add(tenants.PasswordResetTTL), expires, 5*time.Second)
	require.Equal(t, 30*time.Minute, tenants.PasswordResetTTL)
	require.NoError(t, b.svc.RequestPasswordReset(b.ctx, a.Email))
	requireDead(tok1, "a new request kills the earlier link")

	_, tok2, _, err := b.svc.MintPasswordReset(b.ctx, a.ID)
	require.NoError(t, err)
	_, tok3, _, err := b.svc.MintPasswordReset(b.ctx, a.ID)
	require.NoError(t, err)
	requireDead(tok2, "a newer token (a retried email) kills the earlier one")

	b.advance(tenants.PasswordResetTTL + time.Second)
	requireDead(tok3, "30 minutes and a second later")

	setTok, err := b.svc.SetPasswordToken(b.ctx, a.ID)
	require.NoError(t, err)
	_, tok4, _, err := b.svc.MintPasswordReset(b.ctx, a.ID)
	require.NoError(t, err)
	b.advance(tenants.PasswordResetTTL - time.Second)
	acct, err := b.svc.SetPasswordWithToken(b.ctx, tok4, newPassword)
	require.NoError(t, err, "a second before the end it still works")
	require.Equal(t, a.ID, acct.ID)

	_, err = b.svc.SignIn(b.ctx, a.Email, oldPassword)
	require.ErrorIs(t, err, tenants.ErrBadCredentials, "the old password is refused")
	_, err = b.svc.SignIn(b.ctx, a.Email, newPassword)
	require.NoError(t, err, "the new one works")
	for _, s := range []string{s1, s2} {
		_, err = b.svc.SessionAccount(b.ctx, s)
		require.ErrorIs(t, err, tenants.ErrNotFound, "every session of the account ended")
	}
	_, err = b.svc.SessionAccount(b.ctx, otherSession)
	require.NoError(t, err, "another account's session is untouched")

	for _, tok := range []string{tok4, setTok} {
		_, err = b.svc.SetPasswordWithToken(b.ctx, tok, "yet another passphrase")
		requireFieldError(t, err, tenants.ErrInvalid, "token", "expired or was already used")
	}
	_, err = b.svc.SignIn(b.ctx, a.Email, newPassword)
	require.NoError(t, err, "neither the used link nor an older set-password link changed it again")

	_, _, _, err = b.svc.MintPasswordReset(b.ctx, uuid.New())
	require.ErrorIs(t, err, tenants.ErrNotFound)
}

// TestSendPasswordReset: the email names the site that asked, carries a
// working link and its lifetime, and says what to do if the person did
// not ask. A failed send reports the account id, not the address or a
// token, and leaves one unusable-by-anyone token that the next attempt
// replaces.
func TestSendPasswordReset(t *testing.T) {
	t.Parallel()
	b := setupReset(t)
	a, err := b.svc.SignUp(b.ctx, uniqueEmail("reset"), oldPassword)
	require.NoError(t, err)
	in := inbox.NewTestServer(t, inbox.Config{})
	srv, err := mail.ParseURL("smtp+insecure://" + in.Addr())
	require.NoError(t, err)
	mailer, err := mail.New(mail.Config{Server: srv, From: "Locksmith <no-reply@locksmith.example.com>"})
	require.NoError(t, err)

	require.NoError(t, b.svc.SendPasswordReset(b.ctx, a.ID, mailer))
	mails := in.Mails()
	require.Len(t, mails, 1)
	m := mails[0]
	require.Equal(t, []string{a.Email}, m.To)
	require.Equal(t, "Reset your Locksmith password on locksmith.example.com", m.Subject)
	require.Contains(t, m.Text, "the Locksmith account "+a.Email+" on locksmith.example.com.")
	require.Contains(t, m.Text, "The link works once, for 30 minutes.")
	require.Contains(t, m.Text, "If you did not ask, ignore this email; your password is unchanged.")
	link := regexp.MustCompile(`(?m)^https://\S+$`).FindString(m.Text)
	require.True(t, strings.HasPrefix(link, testBaseURL+"/set-password?token="), m.Text)
	u, err := url.Parse(link)
	require.NoError(t, err)
	_, err = b.svc.SetPasswordWithToken(b.ctx, u.Query().Get("token"), newPassword)
	require.NoError(t, err, "the emailed link sets the password")

	// A mail server that is down: the token is minted first, the send fails.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	downAddr := ln.Addr().String()
	require.NoError(t, ln.Close())
	down, err := mail.ParseURL("smtp+insecure://" + downAddr)
	require.NoError(t, err)
	downMailer, err := mail.New(mail.Config{Server: down, From: "no-reply@locksmith.example.com"})
	require.NoError(t, err)
	err = b.svc.SendPasswordReset(b.ctx, a.ID, downMailer)
	require.ErrorContains(t, err, a.ID.String())
	require.ErrorContains(t, err, "connect")
	require.NotContains(t, err.Error(), a.Email)
	require.NotContains(t, err.Error(), "token")
	var unused int
	require.NoError(t, sqltest.DB(t).Pool().QueryRow(b.ctx,
		"SELECT count(*) FROM account_tokens WHERE account_id = $1 AND purpose = 'reset_password' AND used_at IS NULL", a.ID).Scan(&unused))
	require.Equal(t, 1, unused, "minted before the send, and only one")

	require.ErrorContains(t, b.svc.SendPasswordReset(b.ctx, a.ID, nil), "LOCKSMITH_SMTP_URL is not set on this worker")
	require.ErrorIs(t, b.svc.SendPasswordReset(b.ctx, uuid.New(), mailer), tenants.ErrNotFound)
	require.Len(t, in.Mails(), 1, "nothing more was sent")
}
