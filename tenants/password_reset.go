package tenants

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/locksmithhq/locksmith/tenants/mail"
)

// Password reset by email. A reset link is a one-time account token of
// purpose 'reset_password' on the set-password page; only its SHA-256 is
// stored, and it works for PasswordResetTTL.
//
//	RequestPasswordReset(email)            the web form; same outcome whether or not the account exists
//	  │ account exists: in one transaction, its unused reset tokens are
//	  │ deleted and PasswordResetArgs{account id} is enqueued
//	  ▼
//	SendPasswordReset(account id)          the River worker; each attempt, in order:
//	  │ 1. MintPasswordReset: delete the unused reset tokens, store the new hash
//	  │ 2. send the link by email (an SMTP failure: River retries, minting anew)
//	  ▼
//	SetPasswordWithToken(token, password)  the set-password page: password set, token used,
//	                                       the account's other unused tokens deleted,
//	                                       every console session of the account ended
//
// The job's arguments hold the account id only: River stores them in
// plain text, so no token ever goes there.

// PasswordResetTTL is how long a password-reset link works.
const PasswordResetTTL = 30 * time.Minute

// PasswordResetMaxAttempts bounds how often the reset email is tried; the
// worker's backoff spreads the attempts over about half an hour, after which
// the person has likely asked again.
const PasswordResetMaxAttempts = 10

// ErrResetByEmailOff is returned by RequestPasswordReset when no mail
// server is configured (the Service has no PasswordResets inserter).
var ErrResetByEmailOff = errors.New("tenants: password reset by email is not set up (LOCKSMITH_SMTP_URL is not set)")

// JobInserter enqueues a River job in the caller's transaction; the River
// client (an insert-only one too) satisfies it.
type JobInserter interface {
	InsertTx(ctx context.Context, tx pgx.Tx, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
}

// MailSender sends one email; *mail.Mailer satisfies it.
type MailSender interface {
	Send(ctx context.Context, m mail.Message) error
}

// PasswordResetArgs is the River job that mints a reset token for an
// account and emails it the link. It carries the account id and nothing
// else.
type PasswordResetArgs struct {
	AccountID uuid.UUID `json:"account_id"`
}

// Kind is River's job kind.
func (PasswordResetArgs) Kind() string { return "password_reset_email" }

// InsertOpts bounds the attempts (see PasswordResetMaxAttempts).
func (PasswordResetArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: PasswordResetMaxAttempts}
}

// ResetByEmail reports whether password reset by email is set up.
func (s *Service) ResetByEmail() bool { return s.resetJobs != nil }

// RequestPasswordReset asks for a reset link to be emailed to the account
// with that email. It returns nil whether or not such an account exists, so
// its outcome reveals nothing; the email is sent by the PasswordResetArgs
// job, off the caller's path. For an existing account it deletes the
// account's earlier unused reset tokens (earlier links stop working at
// once) and enqueues the job in the same transaction. An invalid address is
// an ErrInvalid Error for "email"; without a mail server it returns
// ErrResetByEmailOff.
func (s *Service) RequestPasswordReset(ctx context.Context, email string) error {
	if s.resetJobs == nil {
		return ErrResetByEmailOff
	}
	e, err := NormalizeEmail(email)
	if err != nil {
		return err
	}
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		var id uuid.UUID
		err := tx.QueryRow(ctx, "SELECT id FROM accounts WHERE email = $1", e).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, deleteUnusedResetsSQL, id); err != nil {
			return err
		}
		_, err = s.resetJobs.InsertTx(ctx, tx, PasswordResetArgs{AccountID: id}, nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("tenants: request password reset: %w", translate(err))
	}
	return nil
}

// MintPasswordReset returns a new reset token for the account and when it
// expires. It deletes the account's earlier unused reset tokens in the same
// transaction, under a lock on the account row, so of concurrent mints the
// last one's token is the one that works. Only the token's hash is stored.
// An unknown account is ErrNotFound.
func (s *Service) MintPasswordReset(ctx context.Context, accountID uuid.UUID) (Account, string, time.Time, error) {
	tok := randomSecret(32)
	expires := s.now().Add(PasswordResetTTL)
	var a Account
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, "SELECT id, email, password_hash IS NOT NULL, created_at FROM accounts WHERE id = $1 FOR UPDATE",
			accountID).Scan(&a.ID, &a.Email, &a.HasPassword, &a.CreatedAt)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, deleteUnusedResetsSQL, accountID); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "INSERT INTO account_tokens (token_hash, account_id, purpose, expires_at) VALUES ($1, $2, 'reset_password', $3)",
			hashToken(tok), accountID, expires)
		return err
	})
	if err != nil {
		return Account{}, "", time.Time{}, fmt.Errorf("tenants: mint password reset for account %s: %w", accountID, translate(err))
	}
	return a, tok, expires, nil
}

// deleteUnusedResetsSQL makes the account's ($1) earlier unused reset
// links stop working: at a new request, and again at each mint.
const deleteUnusedResetsSQL = "DELETE FROM account_tokens WHERE account_id = $1 AND purpose = 'reset_password' AND used_at IS NULL"

// SetPasswordURL is the set-password link for a token.
func (s *Service) SetPasswordURL(token string) string {
	return s.baseURL + "/set-password?token=" + url.QueryEscape(token)
}

// SendPasswordReset mints a reset token for the account (MintPasswordReset)
// and then emails the link through sender. A failed send leaves a token
// nobody received; the next attempt's mint deletes it. Errors name the
// account id, never the token or the address. An account deleted since the
// request is ErrNotFound.
func (s *Service) SendPasswordReset(ctx context.Context, accountID uuid.UUID, sender MailSender) error {
	if sender == nil {
		return fmt.Errorf("tenants: password reset for account %s: no mail server: LOCKSMITH_SMTP_URL is not set on this worker", accountID)
	}
	a, tok, _, err := s.MintPasswordReset(ctx, accountID)
	if err != nil {
		return err
	}
	if err := sender.Send(ctx, s.passwordResetMessage(a.Email, s.SetPasswordURL(tok))); err != nil {
		return fmt.Errorf("tenants: password reset email for account %s: %w", accountID, err)
	}
	return nil
}

// passwordResetMessage is the reset email: which site asked, the link, its
// lifetime, and what to do if the person did not ask.
func (s *Service) passwordResetMessage(email, link string) mail.Message {
	site := s.baseURL
	if u, err := url.Parse(s.baseURL); err == nil && u.Host != "" {
		site = u.Host
	}
	return mail.Message{
		To:      email,
		Subject: "Reset your Locksmith password on " + site,
		Text: "Someone asked to reset the password of the Locksmith account " + email + " on " + site + ".\n" +
			"\n" +
			"To choose a new password, open this link:\n" +
			"\n" +
			link + "\n" +
			"\n" +
			"The link works once, for " + ttlText(PasswordResetTTL) + ". Setting a new password signs the account out everywhere.\n" +
			"\n" +
			"If you did not ask, ignore this email; your password is unchanged.\n",
	}
}

// ttlText says a whole number of minutes in words ("30 minutes").
func ttlText(d time.Duration) string { return fmt.Sprintf("%d minutes", int(d/time.Minute)) }
