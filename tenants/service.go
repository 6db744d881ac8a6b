package tenants

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

// Service is the tenant domain's entry point. Each entity keeps its queries in
// its own file (accounts.go, tenant.go, members.go, apikeys.go, …). It is safe
// for concurrent use.
type Service struct {
	db     *lsql.DB
	sealer *seal.Sealer
	egress *egress.Client
	logger *slog.Logger
	now    func() time.Time
	// baseURL is the public URL; MCP resource URLs are built from it.
	baseURL string
	// resetJobs enqueues password-reset emails; nil: reset by email is off.
	resetJobs JobInserter
}

// Config holds the Service's dependencies.
type Config struct {
	DB      *lsql.DB
	Sealer  *seal.Sealer
	Egress  *egress.Client
	Logger  *slog.Logger
	BaseURL string
	// PasswordResets enqueues the password-reset email job
	// (PasswordResetArgs) in the request's transaction; nil means password
	// reset by email is off (no mail server is configured).
	PasswordResets JobInserter
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.DB == nil:
		return nil, errors.New("tenants: db is required")
	case cfg.Sealer == nil:
		return nil, errors.New("tenants: sealer is required")
	case cfg.Egress == nil:
		return nil, errors.New("tenants: egress client is required")
	case cfg.Logger == nil:
		return nil, errors.New("tenants: logger is required")
	case cfg.BaseURL == "":
		return nil, errors.New("tenants: base URL is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{db: cfg.DB, sealer: cfg.Sealer, egress: cfg.Egress, logger: cfg.Logger, now: cfg.Now, baseURL: cfg.BaseURL, resetJobs: cfg.PasswordResets}, nil
}

// DB returns the database handle (for packages that build on tenants).
func (s *Service) DB() *lsql.DB { return s.db }

// Sealer returns the secret sealer.
func (s *Service) Sealer() *seal.Sealer { return s.sealer }

// Egress returns the SSRF-guarded outbound client.
func (s *Service) Egress() *egress.Client { return s.egress }

// BaseURL returns the public base URL without a trailing slash.
func (s *Service) BaseURL() string { return s.baseURL }

// inTenant runs fn in a tenant-scoped transaction and translates driver errors.
func (s *Service) inTenant(ctx context.Context, tenantID uuid.UUID, fn func(pgx.Tx) error) error {
	return translate(s.db.InTenant(ctx, tenantID, fn))
}

// randomSecret returns n random bytes, base64url without padding.
func randomSecret(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("tenants: crypto/rand failed: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashToken is how one-time tokens, session ids and API keys are stored.
func hashToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

// translate maps driver errors to the domain's error kinds.
func translate(err error) error { return lsql.Translate(err) }
