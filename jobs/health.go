package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	lsql "github.com/locksmithhq/locksmith/sql"
)

// Health is the state of the job queues, shared by every process (it is
// read from river_job, not from this process's client).
type Health struct {
	// Waiting counts the jobs not finished, by queue and state
	// (available, scheduled, retryable, running).
	Waiting []QueueCount
	// OldestDue is, per queue, how long its oldest due job (available and
	// scheduled at or before now) has waited to start: a queue that does
	// not keep up shows here first. Queues with no due job are absent.
	OldestDue map[string]time.Duration
	// Discarded counts, by kind, the jobs River gave up on (attempts used
	// up, or cancelled by the worker) in the last DiscardedWindow.
	Discarded map[string]int64
}

// QueueCount is one (queue, state) count of Health.Waiting.
type QueueCount struct {
	Queue, State string
	Jobs         int64
}

// DiscardedWindow is how far back Health.Discarded looks.
const DiscardedWindow = 24 * time.Hour

// ReadHealth reads the queues' Health in one transaction. The
// queries use River's own indexes (state, queue, … and state, finalized_at),
// so their cost follows the jobs waiting and the recent failures, not the
// completed jobs River keeps for a day.
func ReadHealth(ctx context.Context, db *lsql.DB) (Health, error) {
	h := Health{OldestDue: map[string]time.Duration{}, Discarded: map[string]int64{}}
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT queue, state::text, count(*) FROM river_job
			WHERE state IN ('available', 'scheduled', 'retryable', 'running') GROUP BY 1, 2 ORDER BY 1, 2`)
		if err != nil {
			return err
		}
		if h.Waiting, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (QueueCount, error) {
			var c QueueCount
			return c, r.Scan(&c.Queue, &c.State, &c.Jobs)
		}); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT queue, extract(epoch FROM now() - min(scheduled_at))::float8 FROM river_job
			WHERE state = 'available' AND scheduled_at <= now() GROUP BY 1`)
		if err != nil {
			return err
		}
		var queue string
		var secs float64
		if _, err := pgx.ForEachRow(rows, []any{&queue, &secs}, func() error {
			h.OldestDue[queue] = time.Duration(max(secs, 0) * float64(time.Second))
			return nil
		}); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT kind, count(*) FROM river_job
			WHERE state = 'discarded' AND finalized_at > now() - $1::interval GROUP BY 1`, DiscardedWindow)
		if err != nil {
			return err
		}
		var kind string
		var n int64
		_, err = pgx.ForEachRow(rows, []any{&kind, &n}, func() error {
			h.Discarded[kind] = n
			return nil
		})
		return err
	})
	if err != nil {
		return Health{}, fmt.Errorf("jobs: read queue health: %w", lsql.Translate(err))
	}
	return h, nil
}
