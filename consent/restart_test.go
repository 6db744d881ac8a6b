package consent_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/sql/sqltest"
)

// TestTokenDuringDatabaseOutage: while PostgreSQL restarts (connections
// terminated, new ones refused), cached tokens are still served, and a
// token that must be read from the vault fails with an error that says it
// is temporary (lsql.ErrUnavailable, Retryable() true), so the MCP endpoint
// tells the agent to retry instead of reporting an internal error. Once the
// database is back, the same call succeeds.
func TestTokenDuringDatabaseOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := sqltest.NewDatabase(t)
	db, err := lsql.Open(ctx, lsql.Options{URL: dbURL, AssumeRole: true})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	e := setupOn(t, db)
	acme := startAcme(t, 2)
	up := e.addUpstream(t, acme, upstreamOpts{})
	e.save(t, acme, up, userName(0))
	e.save(t, acme, up, userName(1))
	b := e.newBroker(t, brokerOpts{})
	warm, err := b.Token(ctx, e.tenantID, up.ID, testUser(userName(0)), nil)
	require.NoError(t, err)

	end := sqltest.Outage(t, dbURL)
	tok, err := b.Token(ctx, e.tenantID, up.ID, testUser(userName(0)), nil)
	require.NoError(t, err, "a cached token needs no database")
	require.Equal(t, warm.Value, tok.Value)

	_, err = b.Token(ctx, e.tenantID, up.ID, testUser(userName(1)), nil)
	require.ErrorIs(t, err, lsql.ErrUnavailable)
	var r interface{ Retryable() bool }
	require.True(t, errors.As(err, &r) && r.Retryable(), "the error says it is temporary: %v", err)
	require.Positive(t, end())

	require.Eventually(t, func() bool {
		_, err := b.Token(ctx, e.tenantID, up.ID, testUser(userName(1)), nil)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "the token is served once the database is back")
}
