package sql_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/sql/sqltest"
)

// emptyDatabase creates an unmigrated database and drops it after the test.
func emptyDatabase(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, sqltest.ServerURL())
	require.NoError(t, err)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "locksmith_empty_" + hex.EncodeToString(b[:])
	_, err = admin.Exec(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		admin.Close(ctx)
	})
	u, err := sqltest.WithDatabase(sqltest.ServerURL(), name)
	require.NoError(t, err)
	return u
}

func TestMigrateConcurrentAndIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u := emptyDatabase(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	pool, err := pgxpool.New(ctx, u)
	require.NoError(t, err)
	defer pool.Close()
	err = lsql.CheckSchema(ctx, pool)
	require.ErrorIs(t, err, lsql.ErrSchemaBehind)
	require.ErrorContains(t, err, "locksmith migrate")

	// Two migrators at once: the advisory lock serialises them, each
	// migration is applied exactly once.
	type result struct {
		applied []int
		err     error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			applied, err := lsql.Migrate(ctx, u, logger)
			results <- result{applied, err}
		}()
	}
	total := 0
	for range 2 {
		r := <-results
		require.NoError(t, r.err)
		total += len(r.applied)
	}
	ms, err := lsql.Migrations()
	require.NoError(t, err)
	require.Equal(t, len(ms), total, "each migration applied once across both runs")

	again, err := lsql.Migrate(ctx, u, logger)
	require.NoError(t, err)
	require.Empty(t, again, "a second run applies nothing")
	require.NoError(t, lsql.CheckSchema(ctx, pool))

	v, err := lsql.SchemaVersion(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, lsql.LatestVersion(), v)
}
