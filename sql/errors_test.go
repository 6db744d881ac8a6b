package sql_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/sql/sqltest"
)

// TestIsConnectionError: what a restart looks like to a client (a
// terminated backend, refused connections, a closed connection) is a
// connection error; refused statements, a missing database, cancellation
// and nil are not.
func TestIsConnectionError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := sqltest.NewDatabase(t)

	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SELECT * FROM no_such_table")
	require.Error(t, err)
	require.False(t, lsql.IsConnectionError(err), "a refused statement: %v", err)
	_, err = conn.Exec(ctx, "CREATE TEMP TABLE u (k int PRIMARY KEY); INSERT INTO u VALUES (1), (1)")
	require.Error(t, err)
	require.False(t, lsql.IsConnectionError(err), "a unique violation: %v", err)
	require.ErrorIs(t, lsql.Translate(err), lsql.ErrConflict)
	require.NotErrorIs(t, lsql.Translate(err), lsql.ErrUnavailable)
	require.False(t, lsql.IsConnectionError(nil))
	require.False(t, lsql.IsConnectionError(context.Canceled))
	require.False(t, lsql.IsConnectionError(fmt.Errorf("wrapped: %w", context.DeadlineExceeded)))
	require.False(t, lsql.IsConnectionError(errors.New("something else")))

	missing, err := sqltest.WithDatabase(sqltest.ServerURL(), "locksmith_no_such_database")
	require.NoError(t, err)
	_, err = pgx.Connect(ctx, missing)
	require.Error(t, err)
	require.False(t, lsql.IsConnectionError(err), "a missing database is a configuration error: %v", err)

	end := sqltest.Outage(t, dbURL)
	// The terminated backend's connection: the next statement fails.
	_, err = conn.Exec(ctx, "SELECT 1")
	require.Error(t, err)
	require.True(t, lsql.IsConnectionError(err), "terminated backend: %T %v", err, err)
	// Translate marks it temporary, for callers that look for Retryable().
	tr := lsql.Translate(err)
	require.ErrorIs(t, tr, lsql.ErrUnavailable)
	var ue *lsql.UnavailableError
	require.ErrorAs(t, tr, &ue)
	require.True(t, ue.Retryable())
	twice := fmt.Errorf("again: %w", tr)
	require.Same(t, twice, lsql.Translate(twice), "translated once")
	// Then the connection is closed.
	_, err = conn.Exec(ctx, "SELECT 1")
	require.Error(t, err)
	require.True(t, lsql.IsConnectionError(fmt.Errorf("wrapped: %w", err)), "closed connection: %T %v", err, err)
	// New connections are refused.
	_, err = pgx.Connect(ctx, dbURL)
	require.Error(t, err)
	require.True(t, lsql.IsConnectionError(err), "refused connection: %T %v", err, err)
	require.Positive(t, end())

	again, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err, "connections are allowed after the outage")
	require.NoError(t, again.Close(ctx))
}
