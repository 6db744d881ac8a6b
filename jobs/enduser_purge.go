package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants"
)

// EndUserPurgeInterval is how often expired end-user sessions and flow
// states are purged.
const EndUserPurgeInterval = time.Hour

// EndUserPurgeArgs deletes, in every tenant, end-user sessions and sign-in
// or consent flow states that expired a while ago (see
// tenants.PurgeEndUserState for how long each is kept).
type EndUserPurgeArgs struct{}

// Kind is River's job kind.
func (EndUserPurgeArgs) Kind() string { return "enduser_purge" }

// InsertOpts makes the job unique while it is waiting or running.
func (EndUserPurgeArgs) InsertOpts() river.InsertOpts { return uniqueWhileQueued() }

// EndUserPurgeWorker runs EndUserPurgeArgs through tenants.PurgeEndUserState.
type EndUserPurgeWorker struct {
	river.WorkerDefaults[EndUserPurgeArgs]
	db     *lsql.DB
	logger *slog.Logger
}

// NewEndUserPurgeWorker returns the worker.
func NewEndUserPurgeWorker(db *lsql.DB, logger *slog.Logger) *EndUserPurgeWorker {
	return &EndUserPurgeWorker{db: db, logger: logger}
}

// Work purges; it is idempotent, so a retry after a partial run is safe.
func (w *EndUserPurgeWorker) Work(ctx context.Context, job *river.Job[EndUserPurgeArgs]) error {
	sessions, states, err := tenants.PurgeEndUserState(ctx, w.db, time.Now())
	if sessions+states > 0 {
		w.logger.InfoContext(ctx, "expired end-user state purged", "sessions", sessions, "states", states, "job_kind", job.Kind)
	}
	if err != nil {
		return fmt.Errorf("jobs: purge end-user state: %w", err)
	}
	return nil
}

// addEndUserPurgeWorker registers the worker and returns its periodic job.
func addEndUserPurgeWorker(workers *river.Workers, cfg Config) ([]*river.PeriodicJob, error) {
	if err := river.AddWorkerSafely(workers, NewEndUserPurgeWorker(cfg.DB, cfg.Logger)); err != nil {
		return nil, fmt.Errorf("jobs: add worker: %w", err)
	}
	return []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(EndUserPurgeInterval),
		func() (river.JobArgs, *river.InsertOpts) { return EndUserPurgeArgs{}, nil },
		&river.PeriodicJobOpts{RunOnStart: true})}, nil
}
