package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants"
)

// Config holds a Store's dependencies.
type Config struct {
	DB     *lsql.DB
	Logger *slog.Logger
	// SealBatch is the most events per seal; 0 means DefaultSealBatch.
	SealBatch int
}

// DefaultSealBatch is the most events one seal covers.
const DefaultSealBatch = 10_000

// Store reads, seals, verifies and purges the audit trail. It is safe for
// concurrent use.
type Store struct {
	db        *lsql.DB
	logger    *slog.Logger
	sealBatch int
}

// New returns a Store.
func New(cfg Config) (*Store, error) {
	switch {
	case cfg.DB == nil:
		return nil, errors.New("audit: db is required")
	case cfg.Logger == nil:
		return nil, errors.New("audit: logger is required")
	case cfg.SealBatch < 0:
		return nil, errors.New("audit: seal batch must not be negative")
	}
	if cfg.SealBatch == 0 {
		cfg.SealBatch = DefaultSealBatch
	}
	return &Store{db: cfg.DB, logger: cfg.Logger, sealBatch: cfg.SealBatch}, nil
}

// TenantRef names a tenant in reports.
type TenantRef struct {
	ID   uuid.UUID
	Slug string
}

// Tenants lists every tenant (id and slug), by slug; with slugs given, only
// those, and an ErrNotFound error naming any slug that does not exist.
func (s *Store) Tenants(ctx context.Context, slugs ...string) ([]TenantRef, error) {
	var out []TenantRef
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		q, args := "SELECT id, slug FROM tenants ORDER BY slug", []any{}
		if len(slugs) > 0 {
			q, args = "SELECT id, slug FROM tenants WHERE slug = ANY($1) ORDER BY slug", []any{slugs}
		}
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (TenantRef, error) {
			var t TenantRef
			err := r.Scan(&t.ID, &t.Slug)
			return t, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: list tenants: %w", lsql.Translate(err))
	}
	if len(slugs) > 0 {
		found := map[string]bool{}
		for _, t := range out {
			found[t.Slug] = true
		}
		for _, s := range slugs {
			if !found[s] {
				return nil, &tenants.Error{Kind: tenants.ErrNotFound, Field: "tenant", Message: fmt.Sprintf("no tenant with slug %q", s)}
			}
		}
	}
	return out, nil
}

// Retention bounds, in days.
const (
	MinRetentionDays     = 7
	MaxRetentionDays     = 3650
	DefaultRetentionDays = 365
)

// Retention returns the tenant's audit retention in days (default 365).
func (s *Store) Retention(ctx context.Context, tenantID uuid.UUID) (int, error) {
	days := DefaultRetentionDays
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, "SELECT retention_days FROM audit_settings WHERE tenant_id = $1", tenantID).Scan(&days)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("audit: retention of tenant %s: %w", tenantID, lsql.Translate(err))
	}
	return days, nil
}

// SetRetention sets how many days events are kept (7–3650) before the
// purge job may delete them; a *tenants.Error with Field "retention_days"
// otherwise.
func (s *Store) SetRetention(ctx context.Context, tenantID uuid.UUID, days int) error {
	if days < MinRetentionDays || days > MaxRetentionDays {
		return tenants.Invalid("retention_days", fmt.Sprintf("must be between %d and %d days", MinRetentionDays, MaxRetentionDays))
	}
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO audit_settings (tenant_id, retention_days) VALUES ($1, $2)
			ON CONFLICT (tenant_id) DO UPDATE SET retention_days = EXCLUDED.retention_days, updated_at = now()`, tenantID, days)
		return err
	})
	if err != nil {
		return fmt.Errorf("audit: set retention of tenant %s: %w", tenantID, lsql.Translate(err))
	}
	return nil
}

// Purge deletes the tenant's events in sealed batches older than its
// retention, through the audit_purge database function, and returns how
// many it deleted. Unsealed events are never purged; seals are kept.
func (s *Store) Purge(ctx context.Context, tenantID uuid.UUID) (int64, error) {
	var n int64
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT audit_purge($1)", tenantID).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("audit: purge tenant %s: %w", tenantID, lsql.Translate(err))
	}
	return n, nil
}

// PurgeAll runs Purge for every tenant and returns the total deleted. It
// carries on past a failing tenant and returns the errors joined.
func (s *Store) PurgeAll(ctx context.Context) (int64, error) {
	ts, err := s.Tenants(ctx)
	if err != nil {
		return 0, err
	}
	var total int64
	var errs []error
	for _, t := range ts {
		n, err := s.Purge(ctx, t.ID)
		total += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return total, errors.Join(errs...)
}

// inSnapshot runs fn in one REPEATABLE READ transaction scoped to the
// tenant, so everything fn reads is one consistent snapshot. The tenant is
// set transaction-scoped, as sql.DB.InTenant does.
func (s *Store) inSnapshot(ctx context.Context, tenantID uuid.UUID, readOnly bool, fn func(pgx.Tx) error) error {
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead}
	if readOnly {
		opts.AccessMode = pgx.ReadOnly
	}
	return pgx.BeginTxFunc(ctx, s.db.Pool(), opts, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('app.tenant_id', $1, true)", tenantID.String()); err != nil {
			return fmt.Errorf("set tenant: %w", err)
		}
		return fn(tx)
	})
}

func containsCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}
