package sql

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// AppRole is the PostgreSQL role the application runs as. It owns no table,
// is not a superuser and does not bypass row-level security; Migrate creates
// it and each migration grants it exactly what it needs.
const AppRole = "locksmith_app"

// migrateLockKey is the advisory lock that serialises concurrent migrators.
const migrateLockKey int64 = 0x4c6f636b736d6974 // "Locksmit"

// ErrSchemaBehind means the database has not been migrated to the version this
// binary needs; the message tells the operator to run `locksmith migrate`.
var ErrSchemaBehind = errors.New("database schema is behind this binary: run `locksmith migrate`")

// Migration is one numbered SQL file embedded in the binary.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("sql: read migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("sql: migration %q: name must start with a positive number and an underscore", name)
		}
		b, err := migrationFS.ReadFile("migrations/" + name)
		if err != nil {
			return nil, fmt.Errorf("sql: read migration %s: %w", name, err)
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("sql: migrations %s and %s share version %d", out[i-1].Name, out[i].Name, out[i].Version)
		}
	}
	return out, nil
}

// LatestVersion is the highest embedded migration version.
func LatestVersion() int {
	ms, err := Migrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].Version
}

// Migrate brings the database at ownerURL up to date: it creates the
// application role, applies every embedded migration not yet recorded (each in
// its own transaction, recorded in schema_migrations), then River's own
// migrations, and grants the application role access to River's tables. It is
// idempotent, and concurrent runs are serialised by an advisory lock. It
// returns the versions it applied.
func Migrate(ctx context.Context, ownerURL string, logger *slog.Logger) ([]int, error) {
	if logger == nil {
		return nil, errors.New("sql: migrate: logger is required")
	}
	pool, err := pgxpool.New(ctx, ownerURL)
	if err != nil {
		return nil, fmt.Errorf("sql: migrate: connect: %w", err)
	}
	defer pool.Close()

	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("sql: migrate: connect: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLockKey); err != nil {
		return nil, fmt.Errorf("sql: migrate: take advisory lock: %w", err)
	}
	defer func() {
		// A fresh context: the lock must be released even if ctx is done.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrateLockKey)
	}()

	if err := ensureAppRole(ctx, conn.Conn()); err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("sql: migrate: create schema_migrations: %w", err)
	}
	if _, err := conn.Exec(ctx, "GRANT SELECT ON schema_migrations TO "+AppRole); err != nil {
		return nil, fmt.Errorf("sql: migrate: grant schema_migrations: %w", err)
	}

	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	applied := map[int]bool{}
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("sql: migrate: read applied versions: %w", err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, fmt.Errorf("sql: migrate: read applied versions: %w", err)
	}
	for _, v := range vs {
		applied[int(v)] = true
	}
	var done []int
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return done, fmt.Errorf("sql: migrate: apply %s: %w", m.Name, err)
		}
		logger.InfoContext(ctx, "migration applied", "version", m.Version, "name", m.Name)
		done = append(done, m.Version)
	}

	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: logger})
	if err != nil {
		return done, fmt.Errorf("sql: migrate: river: %w", err)
	}
	res, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return done, fmt.Errorf("sql: migrate: river: %w", err)
	}
	for _, v := range res.Versions {
		logger.InfoContext(ctx, "river migration applied", "version", v.Version)
	}
	if err := grantRiver(ctx, conn.Conn()); err != nil {
		return done, err
	}
	return done, nil
}

// ensureAppRole creates the application role if it is missing and makes sure
// it can't bypass row-level security. The role is cluster-wide, so concurrent
// migrations of different databases may race to create it: a duplicate is fine.
func ensureAppRole(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '`+AppRole+`') THEN
        BEGIN
            CREATE ROLE `+AppRole+` NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
END $$`)
	if err != nil {
		return fmt.Errorf("sql: migrate: create role %s: %w", AppRole, err)
	}
	// The migrating (owner) role must be able to SET ROLE to the app role.
	if _, err := conn.Exec(ctx, `DO $$
BEGIN
    IF NOT pg_has_role(current_user, '`+AppRole+`', 'MEMBER') THEN
        EXECUTE format('GRANT %I TO %I', '`+AppRole+`', current_user);
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$`); err != nil {
		return fmt.Errorf("sql: migrate: grant role %s: %w", AppRole, err)
	}
	if _, err := conn.Exec(ctx, "GRANT USAGE ON SCHEMA public TO "+AppRole); err != nil {
		return fmt.Errorf("sql: migrate: grant schema usage: %w", err)
	}
	return nil
}

// grantRiver gives the application role what River's client needs on River's
// tables (River jobs are not tenant-owned).
func grantRiver(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relname LIKE 'river\_%' AND c.relkind IN ('r', 'S', 'p') LOOP
        IF r.relkind = 'S' THEN
            EXECUTE format('GRANT USAGE, SELECT, UPDATE ON SEQUENCE %I TO `+AppRole+`', r.relname);
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %I TO `+AppRole+`', r.relname);
        END IF;
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS sig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = current_schema() AND p.proname LIKE 'river\_%' LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO `+AppRole+`', r.sig);
    END LOOP;
END $$`)
	if err != nil {
		return fmt.Errorf("sql: migrate: grant river tables: %w", err)
	}
	return nil
}

// SchemaVersion reports the highest applied migration version (0 when none).
func SchemaVersion(ctx context.Context, q Querier) (int, error) {
	var v int32
	err := q.QueryRow(ctx, "SELECT COALESCE(max(version), 0) FROM schema_migrations").Scan(&v)
	if err != nil {
		if IsUndefinedTable(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("sql: read schema version: %w", err)
	}
	return int(v), nil
}

// CheckSchema returns an error wrapping ErrSchemaBehind, naming both versions,
// when the database is not migrated as far as this binary needs (Locksmith's
// own migrations and River's).
func CheckSchema(ctx context.Context, pool *pgxpool.Pool) error {
	have, err := SchemaVersion(ctx, pool)
	if err != nil {
		return err
	}
	if want := LatestVersion(); have < want {
		return fmt.Errorf("%w (database is at version %d, this binary needs %d)", ErrSchemaBehind, have, want)
	}
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return fmt.Errorf("sql: check river schema: %w", err)
	}
	res, err := migrator.Validate(ctx, nil)
	if err != nil {
		return fmt.Errorf("sql: check river schema: %w", err)
	}
	if !res.OK {
		return fmt.Errorf("%w (River: %s)", ErrSchemaBehind, strings.Join(res.Messages, "; "))
	}
	return nil
}
