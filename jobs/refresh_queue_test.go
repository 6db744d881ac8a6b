package jobs_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/jobs"
	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/sql/sqltest"
)

// TestRefreshOverTheLimitSnoozesOnce starts the working client NewClient
// builds, on a database of the test's own (it fetches every queue), with a
// limit of 20 refreshes a second, and makes 60 grants due at once. Every
// grant is refreshed exactly once; the refreshes Acme Tasks receives never
// outrun 20 a second plus the burst of 20, over any window; and a job over
// the limit snoozes once, until the slot it reserved. (Before slots were
// reserved, a job over the limit snoozed until the bucket's next token and
// came back at every poll of the queue until it found one.)
func TestRefreshOverTheLimitSnoozesOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const grants, perSecond, burst = 60, 20, 20

	db, err := lsql.Open(ctx, lsql.Options{URL: sqltest.NewDatabase(t), AssumeRole: true})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	var acmeCfg tasks.Config
	for i := range grants {
		name := fmt.Sprintf("user%02d", i)
		acmeCfg.Users = append(acmeCfg.Users, tasks.User{Name: name, Email: name + "@acme.example"})
	}
	var mu sync.Mutex
	var arrivals []time.Time // of refresh requests at Acme Tasks
	tb := setupGrantsWith(t, grantSetup{db: db, acme: acmeCfg, wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Path == "/token" {
				mu.Lock()
				arrivals = append(arrivals, time.Now())
				mu.Unlock()
			}
			h.ServeHTTP(w, r)
		})
	}})
	for _, u := range acmeCfg.Users {
		tb.save(t, u.Name, -time.Second) // the refresh job is due at once
	}

	client, err := jobs.NewClient(jobs.Config{DB: db, Sealer: tb.sealer, Logger: tb.logger, Egress: tb.egress,
		Broker: tb.broker, Work: true, RefreshPerSecond: perSecond})
	require.NoError(t, err)
	require.NoError(t, client.Start(ctx))
	t.Cleanup(func() { _ = client.Stop(context.Background()) })

	var pending int
	require.Eventually(t, func() bool {
		// The first round: the next one is due about an hour from now.
		err := db.Pool().QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = $1 AND state <> 'completed'
			AND scheduled_at < now() + interval '10 minutes'`, consent.RefreshJobArgs{}.Kind()).Scan(&pending)
		return err == nil && pending == 0 && tb.acme.Stats().RefreshGrants >= grants
	}, 30*time.Second, 20*time.Millisecond, "first-round refresh jobs left: %d", pending)
	st := tb.acme.Stats()
	require.Equal(t, grants, st.RefreshGrants, "one refresh per grant")
	require.Zero(t, st.FamiliesRevoked)

	// The limit, over every window between two arrivals. A refresh reaches
	// Acme a few milliseconds after the worker took its token (two
	// transactions first), not always the same few: 100 ms of that
	// variation is allowed.
	mu.Lock()
	at := slices.Clone(arrivals)
	mu.Unlock()
	require.Len(t, at, grants)
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	for i := range at {
		for j := i; j < len(at); j++ {
			allowed := perSecond*(at[j].Sub(at[i])+100*time.Millisecond).Seconds() + burst
			require.LessOrEqual(t, float64(j-i+1), allowed,
				"%d refreshes in %s (arrivals %d to %d)", j-i+1, at[j].Sub(at[i]), i, j)
		}
	}
	require.Greater(t, at[len(at)-1].Sub(at[0]), time.Second, "40 refreshes over the burst take two seconds at 20/s")

	// The snoozes: River counts them in each job's metadata.
	var snoozed, snoozes, most int
	require.NoError(t, db.Pool().QueryRow(ctx, `SELECT count(*) FILTER (WHERE n > 0), COALESCE(sum(n), 0), COALESCE(max(n), 0)
		FROM (SELECT COALESCE((metadata->>'snoozes')::int, 0) AS n FROM river_job WHERE kind = $1) j`,
		consent.RefreshJobArgs{}.Kind()).Scan(&snoozed, &snoozes, &most))
	t.Logf("%d refreshes over %s; %d jobs snoozed, %d snoozes, at most %d for one job",
		grants, at[len(at)-1].Sub(at[0]).Round(time.Millisecond), snoozed, snoozes, most)
	require.GreaterOrEqual(t, snoozed, grants-2*burst, "jobs over the limit snoozed")
	require.LessOrEqual(t, snoozes, snoozed+2, "about one snooze per job over the limit")
	require.LessOrEqual(t, most, 2)
}
