package tokenb

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/jobs"
)

// refreshAhead mirrors consent.VaultConfig's default RefreshAhead: a
// refresh job runs min(refreshAhead, life/4) before expiry, minus a jitter
// of up to half that.
const refreshAhead = 5 * time.Minute

// ScaleConfig configures Scale.
type ScaleConfig struct {
	// Grants is how many users each get a grant. Required.
	Grants int
	// SeedWorkers save grants concurrently (default 8), SeedBatch users'
	// token families are issued per call to Acme (default 1000).
	SeedWorkers, SeedBatch int
	// TokenLife is the lifetime every access token appears to have had
	// when its refresh was scheduled (default 1h: consent given by every
	// user in the same second, an hour before expiry).
	TokenLife time.Duration
	// OpenAfter is when the refresh window opens, after seeding starts
	// (default 3 minutes). Seeding should end before it.
	OpenAfter time.Duration
	// ScheduleOnly stops after seeding: no River client runs.
	ScheduleOnly bool
	// Analyze runs Env.Analyze after seeding. Without it, river_job may have
	// no statistics yet when the wave starts (autovacuum runs at most once
	// a minute), and River's scheduler query is then planned as a nested
	// loop that is quadratic in the batch (up to 10,000 jobs).
	Analyze bool
	// RefreshPerSecond and MaxWorkers go to jobs.Config (0: the defaults,
	// jobs.DefaultRefreshPerSecond per upstream and 50 workers).
	RefreshPerSecond float64
	MaxWorkers       int
	// Timeout bounds the refresh phase after the window opens (default 10
	// minutes).
	Timeout time.Duration
	// Progress, when set, receives a line per second of the refresh phase.
	Progress io.Writer
	// Profile, when set, receives a CPU profile of the refresh phase.
	Profile io.Writer
	// HeapProfile, when set, receives a heap profile taken when every grant
	// was refreshed, before the River client and the broker stop (after a
	// GC: what the process retains with the broker's cache full).
	HeapProfile io.Writer
}

// ScaleResult is what Scale measured.
type ScaleResult struct {
	Seed SeedResult
	// WindowOpen is when the first refresh jobs are due; the histograms
	// count seconds from it.
	WindowOpen time.Time
	// Margin is how long before expiry refreshes were scheduled (the
	// jitter takes up to Margin/2 more).
	Margin time.Duration
	// Scheduled is when the refresh jobs were due, per second.
	Scheduled Histogram

	// The refresh phase (not ScheduleOnly).

	// Completed is when the refresh jobs finished, per second.
	Completed Histogram
	// Elapsed is from the first job's start to the last one's end.
	Elapsed time.Duration
	// Lag is how late jobs started (attempted_at - scheduled_at), DueToDone
	// how long after they were due they finished, Run how long each ran;
	// all over jobs that ran once (FirstAttempt of them).
	Lag, DueToDone, Run Summary
	FirstAttempt        int
	// MoreAttempts counts jobs that were retried; Snoozed counts jobs that
	// snoozed (over the rate limit, or on Retry-After) and Snoozes their
	// snoozes. A snooze moves scheduled_at, so those jobs are left out of
	// Lag and DueToDone; SnoozeLag is how late they started after their
	// last snooze ended (attempted_at - scheduled_at).
	MoreAttempts, Snoozed, Snoozes int
	SnoozeLag                      Summary
	// MaxStartedPerSecond is the most refreshes that started (the last
	// attempt of a completed job) in any window of one second.
	MaxStartedPerSecond int
	// JobsCompleted counts completed first-round refresh jobs, JobsNext the
	// next round scheduled by the refreshes, JobsOther any job in another
	// state (running, retryable, discarded…).
	JobsCompleted, JobsNext, JobsOther int
	// GrantsRefreshed counts grants active, refreshed, with no lease and
	// no uncertain attempt left.
	GrantsRefreshed int
	// Acme is Acme Tasks' counters after the run.
	Acme tasks.Stats
	// Mem holds the peaks of the refresh phase: runtime.MemStats sampled
	// every 100 ms, VmHWM reset when the phase started.
	Mem Mem
	// MemFull is the memory when every grant was refreshed, before the
	// River client and the broker stop, after a GC; MemAfter the same once
	// they stopped.
	MemFull, MemAfter Mem
	// SeedMem is the memory after seeding (VmHWM: the peak so far).
	SeedMem Mem
}

// Scale gives cfg.Grants users a grant whose access token expires at the
// same instant, so that every refresh job falls in one jittered window
// opening cfg.OpenAfter after seeding starts. Unless cfg.ScheduleOnly, it
// then starts the River client jobs.NewClient builds for a broker (the
// grants queue) and waits until every grant was refreshed once, checking
// that Acme Tasks served exactly one refresh per grant and revoked no
// token family.
//
// The vault that seeds the grants runs on a clock shifted back so that each
// access token appears to have been issued TokenLife before it expires:
// the jobs are scheduled exactly as for tokens of that lifetime issued
// together, while the run lasts minutes. Everything after seeding uses the
// real clock; Acme Tasks' refreshed tokens live an hour, so each grant's
// next refresh falls outside the run.
func Scale(ctx context.Context, e *Env, acme Acme, cfg ScaleConfig) (ScaleResult, error) {
	if cfg.Grants <= 0 {
		return ScaleResult{}, errors.New("tokenb: scale: grants must be positive")
	}
	cfg.SeedWorkers = cmp.Or(cfg.SeedWorkers, 8)
	cfg.SeedBatch = cmp.Or(cfg.SeedBatch, 1000)
	cfg.TokenLife = cmp.Or(cfg.TokenLife, time.Hour)
	cfg.OpenAfter = cmp.Or(cfg.OpenAfter, 3*time.Minute)
	cfg.Timeout = cmp.Or(cfg.Timeout, 10*time.Minute)

	var res ScaleResult
	res.Margin = min(refreshAhead, cfg.TokenLife/4)
	seedStart := time.Now()
	res.WindowOpen = seedStart.Add(cfg.OpenAfter)
	expiresAt := res.WindowOpen.Add(res.Margin * 3 / 2)
	shift := max(cfg.TokenLife-expiresAt.Sub(seedStart), 0)
	seedVault, err := e.NewVault(func() time.Time { return time.Now().Add(-shift) })
	if err != nil {
		return res, err
	}
	before, err := acme.Stats(ctx)
	if err != nil {
		return res, err
	}
	if res.Seed, err = e.SeedGrants(ctx, acme, seedVault, Users(0, cfg.Grants), expiresAt, cfg.SeedWorkers, cfg.SeedBatch); err != nil {
		return res, err
	}
	if res.Scheduled, err = e.scheduleHistogram(ctx, res.WindowOpen, cfg.Grants); err != nil {
		return res, err
	}
	if cfg.ScheduleOnly {
		return res, nil
	}
	if cfg.Analyze {
		if err := e.Analyze(ctx); err != nil {
			return res, err
		}
	}

	res.SeedMem = ReadMem()
	runtime.GC()
	debug.FreeOSMemory()
	if err := ResetPeakRSS(); err != nil {
		return res, fmt.Errorf("tokenb: scale: reset peak RSS: %w", err)
	}
	sampler := StartMemSampler(100 * time.Millisecond)
	if cfg.Profile != nil {
		if err := pprof.StartCPUProfile(cfg.Profile); err != nil {
			return res, err
		}
	}
	runErr := e.runRefreshes(ctx, acme, cfg, before.RefreshGrants, res.WindowOpen, func() error {
		runtime.GC()
		res.MemFull = ReadMem()
		if cfg.HeapProfile != nil {
			return pprof.Lookup("heap").WriteTo(cfg.HeapProfile, 0)
		}
		return nil
	})
	if cfg.Profile != nil {
		pprof.StopCPUProfile()
	}
	res.Mem = sampler.Stop()
	runtime.GC()
	res.MemAfter = ReadMem()
	if runErr != nil {
		return res, runErr
	}
	return res, e.collect(ctx, acme, cfg, before, &res)
}

// runRefreshes starts a broker and the River client and waits until Acme
// Tasks has served cfg.Grants refreshes more than base and River has
// finished their jobs; then it calls full before stopping them.
func (e *Env) runRefreshes(ctx context.Context, acme Acme, cfg ScaleConfig, base int, open time.Time, full func() error) error {
	broker, err := e.NewBroker(nil)
	if err != nil {
		return err
	}
	if err := broker.Start(ctx); err != nil {
		return err
	}
	defer broker.Close()
	client, err := jobs.NewClient(jobs.Config{
		DB: e.DB, Sealer: e.Sealer, Logger: e.Logger, Work: true, Egress: e.Egress, Broker: broker,
		BaseURL: "https://locksmith.bench.test", RefreshPerSecond: cfg.RefreshPerSecond, MaxWorkers: cfg.MaxWorkers,
	})
	if err != nil {
		return err
	}
	if err := client.Start(ctx); err != nil {
		return fmt.Errorf("tokenb: scale: start river: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = client.Stop(sctx)
	}()
	deadline := open.Add(cfg.Timeout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		st, err := acme.Stats(ctx)
		if err != nil {
			return err
		}
		done := st.RefreshGrants - base
		if cfg.Progress != nil {
			m := ReadMem()
			fmt.Fprintf(cfg.Progress, "t%+6.1fs refreshed=%d (+%d) heap=%s rss=%s\n",
				time.Since(open).Seconds(), done, done-last, MiB(m.HeapAlloc), MiB(m.VmRSS))
		}
		last = done
		if done >= cfg.Grants {
			pending, err := e.pendingFirstRound(ctx)
			if err != nil {
				return err
			}
			if pending == 0 {
				return full()
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("tokenb: scale: %d of %d grants refreshed when the timeout ended", done, cfg.Grants)
		}
	}
}

// collect reads the jobs, grants and counters after the refresh phase.
func (e *Env) collect(ctx context.Context, acme Acme, cfg ScaleConfig, before tasks.Stats, res *ScaleResult) error {
	all, err := e.refreshJobs(ctx)
	if err != nil {
		return err
	}
	first := all[0].version
	for _, j := range all {
		first = min(first, j.version)
	}
	var finished []time.Time
	var lag, dueToDone, run, snoozeLag []time.Duration
	var started []time.Time
	var start, end time.Time
	for _, j := range all {
		switch {
		case j.version == first && j.state == "completed":
			res.JobsCompleted++
			finished = append(finished, j.finalizedAt)
			started = append(started, j.attemptedAt)
			if start.IsZero() || j.attemptedAt.Before(start) {
				start = j.attemptedAt
			}
			if j.finalizedAt.After(end) {
				end = j.finalizedAt
			}
			if j.snoozes > 0 {
				res.Snoozed++
				res.Snoozes += j.snoozes
				snoozeLag = append(snoozeLag, j.attemptedAt.Sub(j.scheduledAt))
			}
			if j.attempt > 1 {
				res.MoreAttempts++
			}
			if j.attempt > 1 || j.snoozes > 0 {
				continue
			}
			lag = append(lag, j.attemptedAt.Sub(j.scheduledAt))
			dueToDone = append(dueToDone, j.finalizedAt.Sub(j.scheduledAt))
			run = append(run, j.finalizedAt.Sub(j.attemptedAt))
		case j.version == first+1 && j.state == "scheduled":
			res.JobsNext++
		default:
			res.JobsOther++
		}
	}
	res.FirstAttempt = len(lag)
	res.Lag, res.DueToDone, res.Run = Summarize(lag), Summarize(dueToDone), Summarize(run)
	res.SnoozeLag = Summarize(snoozeLag)
	slices.SortFunc(started, time.Time.Compare)
	for i, k := 0, 0; i < len(started); i++ {
		for started[i].Sub(started[k]) >= time.Second {
			k++
		}
		res.MaxStartedPerSecond = max(res.MaxStartedPerSecond, i-k+1)
	}
	res.Completed = NewHistogram(res.WindowOpen, finished)
	res.Elapsed = end.Sub(start)
	err = e.DB.InTenant(ctx, e.TenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM grants WHERE status = 'active' AND last_refreshed_at IS NOT NULL
			AND refresh_attempts = 0 AND lease_owner IS NULL AND refresh_started_at IS NULL`).Scan(&res.GrantsRefreshed)
	})
	if err != nil {
		return fmt.Errorf("tokenb: scale: count grants: %w", err)
	}
	if res.Acme, err = acme.Stats(ctx); err != nil {
		return err
	}
	refreshed := res.Acme.RefreshGrants - before.RefreshGrants
	revoked := res.Acme.FamiliesRevoked - before.FamiliesRevoked
	if refreshed != cfg.Grants || revoked != 0 || res.GrantsRefreshed != cfg.Grants || res.JobsCompleted != cfg.Grants ||
		res.JobsNext != cfg.Grants || res.JobsOther != 0 {
		return fmt.Errorf("tokenb: scale: not exactly one refresh per grant: Acme served %d refreshes and revoked %d families; "+
			"%d grants refreshed; jobs: %d completed, %d next, %d other (want %d each, 0 revoked, 0 other)",
			refreshed, revoked, res.GrantsRefreshed, res.JobsCompleted, res.JobsNext, res.JobsOther, cfg.Grants)
	}
	return nil
}

// scheduleHistogram counts the refresh jobs' due times per second from
// open, and checks there is one job per grant.
func (e *Env) scheduleHistogram(ctx context.Context, open time.Time, grants int) (Histogram, error) {
	all, err := e.refreshJobs(ctx)
	if err != nil {
		return Histogram{}, err
	}
	if len(all) != grants {
		return Histogram{}, fmt.Errorf("tokenb: scale: %d refresh jobs for %d grants", len(all), grants)
	}
	due := make([]time.Time, len(all))
	for i, j := range all {
		due[i] = j.scheduledAt
	}
	return NewHistogram(open, due), nil
}

// refreshJob is a grant refresh job of the environment's tenant.
type refreshJob struct {
	version                               int64
	state                                 string
	attempt, snoozes                      int
	scheduledAt, attemptedAt, finalizedAt time.Time
}

func (e *Env) refreshJobs(ctx context.Context) ([]refreshJob, error) {
	rows, err := e.DB.Pool().Query(ctx, `SELECT (args->>'version')::bigint, state::text, attempt,
		COALESCE((metadata->>'snoozes')::int, 0), scheduled_at,
		COALESCE(attempted_at, 'epoch'), COALESCE(finalized_at, 'epoch')
		FROM river_job WHERE kind = $1 AND args->>'tenant_id' = $2`, consent.RefreshJobArgs{}.Kind(), e.TenantID.String())
	if err != nil {
		return nil, fmt.Errorf("tokenb: refresh jobs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (refreshJob, error) {
		var j refreshJob
		err := r.Scan(&j.version, &j.state, &j.attempt, &j.snoozes, &j.scheduledAt, &j.attemptedAt, &j.finalizedAt)
		return j, err
	})
	if err != nil {
		return nil, fmt.Errorf("tokenb: refresh jobs: %w", err)
	}
	if len(out) == 0 {
		return nil, errors.New("tokenb: refresh jobs: none")
	}
	return out, nil
}

// pendingFirstRound counts the tenant's refresh jobs that are neither
// completed nor scheduled in the future (the next round).
func (e *Env) pendingFirstRound(ctx context.Context) (int, error) {
	var n int
	err := e.DB.Pool().QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = $1 AND args->>'tenant_id' = $2
		AND state NOT IN ('completed', 'scheduled')`, consent.RefreshJobArgs{}.Kind(), e.TenantID.String()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("tokenb: pending refresh jobs: %w", err)
	}
	return n, nil
}
