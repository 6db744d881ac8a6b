package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants/approvals"
)

// ApprovalWebhookWorker delivers approvals.WebhookArgs jobs (enqueued with
// each new approval request) through approvals.Notifier.Deliver. River
// retries failures with backoff; a permanent failure (a 4xx answer, a
// refused URL) cancels the job.
type ApprovalWebhookWorker struct {
	river.WorkerDefaults[approvals.WebhookArgs]
	notifier *approvals.Notifier
	logger   *slog.Logger
}

// Timeout bounds one delivery.
func (w *ApprovalWebhookWorker) Timeout(*river.Job[approvals.WebhookArgs]) time.Duration {
	return 30 * time.Second
}

// Work delivers one notification.
func (w *ApprovalWebhookWorker) Work(ctx context.Context, job *river.Job[approvals.WebhookArgs]) error {
	err := w.notifier.Deliver(ctx, job.Args.TenantID, job.Args.RequestID)
	if errors.Is(err, approvals.ErrPermanent) {
		w.logger.WarnContext(ctx, "approval webhook not delivered", "tenant_id", job.Args.TenantID,
			"approval_id", job.Args.RequestID, "job_kind", job.Kind, "err", err)
		return river.JobCancel(err)
	}
	if err != nil {
		return fmt.Errorf("jobs: approval webhook: %w", err)
	}
	return nil
}

// ApprovalsMaintainArgs expires stale approval requests and purges finished
// ones older than ApprovalsKeep.
type ApprovalsMaintainArgs struct{}

// Kind is River's job kind.
func (ApprovalsMaintainArgs) Kind() string { return "approvals_maintain" }

// InsertOpts makes the job unique while it is waiting or running.
func (ApprovalsMaintainArgs) InsertOpts() river.InsertOpts { return uniqueWhileQueued() }

// ApprovalsMaintainWorker runs ApprovalsMaintainArgs through approvals.Maintain.
type ApprovalsMaintainWorker struct {
	river.WorkerDefaults[ApprovalsMaintainArgs]
	db     *lsql.DB
	logger *slog.Logger
}

// Work expires and purges; it is idempotent.
func (w *ApprovalsMaintainWorker) Work(ctx context.Context, job *river.Job[ApprovalsMaintainArgs]) error {
	expired, purged, err := approvals.Maintain(ctx, w.db, time.Now(), ApprovalsKeep)
	if err != nil {
		return fmt.Errorf("jobs: maintain approvals: %w", err)
	}
	if expired+purged > 0 {
		w.logger.DebugContext(ctx, "approvals maintained", "expired", expired, "purged", purged, "job_kind", job.Kind)
	}
	return nil
}
