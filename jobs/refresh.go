package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/locksmithhq/locksmith/consent"
)

// addGrantWorkers registers the grant workers when cfg.Broker is set and
// returns the periodic jobs to schedule.
func addGrantWorkers(workers *river.Workers, cfg Config) ([]*river.PeriodicJob, error) {
	if cfg.Broker == nil {
		return nil, nil
	}
	if err := errors.Join(
		river.AddWorkerSafely(workers, NewRefreshWorker(cfg.Broker, cfg.RefreshPerSecond, cfg.Logger)),
		river.AddWorkerSafely(workers, NewRevokeWorker(cfg.Broker)),
		river.AddWorkerSafely(workers, NewPurgeGrantsWorker(cfg.Broker.Vault(), cfg.Logger)),
	); err != nil {
		return nil, fmt.Errorf("jobs: add grant workers: %w", err)
	}
	return []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(time.Hour),
		func() (river.JobArgs, *river.InsertOpts) { return PurgeGrantsArgs{}, nil }, nil)}, nil
}

// DefaultRefreshPerSecond is the default rate of refresh jobs per upstream
// and per worker process.
const DefaultRefreshPerSecond = 50

// maxSnoozeAge bounds how long a job keeps snoozing on Retry-After (snoozes
// don't count as attempts); older jobs fall back to River's retries.
const maxSnoozeAge = 6 * time.Hour

// RefreshWorker runs consent.RefreshJobArgs through Broker.RefreshGrant:
// each grant is refreshed shortly before its access token expires, so that
// tool calls in steady state never wait for a refresh. The job is
// idempotent (a job for an outdated grant version does nothing) and a grant
// that turns needs_reauth ends it. Refreshes are rate limited per upstream;
// over the limit, or when the upstream sent Retry-After, the job snoozes.
type RefreshWorker struct {
	river.WorkerDefaults[consent.RefreshJobArgs]
	broker *consent.Broker
	limits *rateLimits
	logger *slog.Logger
}

// NewRefreshWorker returns a RefreshWorker allowing perSecond refreshes per
// upstream (0 means DefaultRefreshPerSecond), with a burst of one second's worth.
func NewRefreshWorker(broker *consent.Broker, perSecond float64, logger *slog.Logger) *RefreshWorker {
	if perSecond <= 0 {
		perSecond = DefaultRefreshPerSecond
	}
	return &RefreshWorker{broker: broker, limits: newRateLimits(perSecond, max(perSecond, 1)), logger: logger}
}

// Work refreshes the grant, or snoozes.
func (w *RefreshWorker) Work(ctx context.Context, job *river.Job[consent.RefreshJobArgs]) error {
	a := job.Args
	if wait := w.limits.reserve(a.UpstreamID, time.Now()); wait > 0 {
		return river.JobSnooze(jitter(wait))
	}
	err := w.broker.RefreshGrant(ctx, a.TenantID, a.GrantID, a.Version)
	if err == nil {
		return nil
	}
	if d := consent.RetryAfter(err); d > 0 && time.Since(job.CreatedAt) < maxSnoozeAge {
		w.logger.InfoContext(ctx, "grant refresh deferred", "tenant_id", a.TenantID, "grant_id", a.GrantID, "job_kind", job.Kind, "retry_after", d)
		return river.JobSnooze(jitter(d))
	}
	return err
}

// jitter adds up to 20 % to d, so snoozed jobs don't return in a herd.
func jitter(d time.Duration) time.Duration {
	return d + rand.N(d/5+1)
}

// rateLimits is a token bucket per upstream.
type rateLimits struct {
	rate, burst float64
	mu          sync.Mutex
	buckets     map[uuid.UUID]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimits(rate, burst float64) *rateLimits {
	return &rateLimits{rate: rate, burst: burst, buckets: map[uuid.UUID]*bucket{}}
}

// reserve takes a token for the upstream if one is available and returns 0,
// else returns how long until one will be (taking nothing).
func (l *rateLimits) reserve(upstream uuid.UUID, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[upstream]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[upstream] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}
