package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/locksmithhq/locksmith/tenants/approvals"
	"github.com/locksmithhq/locksmith/tenants/audit"
	"github.com/locksmithhq/locksmith/tenants/egress"
)

// Schedules of the audit and approval periodic jobs.
const (
	AuditSealInterval         = time.Minute
	AuditVerifyInterval       = 6 * time.Hour
	AuditPurgeInterval        = 24 * time.Hour
	ApprovalsMaintainInterval = 5 * time.Minute
	// ApprovalsKeep is how long finished approval requests are kept.
	ApprovalsKeep = 90 * 24 * time.Hour
)

// AuditSealArgs seals every tenant's committed, unsealed audit events.
type AuditSealArgs struct{}

// Kind is River's job kind.
func (AuditSealArgs) Kind() string { return "audit_seal" }

// InsertOpts makes the job unique while it is waiting or running.
func (AuditSealArgs) InsertOpts() river.InsertOpts { return uniqueWhileQueued() }

// AuditSealWorker runs AuditSealArgs through audit.Store.SealAll.
type AuditSealWorker struct {
	river.WorkerDefaults[AuditSealArgs]
	store  *audit.Store
	logger *slog.Logger
}

// Work seals. A gap (an event deleted before it was sealed) is evidence of
// tampering: it is logged as an error for operators and the job succeeds,
// since retrying can't fill it; other failures are retried.
func (w *AuditSealWorker) Work(ctx context.Context, job *river.Job[AuditSealArgs]) error {
	n, err := w.store.SealAll(ctx)
	if errors.Is(err, audit.ErrGap) {
		w.logger.ErrorContext(ctx, "audit trail has a gap; run `locksmith audit verify`", "job_kind", job.Kind, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("jobs: seal audit trail: %w", err)
	}
	if n > 0 {
		w.logger.DebugContext(ctx, "audit events sealed", "count", n, "job_kind", job.Kind)
	}
	return nil
}

// AuditVerifyArgs verifies every tenant's audit trail.
type AuditVerifyArgs struct{}

// Kind is River's job kind.
func (AuditVerifyArgs) Kind() string { return "audit_verify" }

// InsertOpts makes the job unique while it is waiting or running.
func (AuditVerifyArgs) InsertOpts() river.InsertOpts { return uniqueWhileQueued() }

// AuditVerifyWorker runs AuditVerifyArgs through audit.Store.VerifyAll and
// logs every finding at error level, naming tenant and event.
type AuditVerifyWorker struct {
	river.WorkerDefaults[AuditVerifyArgs]
	store  *audit.Store
	logger *slog.Logger
}

// Timeout allows a long verification.
func (w *AuditVerifyWorker) Timeout(*river.Job[AuditVerifyArgs]) time.Duration { return time.Hour }

// Work verifies; findings are logged, not retried.
func (w *AuditVerifyWorker) Work(ctx context.Context, job *river.Job[AuditVerifyArgs]) error {
	reports, err := w.store.VerifyAll(ctx)
	if err != nil {
		return fmt.Errorf("jobs: verify audit trail: %w", err)
	}
	for _, r := range reports {
		for _, p := range r.Problems {
			w.logger.ErrorContext(ctx, "audit trail tampered", "tenant_id", r.Tenant.ID, "tenant", r.Tenant.Slug,
				"seq", p.Seq, "problem", p.Kind, "detail", p.Detail, "job_kind", job.Kind)
		}
		if r.MoreProblems > 0 {
			w.logger.ErrorContext(ctx, "audit trail tampered", "tenant_id", r.Tenant.ID, "tenant", r.Tenant.Slug,
				"more_problems", r.MoreProblems, "job_kind", job.Kind)
		}
	}
	return nil
}

// AuditPurgeArgs deletes sealed audit events past each tenant's retention.
type AuditPurgeArgs struct{}

// Kind is River's job kind.
func (AuditPurgeArgs) Kind() string { return "audit_purge" }

// InsertOpts makes the job unique while it is waiting or running.
func (AuditPurgeArgs) InsertOpts() river.InsertOpts { return uniqueWhileQueued() }

// AuditPurgeWorker runs AuditPurgeArgs through audit.Store.PurgeAll.
type AuditPurgeWorker struct {
	river.WorkerDefaults[AuditPurgeArgs]
	store  *audit.Store
	logger *slog.Logger
}

// Work purges; it is idempotent.
func (w *AuditPurgeWorker) Work(ctx context.Context, job *river.Job[AuditPurgeArgs]) error {
	n, err := w.store.PurgeAll(ctx)
	if err != nil {
		return fmt.Errorf("jobs: purge audit trail: %w", err)
	}
	if n > 0 {
		w.logger.InfoContext(ctx, "audit events purged after retention", "count", n, "job_kind", job.Kind)
	}
	return nil
}

// addPolicyAuditWorkers registers the audit and approval workers and
// returns their periodic jobs.
func addPolicyAuditWorkers(workers *river.Workers, cfg Config) ([]*river.PeriodicJob, error) {
	store, err := audit.New(audit.Config{DB: cfg.DB, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	eg := cfg.Egress
	if eg == nil {
		// Production policy: public https targets only.
		if eg, err = egress.New(egress.Options{}); err != nil {
			return nil, err
		}
	}
	baseURL := cfg.BaseURL
	if baseURL == "" {
		baseURL = "http://localhost"
	}
	notifier, err := approvals.NewNotifier(approvals.NotifierConfig{DB: cfg.DB, Sealer: cfg.Sealer, Egress: eg, Logger: cfg.Logger, BaseURL: baseURL})
	if err != nil {
		return nil, err
	}
	for _, add := range []func() error{
		func() error {
			return river.AddWorkerSafely(workers, &AuditSealWorker{store: store, logger: cfg.Logger})
		},
		func() error {
			return river.AddWorkerSafely(workers, &AuditVerifyWorker{store: store, logger: cfg.Logger})
		},
		func() error {
			return river.AddWorkerSafely(workers, &AuditPurgeWorker{store: store, logger: cfg.Logger})
		},
		func() error {
			return river.AddWorkerSafely(workers, &ApprovalWebhookWorker{notifier: notifier, logger: cfg.Logger})
		},
		func() error {
			return river.AddWorkerSafely(workers, &ApprovalsMaintainWorker{db: cfg.DB, logger: cfg.Logger})
		},
	} {
		if err := add(); err != nil {
			return nil, fmt.Errorf("jobs: add worker: %w", err)
		}
	}
	every := func(d time.Duration, args river.JobArgs) *river.PeriodicJob {
		return river.NewPeriodicJob(river.PeriodicInterval(d), func() (river.JobArgs, *river.InsertOpts) {
			return args, nil
		}, &river.PeriodicJobOpts{RunOnStart: true})
	}
	return []*river.PeriodicJob{
		every(AuditSealInterval, AuditSealArgs{}),
		every(AuditVerifyInterval, AuditVerifyArgs{}),
		every(AuditPurgeInterval, AuditPurgeArgs{}),
		every(ApprovalsMaintainInterval, ApprovalsMaintainArgs{}),
	}, nil
}
