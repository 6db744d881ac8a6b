package jobs_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/jobs"
	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
)

// TestReadHealth: waiting jobs are counted by queue and state, the oldest
// due job's wait is reported per queue, and recent discards by kind (old
// ones are not).
func TestReadHealth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// A database of its own: other tests here run working clients.
	ownerURL := sqltest.NewDatabase(t)
	db, err := lsql.Open(ctx, lsql.Options{URL: ownerURL, AssumeRole: true})
	require.NoError(t, err)
	t.Cleanup(db.Close)

	h, err := jobs.ReadHealth(ctx, db)
	require.NoError(t, err)
	require.Empty(t, h.Waiting)
	require.Empty(t, h.OldestDue)
	require.Empty(t, h.Discarded)

	ins, err := jobs.NewInserter(db, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	revoke := func(opts *river.InsertOpts) *rivertype.JobInsertResult {
		res, err := ins.Insert(ctx, consent.RevokeJobArgs{TenantID: uuid.New(), RevocationID: uuid.New()}, opts)
		require.NoError(t, err)
		return res
	}
	due := revoke(nil) // available now; backdated below: due 30 s ago, nobody works it
	revoke(nil)
	revoke(&river.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
	reset := func() *rivertype.JobInsertResult {
		res, err := ins.Insert(ctx, tenants.PasswordResetArgs{AccountID: uuid.New()}, nil)
		require.NoError(t, err)
		return res
	}
	recent, old := reset(), reset()
	reset() // stays available on the default queue

	owner, err := pgx.Connect(ctx, ownerURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = owner.Close(context.Background()) })
	_, err = owner.Exec(ctx, "UPDATE river_job SET scheduled_at = now() - interval '30 seconds' WHERE id = $1", due.Job.ID)
	require.NoError(t, err)
	_, err = owner.Exec(ctx, `UPDATE river_job SET state = 'discarded', finalized_at = now() - (CASE id WHEN $2 THEN interval '2 days' ELSE interval '1 minute' END)
		WHERE id IN ($1, $2)`, recent.Job.ID, old.Job.ID)
	require.NoError(t, err)

	h, err = jobs.ReadHealth(ctx, db)
	require.NoError(t, err)
	require.ElementsMatch(t, []jobs.QueueCount{
		{Queue: consent.QueueGrants, State: "available", Jobs: 2},
		{Queue: consent.QueueGrants, State: "scheduled", Jobs: 1},
		{Queue: river.QueueDefault, State: "available", Jobs: 1},
	}, h.Waiting)
	require.InDelta(t, 30, h.OldestDue[consent.QueueGrants].Seconds(), 5, "the oldest due job of the grants queue")
	require.Less(t, h.OldestDue[river.QueueDefault], 10*time.Second)
	require.Equal(t, map[string]int64{tenants.PasswordResetArgs{}.Kind(): 1}, h.Discarded, "the discard of two days ago is outside the window")
}
