package sql

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Querier is what both a pool and a transaction offer; read-only helpers
// accept it so they can run inside or outside a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// DB is the application's handle on PostgreSQL: a pool whose every connection
// runs as AppRole. It is safe for concurrent use.
type DB struct {
	pool *pgxpool.Pool
}

// DefaultConnectTimeout bounds one connection attempt when DATABASE_URL
// sets no connect_timeout.
const DefaultConnectTimeout = 10 * time.Second

// Options configures Open.
type Options struct {
	// URL is the connection string (DATABASE_URL). Required.
	URL string
	// MaxConns caps the pool size; 0 keeps pgxpool's default (max(4, CPUs)).
	MaxConns int32
	// AssumeRole, when true (the default used by Locksmith), runs
	// `SET ROLE locksmith_app` on every new connection, so a DATABASE_URL that
	// names the owner still gives the app no more than AppRole's rights. Set it
	// to false when URL already logs in as an unprivileged role; Open then
	// checks that role instead.
	AssumeRole bool
}

// Open connects the application pool and verifies that the effective role is
// unprivileged: not a superuser, no BYPASSRLS, and owner of no table. It
// refuses to return a pool that would silently bypass row-level security.
func Open(ctx context.Context, opts Options) (*DB, error) {
	if opts.URL == "" {
		return nil, errors.New("sql: open: URL is required")
	}
	cfg, err := pgxpool.ParseConfig(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("sql: open: parse DATABASE_URL: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// Without a connect_timeout in the URL a connection attempt to a
		// database that silently drops packets (a failover, a broken
		// route) waits for the operating system's TCP timeout, minutes,
		// and so would every reconnect: of the pool, and of the LISTEN
		// connections, which copy this configuration.
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.AssumeRole {
		cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, "SET ROLE "+AppRole)
			return err
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("sql: open: %w", err)
	}
	db := &DB{pool: pool}
	if err := db.checkRole(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

func (db *DB) checkRole(ctx context.Context) error {
	var (
		name          string
		super, bypass bool
		ownedTables   int
	)
	err := db.pool.QueryRow(ctx, `SELECT r.rolname, r.rolsuper, r.rolbypassrls,
		(SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE c.relowner = r.oid AND c.relkind IN ('r','p') AND n.nspname NOT IN ('pg_catalog','information_schema'))
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&name, &super, &bypass, &ownedTables)
	if err != nil {
		return fmt.Errorf("sql: open: check role (has `locksmith migrate` been run?): %w", err)
	}
	if super || bypass || ownedTables > 0 {
		return fmt.Errorf("sql: open: role %q is too powerful for the application (superuser=%t bypassrls=%t owns %d tables): row-level security would not hold", name, super, bypass, ownedTables)
	}
	return nil
}

// Pool returns the underlying pool, for River's driver and for queries on
// tables that are not tenant-owned.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Close closes the pool.
func (db *DB) Close() { db.pool.Close() }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.pool.Ping(ctx) }

// InTenant runs fn inside one transaction in which app.tenant_id is set to
// tenantID with transaction scope (set_config(..., true)), so row-level
// security limits every statement to that tenant and the setting vanishes at
// COMMIT or ROLLBACK. fn's error rolls the transaction back and is returned
// as is.
func (db *DB) InTenant(ctx context.Context, tenantID uuid.UUID, fn func(pgx.Tx) error) error {
	if tenantID == uuid.Nil {
		return errors.New("sql: InTenant: tenant id is required")
	}
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('app.tenant_id', $1, true)", tenantID.String()); err != nil {
			return fmt.Errorf("sql: set tenant: %w", err)
		}
		return fn(tx)
	})
}

// InAccount runs fn inside one transaction in which app.account_id is set
// to accountID with transaction scope: row-level security then also shows
// the account's own membership rows across tenants (to list its tenants).
func (db *DB) InAccount(ctx context.Context, accountID uuid.UUID, fn func(pgx.Tx) error) error {
	if accountID == uuid.Nil {
		return errors.New("sql: InAccount: account id is required")
	}
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('app.account_id', $1, true)", accountID.String()); err != nil {
			return fmt.Errorf("sql: set account: %w", err)
		}
		return fn(tx)
	})
}

// InTx runs fn in a transaction with no tenant set: only tables that are not
// tenant-owned are visible.
func (db *DB) InTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, db.pool, fn)
}

// TenantIDs lists every tenant's id, in id order, for jobs that work tenant
// by tenant (each then runs its own InTenant transaction).
func (db *DB) TenantIDs(ctx context.Context) ([]uuid.UUID, error) {
	var ids []uuid.UUID
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT id FROM tenants ORDER BY id")
		if err != nil {
			return err
		}
		ids, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sql: list tenants: %w", err)
	}
	return ids, nil
}
