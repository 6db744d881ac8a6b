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
	"golang.org/x/time/rate"

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
// that turns needs_reauth ends it. Refreshes are rate limited per upstream
// (see refreshLimits): over the limit a job snoozes once, until a slot
// reserved for it; when the upstream sent Retry-After, it snoozes that long.
type RefreshWorker struct {
	river.WorkerDefaults[consent.RefreshJobArgs]
	broker *consent.Broker
	limits *refreshLimits
	logger *slog.Logger
}

// NewRefreshWorker returns a RefreshWorker allowing perSecond refreshes per
// upstream (0 means DefaultRefreshPerSecond), with a burst of one second's
// worth (at least one).
func NewRefreshWorker(broker *consent.Broker, perSecond float64, logger *slog.Logger) *RefreshWorker {
	if perSecond <= 0 {
		perSecond = DefaultRefreshPerSecond
	}
	return &RefreshWorker{broker: broker, limits: newRefreshLimits(perSecond, max(int(perSecond), 1), time.Now), logger: logger}
}

// Work refreshes the grant, or snoozes.
func (w *RefreshWorker) Work(ctx context.Context, job *river.Job[consent.RefreshJobArgs]) error {
	a := job.Args
	if wait := w.limits.take(a.UpstreamID, job.ID); wait > 0 {
		return river.JobSnooze(w.limits.jitter(wait))
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

// slotGrace is how long after its slot a reservation is kept for a job that
// has not come back; a job back later than that reserves again.
const slotGrace = time.Minute

// refreshLimits paces the refreshes of each upstream in one worker process.
//
// A token bucket per upstream (rate per second, burst) gates every start:
// a refresh starts only with a token taken at that instant, so the refreshes
// started in any window of length w stay within rate×w+burst, however late
// or early River brings jobs back.
//
// A job that finds no token reserves the upstream's next free slot: the
// instant the bucket will next hold a token, or one spacing (1/rate) after
// the last slot reserved if that is later. N waiting jobs get N distinct
// slots 1/rate apart, and each snoozes once, until its slot. A new job never
// takes a token while a later slot is reserved (it reserves after it), so
// the bucket refills one token per slot and a job back at or after its slot
// finds one: it runs without waiting again. Only when more than a burst of
// reserved jobs are late at once, or a new job came after the last slot had
// passed while a reserved one was still on its way, may one find the bucket
// empty; it then reserves a new slot (the limit is never exceeded).
// (rate.Limiter's own ReserveN would take the token when the slot is
// reserved: a job River brings back late would then start outside the
// bucket's account, and a batch of late jobs could start at once beyond the
// burst.)
//
// Reservations are kept per River job id in this process only. River gives a
// snoozed job to whichever process fetches it first; a process that doesn't
// know the job simply reserves again in its own buckets, and the slot here
// goes unused. A reservation is dropped when its job comes back, and one
// whose job never does (taken by another process, cancelled, deleted)
// expires slotGrace after its slot.
type refreshLimits struct {
	rate    rate.Limit
	burst   int
	spacing time.Duration // 1/rate, rounded up
	now     func() time.Time

	mu        sync.Mutex
	upstreams map[uuid.UUID]*upstreamPace
	slots     map[int64]time.Time // reserved slot by River job id
	swept     time.Time           // last sweep of expired slots
}

// upstreamPace is one upstream's bucket and reservations.
type upstreamPace struct {
	bucket *rate.Limiter
	next   time.Time // the first slot after those reserved
}

// newRefreshLimits returns limits of perSecond refreshes per upstream with
// the given burst (at least 1), reading the time from now.
func newRefreshLimits(perSecond float64, burst int, now func() time.Time) *refreshLimits {
	return &refreshLimits{
		rate:  rate.Limit(perSecond),
		burst: max(burst, 1),
		// One nanosecond more than 1/rate: a slot's token is whole when
		// it is due, despite rounding.
		spacing:   time.Duration(float64(time.Second)/perSecond) + 1,
		now:       now,
		upstreams: map[uuid.UUID]*upstreamPace{},
		slots:     map[int64]time.Time{},
	}
}

// take is called when job, a refresh of upstream, starts: it returns 0 when
// the job may refresh now (it took a token), else how long it should snooze
// (until its slot, reserved or kept).
func (l *refreshLimits) take(upstream uuid.UUID, job int64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now() // under the lock: the buckets see time in order
	l.sweep(now)
	u := l.upstreams[upstream]
	if u == nil {
		u = &upstreamPace{bucket: rate.NewLimiter(l.rate, l.burst)}
		l.upstreams[upstream] = u
	}
	if slot, ok := l.slots[job]; ok {
		if now.Before(slot) {
			// Back before its slot (the database's clock, which River's
			// fetch reads, is ahead of this process's): wait for it
			// again, keeping it.
			return slot.Sub(now)
		}
		delete(l.slots, job)
		if u.bucket.AllowN(now, 1) {
			return 0
		}
	} else if !u.next.After(now) && u.bucket.AllowN(now, 1) {
		return 0 // no later slot reserved, and a token is free
	}
	slot := u.next
	if tokens := u.bucket.TokensAt(now); tokens < 1 {
		// +1 ns: rounded up, like spacing.
		slot = later(slot, now.Add(time.Duration((1-tokens)/float64(l.rate)*float64(time.Second))+1))
	}
	u.next = slot.Add(l.spacing)
	l.slots[job] = slot
	return slot.Sub(now)
}

// jitter adds to a wait until a slot up to 20 % of it, but at most one
// spacing: never before the slot, and not so late that the bucket fills
// with the tokens of jobs still on their way.
func (l *refreshLimits) jitter(d time.Duration) time.Duration {
	return d + rand.N(min(d/5, l.spacing)+1)
}

// sweep drops, at most once per slotGrace, the reservations more than
// slotGrace past their slot. Callers hold l.mu.
func (l *refreshLimits) sweep(now time.Time) {
	if now.Sub(l.swept) < slotGrace {
		return
	}
	l.swept = now
	for job, slot := range l.slots {
		if now.Sub(slot) > slotGrace {
			delete(l.slots, job)
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
