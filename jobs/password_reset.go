package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/locksmithhq/locksmith/tenants"
)

// PasswordResetWorker runs tenants.PasswordResetArgs jobs (enqueued by a
// "Forgot your password?" request) through tenants.SendPasswordReset: mint
// a reset token, store its hash, email the link, in that order. A failed
// send is retried with PasswordResetBackoff, each attempt minting a new
// token (the previous one stops working). An account deleted meanwhile
// cancels the job.
type PasswordResetWorker struct {
	river.WorkerDefaults[tenants.PasswordResetArgs]
	svc    *tenants.Service
	mailer tenants.MailSender
	logger *slog.Logger
}

// NewPasswordResetWorker returns the worker. mailer nil (no
// LOCKSMITH_SMTP_URL on this process) makes every attempt fail with an
// error that says so, so a job enqueued by a web process that has a mail
// server waits for a worker that has one.
func NewPasswordResetWorker(svc *tenants.Service, mailer tenants.MailSender, logger *slog.Logger) *PasswordResetWorker {
	return &PasswordResetWorker{svc: svc, mailer: mailer, logger: logger}
}

// Timeout bounds one attempt; the mailer's own timeout (10 s) is shorter.
func (w *PasswordResetWorker) Timeout(*river.Job[tenants.PasswordResetArgs]) time.Duration {
	return 30 * time.Second
}

// NextRetry is PasswordResetBackoff of the attempt that failed.
func (w *PasswordResetWorker) NextRetry(job *river.Job[tenants.PasswordResetArgs]) time.Time {
	return time.Now().Add(PasswordResetBackoff(job.Attempt))
}

// PasswordResetBackoff is the wait after failed attempt n (1-based): 10 s,
// doubling, at most 5 minutes. With tenants.PasswordResetMaxAttempts
// attempts the last is about half an hour after the request.
func PasswordResetBackoff(attempt int) time.Duration {
	d := 10 * time.Second
	for i := 1; i < attempt && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

// Work sends one reset email.
func (w *PasswordResetWorker) Work(ctx context.Context, job *river.Job[tenants.PasswordResetArgs]) error {
	err := w.svc.SendPasswordReset(ctx, job.Args.AccountID, w.mailer)
	if errors.Is(err, tenants.ErrNotFound) {
		return river.JobCancel(err)
	}
	if err != nil {
		w.logger.WarnContext(ctx, "password reset email not sent", "account_id", job.Args.AccountID,
			"attempt", job.Attempt, "job_kind", job.Kind, "err", err)
		return fmt.Errorf("jobs: password reset email: %w", err)
	}
	return nil
}
