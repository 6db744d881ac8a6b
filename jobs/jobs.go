package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/locksmithhq/locksmith/consent"
	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/mail"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

// Config holds the dependencies of the workers.
type Config struct {
	DB     *lsql.DB
	Sealer *seal.Sealer
	Logger *slog.Logger
	// Work, when false, builds an insert-only client (serve --no-worker).
	Work bool
	// MaxWorkers bounds concurrently running jobs on the default queue; 0 means 50.
	MaxWorkers int
	// Egress sends approval webhooks; nil means the production policy.
	Egress *egress.Client
	// BaseURL is the public URL used in approval links; "" means http://localhost.
	BaseURL string
	// Broker, when set, registers the grant workers (refresh, upstream
	// revocation) and the hourly purge of expired grant state.
	Broker *consent.Broker
	// RefreshPerSecond limits grant refreshes per upstream and per worker
	// process; 0 means DefaultRefreshPerSecond.
	RefreshPerSecond float64
	// Tenants, when set, registers the password-reset email worker
	// (password_reset.go).
	Tenants *tenants.Service
	// Mailer sends the password-reset emails (LOCKSMITH_SMTP_URL); nil
	// makes each attempt fail with an error saying the worker has no mail
	// server.
	Mailer *mail.Mailer
}

// GrantsFetchPollInterval is how often a working client polls the grants
// queue for due jobs (River's default, kept by the default queue, whose
// jobs are announced by NOTIFY or run hourly, is 1 s).
//
// River announces a new job by LISTEN/NOTIFY, but a job that becomes due
// later (a refresh scheduled minutes ahead, a job snoozed until its slot
// under the rate limit) waits for the next poll: it starts up to one
// interval (plus River's jitter of 10 %) after it is due. River's scheduler
// (every 5 s, not configurable) makes such jobs available up to 5 s ahead,
// so it adds nothing to that; but a job inserted less than 5 s before it
// is due waits for its next run and may start up to 5 s late (refreshes
// due that soon are inserted to run at once: consent's refreshRunAt).
//
// The cost is one fetch query per interval per worker process, 10 a second
// instead of 1: an index scan that finds nothing while no job is due, about
// 0.07 ms of database time (see docs/benchmarks-tokenb.md). In exchange due
// refreshes start 52 ms late at p50 and 107 ms at p99 instead of 407 ms and
// 955 ms, and a job snoozed until its reserved slot is back within about
// 110 ms of it, well inside the second's worth of tokens the rate limit's
// bucket keeps for late jobs. Polling would need about 125 queries a second
// to start jobs within 10 ms, for refreshes that run minutes before expiry.
const GrantsFetchPollInterval = 100 * time.Millisecond

// NewClient builds the River client with every worker and periodic job.
func NewClient(cfg Config) (*river.Client[pgx.Tx], error) {
	switch {
	case cfg.DB == nil:
		return nil, errors.New("jobs: db is required")
	case cfg.Sealer == nil:
		return nil, errors.New("jobs: sealer is required")
	case cfg.Logger == nil:
		return nil, errors.New("jobs: logger is required")
	}
	if cfg.MaxWorkers == 0 {
		cfg.MaxWorkers = 50
	}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &RewrapWorker{sealer: cfg.Sealer, logger: cfg.Logger}); err != nil {
		return nil, fmt.Errorf("jobs: add worker: %w", err)
	}
	auditPeriodic, err := addPolicyAuditWorkers(workers, cfg)
	if err != nil {
		return nil, err
	}
	grantPeriodic, err := addGrantWorkers(workers, cfg)
	if err != nil {
		return nil, err
	}
	enduserPeriodic, err := addEndUserPurgeWorker(workers, cfg) // enduser_purge.go
	if err != nil {
		return nil, err
	}
	if cfg.Tenants != nil {
		var sender tenants.MailSender
		if cfg.Mailer != nil {
			sender = cfg.Mailer
		}
		if err := river.AddWorkerSafely(workers, NewPasswordResetWorker(cfg.Tenants, sender, cfg.Logger)); err != nil {
			return nil, fmt.Errorf("jobs: add worker: %w", err)
		}
	}
	rc := &river.Config{
		// River reports routine progress at info level every few seconds;
		// only its warnings and errors reach Locksmith's log.
		Logger:  slog.New(minLevel{cfg.Logger.Handler(), slog.LevelWarn}),
		Workers: workers,
	}
	if cfg.Work {
		rc.Queues = map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.MaxWorkers}}
		rc.FetchCooldown = 5 * time.Millisecond
		rc.PeriodicJobs = []*river.PeriodicJob{
			river.NewPeriodicJob(river.PeriodicInterval(time.Hour), func() (river.JobArgs, *river.InsertOpts) {
				return RewrapArgs{}, nil
			}, &river.PeriodicJobOpts{RunOnStart: true}),
		}
		rc.PeriodicJobs = append(rc.PeriodicJobs, auditPeriodic...)
		rc.PeriodicJobs = append(rc.PeriodicJobs, grantPeriodic...)
		rc.PeriodicJobs = append(rc.PeriodicJobs, enduserPeriodic...)
		if cfg.Broker != nil {
			rc.Queues[consent.QueueGrants] = river.QueueConfig{MaxWorkers: cfg.MaxWorkers, FetchPollInterval: GrantsFetchPollInterval}
		}
	}
	client, err := river.NewClient(riverpgxv5.New(cfg.DB.Pool()), rc)
	if err != nil {
		return nil, fmt.Errorf("jobs: river client: %w", err)
	}
	return client, nil
}

// RewrapArgs asks for every tenant data key not wrapped by the current master
// key to be re-wrapped (after `LOCKSMITH_MASTER_KEY` gained a new first key).
type RewrapArgs struct{}

// Kind is River's job kind.
func (RewrapArgs) Kind() string { return "rewrap_data_keys" }

// InsertOpts makes the job unique while it is waiting or running.
func (RewrapArgs) InsertOpts() river.InsertOpts { return uniqueWhileQueued() }

// uniqueWhileQueued makes a periodic job unique while waiting or running.
func uniqueWhileQueued() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
		rivertype.JobStateRetryable, rivertype.JobStateScheduled,
	}}}
}

// RewrapWorker runs RewrapArgs jobs through seal.Sealer.RewrapAll.
type RewrapWorker struct {
	river.WorkerDefaults[RewrapArgs]
	sealer *seal.Sealer
	logger *slog.Logger
}

// Work re-wraps; it is idempotent, so a retry after a partial run is safe.
func (w *RewrapWorker) Work(ctx context.Context, job *river.Job[RewrapArgs]) error {
	n, err := w.sealer.RewrapAll(ctx)
	if err != nil {
		return fmt.Errorf("jobs: rewrap data keys: %w", err)
	}
	if n > 0 {
		w.logger.InfoContext(ctx, "data keys re-wrapped", "count", n, "job_kind", job.Kind)
	}
	return nil
}

// minLevel drops records below level.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.level}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.level}
}
