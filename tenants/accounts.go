package tenants

import (
	"context"
	"errors"
	"net/mail"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Session lifetimes for the console.
const (
	// SessionIdle ends a session nobody used for this long.
	SessionIdle = 12 * time.Hour
	// SessionAbsolute ends every session this long after sign-in.
	SessionAbsolute = 7 * 24 * time.Hour
	// setPasswordTTL is how long a set-password link works.
	setPasswordTTL = 72 * time.Hour
)

// ErrBadCredentials is returned by SignIn for an unknown email or a wrong
// password alike.
var ErrBadCredentials = &Error{Kind: ErrInvalid, Field: "password", Message: "that email and password don't match an account"}

// Account is a console user.
type Account struct {
	ID          uuid.UUID
	Email       string
	HasPassword bool
	CreatedAt   time.Time
}

// NormalizeEmail lower-cases and validates an address.
func NormalizeEmail(raw string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(raw))
	addr, err := mail.ParseAddress(e)
	if err != nil || addr.Address != e || !strings.Contains(e[strings.LastIndex(e, "@")+1:], ".") && !strings.HasSuffix(e, "@localhost") || len(e) > 254 {
		return "", Invalid("email", "enter an email address like admin@example.com")
	}
	return e, nil
}

// SignUp creates an account with a password.
func (s *Service) SignUp(ctx context.Context, email, password string) (Account, error) {
	e, err := NormalizeEmail(email)
	if err != nil {
		return Account{}, err
	}
	if err := ValidatePassword(password); err != nil {
		return Account{}, err
	}
	return s.createAccount(ctx, e, hashPassword(password))
}

func (s *Service) createAccount(ctx context.Context, email, hash string) (Account, error) {
	var a Account
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO accounts (email, password_hash) VALUES ($1, NULLIF($2, ''))
			RETURNING id, email, password_hash IS NOT NULL, created_at`, email, hash).Scan(&a.ID, &a.Email, &a.HasPassword, &a.CreatedAt)
	})
	if err := translate(err); err != nil {
		if errors.Is(err, ErrConflict) {
			return Account{}, &Error{Kind: ErrConflict, Field: "email", Message: "an account with that email already exists; sign in instead"}
		}
		return Account{}, err
	}
	return a, nil
}

// SignIn checks an email and password. Unknown emails and wrong passwords
// take the same time and give the same ErrBadCredentials.
func (s *Service) SignIn(ctx context.Context, email, password string) (Account, error) {
	e, err := NormalizeEmail(email)
	if err != nil {
		return Account{}, err
	}
	var a Account
	var hash *string
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT id, email, password_hash, created_at FROM accounts WHERE email = $1", e).Scan(&a.ID, &a.Email, &hash, &a.CreatedAt)
	})
	if err := translate(err); err != nil && !errors.Is(err, ErrNotFound) {
		return Account{}, err
	}
	if hash == nil {
		checkPassword(dummyHash, password)
		return Account{}, ErrBadCredentials
	}
	if !checkPassword(*hash, password) {
		return Account{}, ErrBadCredentials
	}
	a.HasPassword = true
	return a, nil
}

// AccountByEmail looks an account up.
func (s *Service) AccountByEmail(ctx context.Context, email string) (Account, error) {
	e, err := NormalizeEmail(email)
	if err != nil {
		return Account{}, err
	}
	var a Account
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT id, email, password_hash IS NOT NULL, created_at FROM accounts WHERE email = $1", e).Scan(&a.ID, &a.Email, &a.HasPassword, &a.CreatedAt)
	})
	return a, translate(err)
}

// CreateSession starts a console session for the account and returns the
// cookie value. Only its hash is stored. Called at every sign-in, so the
// session id always changes then (no fixation).
func (s *Service) CreateSession(ctx context.Context, accountID uuid.UUID) (string, error) {
	tok := randomSecret(32)
	now := s.now()
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO console_sessions (id_hash, account_id, created_at, last_seen_at, expires_at)
			VALUES ($1, $2, $3, $3, $4)`, hashToken(tok), accountID, now, now.Add(SessionAbsolute))
		return err
	})
	if err != nil {
		return "", translate(err)
	}
	return tok, nil
}

// SessionAccount returns the account of a live session and slides its idle
// timer. Expired or unknown sessions give ErrNotFound.
func (s *Service) SessionAccount(ctx context.Context, token string) (Account, error) {
	if token == "" || len(token) > 100 {
		return Account{}, ErrNotFound
	}
	var a Account
	var lastSeen time.Time
	now := s.now()
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT a.id, a.email, a.password_hash IS NOT NULL, a.created_at, cs.last_seen_at
			FROM console_sessions cs JOIN accounts a ON a.id = cs.account_id
			WHERE cs.id_hash = $1 AND cs.expires_at > $2 AND cs.last_seen_at > $3`,
			hashToken(token), now, now.Add(-SessionIdle)).Scan(&a.ID, &a.Email, &a.HasPassword, &a.CreatedAt, &lastSeen)
		if err != nil {
			return err
		}
		if now.Sub(lastSeen) > time.Minute {
			_, err = tx.Exec(ctx, "UPDATE console_sessions SET last_seen_at = $2 WHERE id_hash = $1", hashToken(token), now)
		}
		return err
	})
	return a, translate(err)
}

// DeleteSession ends a session (sign out).
func (s *Service) DeleteSession(ctx context.Context, token string) error {
	return translate(s.db.InTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM console_sessions WHERE id_hash = $1", hashToken(token))
		return err
	}))
}

// PurgeExpiredSessions deletes ended console sessions and used or expired
// account tokens; it returns how many rows went.
func (s *Service) PurgeExpiredSessions(ctx context.Context) (int64, error) {
	var n int64
	now := s.now()
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen_at <= $2", now, now.Add(-SessionIdle))
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		tag, err = tx.Exec(ctx, "DELETE FROM account_tokens WHERE expires_at <= $1 OR used_at IS NOT NULL", now)
		n += tag.RowsAffected()
		return err
	})
	return n, translate(err)
}

// SetPasswordToken returns a one-time token with which the account's owner
// sets a password (used by `locksmith tenant create`); it works for 72
// hours. Only its hash is stored.
func (s *Service) SetPasswordToken(ctx context.Context, accountID uuid.UUID) (string, error) {
	tok := randomSecret(32)
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO account_tokens (token_hash, account_id, purpose, expires_at) VALUES ($1, $2, 'set_password', $3)`,
			hashToken(tok), accountID, s.now().Add(setPasswordTTL))
		return err
	})
	return tok, translate(err)
}

// SetPasswordWithToken consumes a set-password or password-reset token
// (once) and sets the password. In the same transaction it deletes the
// account's other unused tokens (no earlier link works afterwards) and
// every console session of the account (signed out everywhere: whoever
// had the old password is out). A wrong, used or expired token is an
// ErrInvalid Error for "token".
func (s *Service) SetPasswordWithToken(ctx context.Context, token, password string) (Account, error) {
	if err := ValidatePassword(password); err != nil {
		return Account{}, err
	}
	var a Account
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		var id uuid.UUID
		err := tx.QueryRow(ctx, `UPDATE account_tokens SET used_at = $2 WHERE token_hash = $1 AND purpose IN ('set_password', 'reset_password')
			AND used_at IS NULL AND expires_at > $2 RETURNING account_id`, hashToken(token), s.now()).Scan(&id)
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `UPDATE accounts SET password_hash = $2 WHERE id = $1 RETURNING id, email, true, created_at`,
			id, hashPassword(password)).Scan(&a.ID, &a.Email, &a.HasPassword, &a.CreatedAt)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM account_tokens WHERE account_id = $1 AND used_at IS NULL", id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "DELETE FROM console_sessions WHERE account_id = $1", id)
		return err
	})
	if err := translate(err); err != nil {
		if errors.Is(err, ErrNotFound) {
			return Account{}, &Error{Kind: ErrInvalid, Field: "token", Message: "this link has expired or was already used; ask for a new one"}
		}
		return Account{}, err
	}
	return a, nil
}

// EnsureAccount returns the account with that email, creating it without a
// password if it doesn't exist (bootstrap: the owner then sets a password
// through a SetPasswordToken link).
func (s *Service) EnsureAccount(ctx context.Context, email string) (Account, error) {
	e, err := NormalizeEmail(email)
	if err != nil {
		return Account{}, err
	}
	a, err := s.createAccount(ctx, e, "")
	if errors.Is(err, ErrConflict) {
		return s.AccountByEmail(ctx, e)
	}
	return a, err
}
