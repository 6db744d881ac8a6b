package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/locksmithhq/locksmith/consent"
	lsql "github.com/locksmithhq/locksmith/sql"
)

// NewInserter returns an insert-only River client on db (no workers, no
// queues) for domain services that enqueue jobs in their own transactions,
// like consent.Vault. It exists because the working client returned by
// NewClient needs those services built first; jobs inserted through it are
// worked by NewClient's client like any other.
func NewInserter(db *lsql.DB, logger *slog.Logger) (*river.Client[pgx.Tx], error) {
	client, err := river.NewClient(riverpgxv5.New(db.Pool()), &river.Config{Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("jobs: river inserter: %w", err)
	}
	return client, nil
}

// RevokeWorker runs consent.RevokeJobArgs through Broker.RevokeAtUpstream:
// after a user revokes a grant (its tokens already destroyed locally), the
// token is revoked at the upstream (RFC 7009); it is also the backstop of
// revocation after use (a single-use token that Broker.AfterUse did not
// revoke, e.g. after a crash). It is idempotent; transient failures are
// retried with backoff (snoozing on Retry-After).
type RevokeWorker struct {
	river.WorkerDefaults[consent.RevokeJobArgs]
	broker *consent.Broker
}

// NewRevokeWorker returns a RevokeWorker over broker.
func NewRevokeWorker(broker *consent.Broker) *RevokeWorker { return &RevokeWorker{broker: broker} }

// Work revokes at the upstream.
func (w *RevokeWorker) Work(ctx context.Context, job *river.Job[consent.RevokeJobArgs]) error {
	err := w.broker.RevokeAtUpstream(ctx, job.Args.TenantID, job.Args.RevocationID)
	if d := consent.RetryAfter(err); d > 0 && time.Since(job.CreatedAt) < maxSnoozeAge {
		return river.JobSnooze(jitter(d))
	}
	return err
}

// PurgeGrantsArgs asks for expired grant state to be purged: revoked grants
// past their retention and upstream revocations whose job gave up.
type PurgeGrantsArgs struct{}

// Kind is River's job kind.
func (PurgeGrantsArgs) Kind() string { return "grant_purge" }

// InsertOpts makes the job unique while it is waiting or running.
func (PurgeGrantsArgs) InsertOpts() river.InsertOpts {
	o := uniqueWhileQueued()
	o.Queue = consent.QueueGrants
	return o
}

// PurgeGrantsWorker runs PurgeGrantsArgs through Vault.Purge.
type PurgeGrantsWorker struct {
	river.WorkerDefaults[PurgeGrantsArgs]
	vault  *consent.Vault
	logger *slog.Logger
}

// NewPurgeGrantsWorker returns a PurgeGrantsWorker over vault.
func NewPurgeGrantsWorker(vault *consent.Vault, logger *slog.Logger) *PurgeGrantsWorker {
	return &PurgeGrantsWorker{vault: vault, logger: logger}
}

// Work purges; deleting is idempotent.
func (w *PurgeGrantsWorker) Work(ctx context.Context, job *river.Job[PurgeGrantsArgs]) error {
	n, err := w.vault.Purge(ctx)
	if err != nil {
		return fmt.Errorf("jobs: purge grants: %w", err)
	}
	if n > 0 {
		w.logger.InfoContext(ctx, "grant state purged", "count", n, "job_kind", job.Kind)
	}
	return nil
}
