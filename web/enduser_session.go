package web

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants"
)

// End-user sessions are separate from console sessions: another cookie,
// scoped to the tenant's pages (Path /t/{tenant}/), HttpOnly, SameSite=Lax,
// Secure under https, named "__Secure-locksmith-user" under https and
// "locksmith_user" otherwise. Its value is 32 random bytes; only their
// SHA-256 is stored (enduser_sessions.token_hash), in a row of the tenant.
// Every sign-in creates a new row and value and deletes the browser's
// previous session, so a cookie planted before sign-in never becomes a
// signed-in session. Sessions last enduserSessionLifetime from sign-in.

// enduserSessionLifetime is how long an end-user session lasts (absolute).
const enduserSessionLifetime = 8 * time.Hour

// endUser is a person signed in through their tenant's IdP.
type endUser struct {
	Issuer  string
	Subject string
	Email   string
	Name    string
	Groups  []string
}

// enduserSession is a signed-in end user's session.
type enduserSession struct {
	ID        uuid.UUID
	User      endUser
	ExpiresAt time.Time
}

func (s *Server) enduserCookieName() string {
	if s.cfg.BaseURL.Scheme == "https" {
		return "__Secure-locksmith-user"
	}
	return "locksmith_user"
}

func (s *Server) enduserCookie(slug, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     s.enduserCookieName(),
		Value:    value,
		Path:     "/t/" + slug + "/",
		MaxAge:   maxAge,
		Secure:   s.cfg.BaseURL.Scheme == "https",
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

func tokenHash(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

// loadEndUserSession resolves the session cookie into c. An unknown or
// expired session is cleared and the request continues signed out.
func (s *Server) loadEndUserSession(w http.ResponseWriter, r *http.Request, c *euCtx) error {
	ck, err := r.Cookie(s.enduserCookieName())
	if err != nil || ck.Value == "" {
		return nil
	}
	sess, err := s.enduserSessionByToken(r.Context(), c.Tenant.ID, ck.Value)
	if errors.Is(err, tenants.ErrNotFound) {
		http.SetCookie(w, s.enduserCookie(c.Tenant.Slug, "", -1))
		return nil
	}
	if err != nil {
		return err
	}
	c.Session, c.token = &sess, ck.Value
	return nil
}

// startEndUserSession signs u in with a brand-new session, ending the
// browser's previous one (session fixation: the id changes at sign-in).
func (s *Server) startEndUserSession(ctx context.Context, w http.ResponseWriter, c *euCtx, u endUser) error {
	tok := randomToken(32)
	id := uuid.New()
	err := s.cfg.Tenants.DB().InTenant(ctx, c.Tenant.ID, func(tx pgx.Tx) error {
		if c.token != "" {
			if _, err := tx.Exec(ctx, "DELETE FROM enduser_sessions WHERE tenant_id = $1 AND token_hash = $2", c.Tenant.ID, tokenHash(c.token)); err != nil {
				return err
			}
		}
		// Opportunistic clean-up of this tenant's expired sessions.
		if _, err := tx.Exec(ctx, "DELETE FROM enduser_sessions WHERE tenant_id = $1 AND expires_at < now() - interval '1 day'", c.Tenant.ID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO enduser_sessions (tenant_id, id, token_hash, idp_issuer, subject, email, name, groups, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9))`,
			c.Tenant.ID, id, tokenHash(tok), u.Issuer, u.Subject, u.Email, u.Name, nonNil(u.Groups), enduserSessionLifetime.Seconds())
		return err
	})
	if err != nil {
		return fmt.Errorf("web: start end-user session: %w", lsql.Translate(err))
	}
	http.SetCookie(w, s.enduserCookie(c.Tenant.Slug, tok, int(enduserSessionLifetime/time.Second)))
	c.token = tok
	c.Session = &enduserSession{ID: id, User: u, ExpiresAt: time.Now().Add(enduserSessionLifetime)}
	return nil
}

// endEndUserSession deletes the browser's session and clears its cookie.
func (s *Server) endEndUserSession(ctx context.Context, w http.ResponseWriter, c *euCtx) error {
	if c.token != "" {
		err := s.cfg.Tenants.DB().InTenant(ctx, c.Tenant.ID, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "DELETE FROM enduser_sessions WHERE tenant_id = $1 AND token_hash = $2", c.Tenant.ID, tokenHash(c.token))
			return err
		})
		if err != nil {
			return fmt.Errorf("web: end end-user session: %w", err)
		}
	}
	http.SetCookie(w, s.enduserCookie(c.Tenant.Slug, "", -1))
	c.Session, c.token = nil, ""
	return nil
}

// enduserSessionByToken returns the unexpired session whose cookie value is
// tok, or tenants.ErrNotFound.
func (s *Server) enduserSessionByToken(ctx context.Context, tenantID uuid.UUID, tok string) (enduserSession, error) {
	if len(tok) < 40 || len(tok) > 64 {
		return enduserSession{}, tenants.ErrNotFound
	}
	var sess enduserSession
	err := s.cfg.Tenants.DB().InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT id, idp_issuer, subject, email, name, groups, expires_at FROM enduser_sessions
			WHERE tenant_id = $1 AND token_hash = $2 AND expires_at > now()`, tenantID, tokenHash(tok)).
			Scan(&sess.ID, &sess.User.Issuer, &sess.User.Subject, &sess.User.Email, &sess.User.Name, &sess.User.Groups, &sess.ExpiresAt)
	})
	if err != nil {
		return enduserSession{}, fmt.Errorf("web: end-user session: %w", lsql.Translate(err))
	}
	return sess, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
