package audit_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants/audit"
)

// TestWriterRidesOutDatabaseRestart: intents and outcomes written while
// PostgreSQL restarts (every connection terminated, new ones refused for a
// while) are committed once it is back, exactly once, instead of failing:
// a failed outcome would leave a call that reached its upstream without
// one. With retries switched off, the same outage fails them (the guard
// run: the retry is what saves them).
func TestWriterRidesOutDatabaseRestart(t *testing.T) {
	t.Parallel()
	for _, retry := range []bool{true, false} {
		name := "retry"
		if !retry {
			name = "no retry"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dbURL := sqltest.NewDatabase(t)
			db, err := lsql.Open(ctx, lsql.Options{URL: dbURL, AssumeRole: true})
			require.NoError(t, err)
			t.Cleanup(db.Close)
			var tenant uuid.UUID
			require.NoError(t, db.Pool().QueryRow(ctx, "INSERT INTO tenants (slug, name) VALUES ($1, 'Restart test') RETURNING id",
				"r-"+uuid.NewString()[:8]).Scan(&tenant))
			cfg := audit.WriterConfig{DB: db, Logger: discard}
			if !retry {
				cfg.RetryFor = -1
			}
			w, err := audit.NewWriter(cfg)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, w.Close(context.Background())) })
			store, err := audit.New(audit.Config{DB: db, Logger: discard})
			require.NoError(t, err)

			// Calls whose intent is committed before the outage and whose
			// outcome is written during it, and calls made during it.
			const n = 16
			seqs := make([]int64, n)
			for i := range n / 2 {
				seqs[i], err = w.Intent(ctx, tenant, call(i))
				require.NoError(t, err)
			}
			end := sqltest.Outage(t, dbURL)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if i >= n/2 {
						if seqs[i], errs[i] = w.Intent(ctx, tenant, call(i)); errs[i] != nil {
							return
						}
					}
					_, errs[i] = w.Outcome(ctx, tenant, seqs[i], audit.Outcome{Status: 200, Latency: time.Millisecond})
				}()
			}
			// The outage lasts while the writes wait (or until they failed).
			time.Sleep(time.Second)
			require.Positive(t, end(), "backends were terminated")
			wg.Wait()

			if !retry {
				failed := 0
				for _, err := range errs {
					if err != nil {
						failed++
						require.True(t, lsql.IsConnectionError(err), "%v", err)
					}
				}
				require.Positive(t, failed, "without retries, writes during the outage fail")
				return
			}
			for i, err := range errs {
				require.NoError(t, err, "call %d", i)
			}
			// Exactly once: n intents and n outcomes, the chain intact.
			var intents, outcomes int
			require.NoError(t, db.InTenant(ctx, tenant, func(tx pgx.Tx) error {
				return tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE kind = 'call'), count(*) FILTER (WHERE kind = 'outcome') FROM audit_events`).
					Scan(&intents, &outcomes)
			}))
			require.Equal(t, n, intents)
			require.Equal(t, n, outcomes)
			for {
				res, err := store.Seal(ctx, tenant)
				require.NoError(t, err)
				if res.Events == 0 {
					break
				}
			}
			rep, err := store.Verify(ctx, tenant)
			require.NoError(t, err)
			require.True(t, rep.OK(), "%v", rep.Problems)
			require.Equal(t, int64(2*n), rep.Events)
		})
	}
}
