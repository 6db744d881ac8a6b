package sql_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/sql/sqltest"
)

func TestMain(m *testing.M) { os.Exit(sqltest.Main(m)) }

type column struct {
	name, typ  string
	notNull    bool
	hasDefault bool
	// allowed is the first value of a CHECK (col IN (...)) on the column.
	allowed string
}

var checkInList = regexp.MustCompile(`ARRAY\['([^']*)'`)

// tenantTables lists every table in the public schema that has a tenant_id
// column: new tables are covered by the RLS tests without editing them.
func tenantTables(ctx context.Context, t *testing.T, owner *pgx.Conn) []string {
	rows, err := owner.Query(ctx, `SELECT c.relname FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
		WHERE n.nspname = 'public' AND c.relkind IN ('r','p') ORDER BY 1`)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.NotEmpty(t, names, "no tenant-owned tables found")
	return names
}

func columns(ctx context.Context, t *testing.T, owner *pgx.Conn, table string) []column {
	rows, err := owner.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
		(a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''),
		COALESCE((SELECT pg_get_constraintdef(k.oid) FROM pg_constraint k
		          WHERE k.conrelid = a.attrelid AND k.contype = 'c' AND k.conkey = ARRAY[a.attnum] LIMIT 1), '')
		FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, table)
	require.NoError(t, err)
	var cols []column
	for rows.Next() {
		var c column
		var check string
		require.NoError(t, rows.Scan(&c.name, &c.typ, &c.notNull, &c.hasDefault, &check))
		if m := checkInList.FindStringSubmatch(check); m != nil {
			c.allowed = m[1]
		}
		cols = append(cols, c)
	}
	require.NoError(t, rows.Err())
	return cols
}

// filler returns a SQL literal of the given type for a NOT NULL column with no
// default. A table whose constraints refuse these values makes the test fail
// with a message saying what to teach it.
func filler(typ string) string {
	switch {
	case strings.HasSuffix(typ, "[]"):
		return "'{}'"
	case typ == "uuid":
		return "gen_random_uuid()"
	case strings.HasPrefix(typ, "timestamp"), typ == "date":
		return "now()"
	case typ == "boolean":
		return "false"
	case typ == "bytea":
		return "decode(md5(random()::text), 'hex')"
	case typ == "jsonb", typ == "json":
		return "'{}'"
	case typ == "integer", typ == "bigint", typ == "smallint", strings.HasPrefix(typ, "numeric"), typ == "double precision", typ == "real":
		return "1"
	case typ == "inet":
		return "'192.0.2.1'"
	case typ == "interval":
		return "'1 minute'"
	default:
		return "'rls-' || left(md5(random()::text), 12)"
	}
}

func insertRow(ctx context.Context, t *testing.T, owner *pgx.Conn, table string, cols []column, tenant uuid.UUID) {
	var names, values []string
	for _, c := range cols {
		switch {
		case c.name == "tenant_id":
			names, values = append(names, c.name), append(values, "'"+tenant.String()+"'")
		case c.notNull && !c.hasDefault && c.allowed != "":
			names, values = append(names, c.name), append(values, "'"+c.allowed+"'")
		case c.notNull && !c.hasDefault:
			names, values = append(names, c.name), append(values, filler(c.typ))
		}
	}
	q := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", pgx.Identifier{table}.Sanitize(), strings.Join(names, ", "), strings.Join(values, ", "))
	_, err := owner.Exec(ctx, q)
	require.NoError(t, err, "the RLS test could not fill %s generically: teach filler() its column types (%s)", table, q)
}

// TestRowLevelSecurityEveryTenantTable proves, for every tenant-owned table
// found in the catalog, that RLS is enabled and forced, that with tenant A
// set the rows of tenant B are invisible and can be neither updated, deleted
// nor inserted, and that nothing is visible with no tenant set.
func TestRowLevelSecurityEveryTenantTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner, err := pgx.Connect(ctx, sqltest.OwnerURL(t))
	require.NoError(t, err)
	defer owner.Close(ctx)
	db := sqltest.DB(t)

	tenantA, tenantB := uuid.New(), uuid.New()
	for _, id := range []uuid.UUID{tenantA, tenantB} {
		_, err := owner.Exec(ctx, "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, 'RLS test')", id, "rls-"+id.String()[:8])
		require.NoError(t, err)
	}
	// Fill rows without their foreign-key parents: the test owns the database.
	_, err = owner.Exec(ctx, "SET session_replication_role = replica")
	require.NoError(t, err)

	for _, table := range tenantTables(ctx, t, owner) {
		t.Run(table, func(t *testing.T) {
			var enabled, forced bool
			require.NoError(t, owner.QueryRow(ctx, "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = $1::regclass", table).Scan(&enabled, &forced))
			require.True(t, enabled, "%s: row level security is not enabled", table)
			require.True(t, forced, "%s: row level security is not forced", table)

			cols := columns(ctx, t, owner, table)
			insertRow(ctx, t, owner, table, cols, tenantA)
			insertRow(ctx, t, owner, table, cols, tenantB)
			ident := pgx.Identifier{table}.Sanitize()

			err := db.InTenant(ctx, tenantA, func(tx pgx.Tx) error {
				var mine, theirs, all int
				require.NoError(t, tx.QueryRow(ctx, "SELECT count(*) FROM "+ident+" WHERE tenant_id = $1", tenantA).Scan(&mine))
				require.NoError(t, tx.QueryRow(ctx, "SELECT count(*) FROM "+ident+" WHERE tenant_id = $1", tenantB).Scan(&theirs))
				require.NoError(t, tx.QueryRow(ctx, "SELECT count(*) FROM "+ident+" WHERE tenant_id <> $1", tenantA).Scan(&all))
				require.Positive(t, mine, "tenant A can't see its own row")
				require.Zero(t, theirs, "tenant A sees tenant B's rows")
				require.Zero(t, all, "tenant A sees other tenants' rows")
				return nil
			})
			require.NoError(t, err)

			for _, stmt := range []string{
				"UPDATE " + ident + " SET tenant_id = tenant_id WHERE tenant_id = $1",
				"DELETE FROM " + ident + " WHERE tenant_id = $1",
			} {
				err := db.InTenant(ctx, tenantA, func(tx pgx.Tx) error {
					tag, err := tx.Exec(ctx, stmt, tenantB)
					if err != nil {
						return err
					}
					require.Zero(t, tag.RowsAffected(), "%s changed tenant B's rows", stmt)
					return nil
				})
				requireNilOrDenied(t, err)
			}

			// Moving one of A's rows to B, or copying it as B's, is refused.
			var colNames, withB []string
			for _, c := range cols {
				colNames = append(colNames, pgx.Identifier{c.name}.Sanitize())
				if c.name == "tenant_id" {
					withB = append(withB, "$1::uuid")
				} else {
					withB = append(withB, pgx.Identifier{c.name}.Sanitize())
				}
			}
			for _, stmt := range []string{
				fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s LIMIT 1", ident, strings.Join(colNames, ", "), strings.Join(withB, ", "), ident),
				"UPDATE " + ident + " SET tenant_id = $1",
			} {
				err := db.InTenant(ctx, tenantA, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, stmt, tenantB)
					return err
				})
				require.Error(t, err, "%s: writing a row for tenant B with tenant A set succeeded", stmt)
				requireDenied(t, err)
			}

			// No tenant set: nothing is visible.
			err = db.InTx(ctx, func(tx pgx.Tx) error {
				var n int
				require.NoError(t, tx.QueryRow(ctx, "SELECT count(*) FROM "+ident).Scan(&n))
				require.Zero(t, n, "rows visible with no tenant set")
				return nil
			})
			require.NoError(t, err)
		})
	}
}

func requireDenied(t *testing.T, err error) {
	t.Helper()
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "want a PostgreSQL error, got %v", err)
	// 42501: insufficient_privilege, which is also what an RLS WITH CHECK
	// violation reports.
	require.Equal(t, "42501", pgErr.Code, "want a permission or RLS refusal, got %v", err)
}

func requireNilOrDenied(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		requireDenied(t, err)
	}
}

// TestAppRoleIsUnprivileged checks the role the application runs as.
func TestAppRoleIsUnprivileged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := sqltest.DB(t)
	var user string
	var super, bypass bool
	require.NoError(t, db.Pool().QueryRow(ctx, "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").Scan(&user, &super, &bypass))
	require.Equal(t, lsql.AppRole, user)
	require.False(t, super)
	require.False(t, bypass)
	var owned int
	require.NoError(t, db.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) = current_user`).Scan(&owned))
	require.Zero(t, owned, "the app role owns tables")

	// Open refuses an over-powerful role: the owner's URL without SET ROLE.
	_, err := lsql.Open(ctx, lsql.Options{URL: sqltest.OwnerURL(t)})
	require.ErrorContains(t, err, "too powerful")
}

// TestTenantNotVisibleToNextRequest runs two "requests" on a pool with one
// connection: the tenant set by the first is gone for the second.
func TestTenantNotVisibleToNextRequest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := lsql.Open(ctx, lsql.Options{URL: sqltest.OwnerURL(t), AssumeRole: true, MaxConns: 1})
	require.NoError(t, err)
	defer db.Close()

	var pid1, pid2 int
	require.NoError(t, db.InTenant(ctx, uuid.New(), func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1)
	}))
	require.NoError(t, db.InTx(ctx, func(tx pgx.Tx) error {
		var setting *string
		if err := tx.QueryRow(ctx, "SELECT pg_backend_pid(), NULLIF(current_setting('app.tenant_id', true), '')").Scan(&pid2, &setting); err != nil {
			return err
		}
		require.Nil(t, setting, "tenant leaked into the next transaction")
		return nil
	}))
	require.Equal(t, pid1, pid2, "the test must reuse the same connection")

	// An error inside InTenant rolls back and leaves no tenant behind either.
	sentinel := errors.New("boom")
	require.ErrorIs(t, db.InTenant(ctx, uuid.New(), func(pgx.Tx) error { return sentinel }), sentinel)
	var setting *string
	require.NoError(t, db.Pool().QueryRow(ctx, "SELECT NULLIF(current_setting('app.tenant_id', true), '')").Scan(&setting))
	require.Nil(t, setting)
}

// TestNoSessionLevelTenantSetting scans the repository's Go and SQL files: the
// tenant may only be set transaction-scoped. A session-level SET on a pooled
// connection would leak into the next request.
func TestNoSessionLevelTenantSetting(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..")
	bad := regexp.MustCompile(`(?i)(\bSET\s+(SESSION\s+)?app\.(tenant|account)_id)|(set_config\(\s*'app\.(tenant|account)_id'\s*,[^)]*,\s*false\s*\))`)
	allowed := regexp.MustCompile(`(?i)SET\s+LOCAL\s+app\.(tenant|account)_id`)
	var found []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == ".locksmith" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !(strings.HasSuffix(p, ".go") || strings.HasSuffix(p, ".sql")) || strings.HasSuffix(p, "rls_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if bad.MatchString(line) && !allowed.MatchString(line) {
				found = append(found, fmt.Sprintf("%s:%d: %s", p, i+1, strings.TrimSpace(line)))
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.Empty(t, found, "session-level tenant settings found")
}

// TestOpenBoundsConnectAttempts: without connect_timeout in the URL a
// connection attempt is bounded by DefaultConnectTimeout (the pool's and,
// through the copied configuration, the LISTEN connections'); a URL that
// sets one keeps it.
func TestOpenBoundsConnectAttempts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := lsql.Open(ctx, lsql.Options{URL: sqltest.OwnerURL(t), AssumeRole: true, MaxConns: 1})
	require.NoError(t, err)
	defer db.Close()
	require.Equal(t, lsql.DefaultConnectTimeout, db.Pool().Config().ConnConfig.ConnectTimeout)

	u := sqltest.OwnerURL(t)
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	db2, err := lsql.Open(ctx, lsql.Options{URL: u + sep + "connect_timeout=3", AssumeRole: true, MaxConns: 1})
	require.NoError(t, err)
	defer db2.Close()
	require.Equal(t, 3*time.Second, db2.Pool().Config().ConnConfig.ConnectTimeout)
}
