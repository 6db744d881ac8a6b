// Command tokenload measures Token B's refresh path and grants refreshed at
// scale, on a real PostgreSQL (a fresh database on the server at
// DATABASE_URL, dropped afterwards) and Acme Tasks in a child process over
// loopback HTTP. See docs/benchmarks-tokenb.md.
//
//	tokenload latency [-n 500] [-warmup 20] [-no-baseline] [-cpuprofile f]
//	tokenload scale -grants 100000 [-open-after 3m] [-token-life 1h] [-rate 0] [-workers 0] [-schedule-only] [-cpuprofile f]
//
// `tokenload acme` is the child: it serves Acme Tasks and prints its URL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/locksmithhq/locksmith/bench/tokenb"
)

// defaultServer matches sql/sqltest.DefaultURL.
const defaultServer = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tokenload:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: tokenload latency|scale|acme [flags]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "acme":
		return runAcme(ctx, args[1:])
	case "latency":
		return runLatency(ctx, args[1:], out)
	case "scale":
		return runScale(ctx, args[1:], out)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func runAcme(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("acme", flag.ContinueOnError)
	users := fs.Int("users", 1000, "Acme Tasks users u000000…")
	life := fs.Duration("access-lifetime", time.Hour, "lifetime of issued access tokens")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return tokenb.ServeAcme(ctx, tokenb.AcmeConfig(*users, *life), "127.0.0.1:0", func(url string) { fmt.Println(url) })
}

// common holds what both measurements need: the database, Acme Tasks in a
// child process, and the environment.
type common struct {
	server   *string
	maxConns *int
	profile  *string
	heap     *string
	verbose  *bool
	keep     *bool
}

func commonFlags(fs *flag.FlagSet) *common {
	def := os.Getenv("DATABASE_URL")
	if def == "" {
		def = defaultServer
	}
	return &common{
		server:   fs.String("database-url", def, "PostgreSQL server (a role that may create databases)"),
		maxConns: fs.Int("max-conns", 0, "app pool size; 0 = pgxpool's default max(4, CPUs), as `locksmith serve`"),
		profile:  fs.String("cpuprofile", "", "write a CPU profile of the measured phase to this file"),
		heap:     fs.String("memprofile", "", "scale: write a heap profile when every grant was refreshed"),
		verbose:  fs.Bool("v", false, "log the services' warnings and errors to stderr"),
		keep:     fs.Bool("keep", false, "keep the database (its owner URL is printed) for inspection"),
	}
}

// open starts the child Acme Tasks with users users and opens a fresh
// database; done undoes both.
func (c *common) open(ctx context.Context, users int) (env *tokenb.Env, acme *tokenb.RemoteAcme, done func(), err error) {
	logger := slog.New(slog.DiscardHandler)
	if *c.verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, nil, err
	}
	acme, err = tokenb.StartAcmeProcess(ctx, exe, "acme", "-users", strconv.Itoa(users))
	if err != nil {
		return nil, nil, nil, err
	}
	owner, drop, err := tokenb.CreateDatabase(ctx, *c.server, logger)
	if err != nil {
		acme.Close()
		return nil, nil, nil, err
	}
	env, err = tokenb.Open(ctx, tokenb.Config{OwnerURL: owner, MaxConns: int32(*c.maxConns), AcmeURL: acme.URL(), Logger: logger})
	if err != nil {
		_ = drop(context.WithoutCancel(ctx))
		acme.Close()
		return nil, nil, nil, err
	}
	return env, acme, func() {
		env.Close()
		acme.Close()
		if *c.keep {
			fmt.Fprintln(os.Stderr, "tokenload: database kept:", owner)
			return
		}
		if err := drop(context.WithoutCancel(ctx)); err != nil {
			fmt.Fprintln(os.Stderr, "tokenload:", err)
		}
	}, nil
}

func (c *common) profileFile() (io.Writer, func(), error) { return createFile(*c.profile) }

func createFile(name string) (io.Writer, func(), error) {
	if name == "" {
		return nil, func() {}, nil
	}
	f, err := os.Create(name)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { _ = f.Close() }, nil
}

func machine(out io.Writer) {
	fmt.Fprintf(out, "go=%s GOMAXPROCS=%d NumCPU=%d %s/%s\n", runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
}

func runLatency(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("latency", flag.ContinueOnError)
	c := commonFlags(fs)
	n := fs.Int("n", 500, "timed refreshes (and as many baseline requests)")
	warmup := fs.Int("warmup", 20, "untimed refreshes first")
	noBaseline := fs.Bool("no-baseline", false, "skip the baseline requests (for a profile of the refresh path alone)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	env, acme, done, err := c.open(ctx, *n+*warmup)
	if err != nil {
		return err
	}
	defer done()
	prof, closeProf, err := c.profileFile()
	if err != nil {
		return err
	}
	defer closeProf()
	res, err := tokenb.RefreshLatency(ctx, env, acme, tokenb.LatencyConfig{Samples: *n, Warmup: *warmup, NoBaseline: *noBaseline, Profile: prof})
	if err != nil {
		return err
	}
	machine(out)
	fmt.Fprintf(out, "refresh  (Broker.Token, cold): %s\n", res.Refresh)
	if !*noBaseline {
		fmt.Fprintf(out, "baseline (bare refresh POST):  %s\n", res.Baseline)
		fmt.Fprintf(out, "ratio refresh/baseline: p50 %.2f  p99 %.2f\n",
			float64(res.Refresh.P50)/float64(res.Baseline.P50), float64(res.Refresh.P99)/float64(res.Baseline.P99))
	}
	fmt.Fprintf(out, "timed loop %s; Acme: refresh grants %d, families revoked %d, reuse detections %d\n",
		res.Elapsed.Round(time.Millisecond), res.Acme.RefreshGrants, res.Acme.FamiliesRevoked, res.Acme.RefreshReuseDetections)
	return nil
}

func runScale(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	c := commonFlags(fs)
	grants := fs.Int("grants", 10_000, "grants (users)")
	seedWorkers := fs.Int("seed-workers", 8, "concurrent SaveGrant calls while seeding")
	openAfter := fs.Duration("open-after", 3*time.Minute, "the refresh window opens this long after seeding starts")
	life := fs.Duration("token-life", time.Hour, "lifetime the access tokens appear to have")
	rate := fs.Float64("rate", 0, "jobs.Config.RefreshPerSecond (refreshes per second per upstream); 0 = the default")
	workers := fs.Int("workers", 0, "jobs.Config.MaxWorkers; 0 = the default")
	scheduleOnly := fs.Bool("schedule-only", false, "seed and report the schedule; run no jobs")
	analyze := fs.Bool("analyze", false, "ANALYZE river_job and grants after seeding (as autovacuum would, eventually)")
	timeout := fs.Duration("timeout", 8*time.Minute, "bound on the refresh phase after the window opens")
	quiet := fs.Bool("q", false, "no per-second progress on stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	env, acme, done, err := c.open(ctx, *grants)
	if err != nil {
		return err
	}
	defer done()
	prof, closeProf, err := c.profileFile()
	if err != nil {
		return err
	}
	defer closeProf()
	heap, closeHeap, err := createFile(*c.heap)
	if err != nil {
		return err
	}
	defer closeHeap()
	var progress io.Writer = os.Stderr
	if *quiet {
		progress = nil
	}
	res, err := tokenb.Scale(ctx, env, acme, tokenb.ScaleConfig{
		Grants: *grants, SeedWorkers: *seedWorkers, TokenLife: *life, OpenAfter: *openAfter, ScheduleOnly: *scheduleOnly, Analyze: *analyze,
		RefreshPerSecond: *rate, MaxWorkers: *workers, Timeout: *timeout, Progress: progress, Profile: prof, HeapProfile: heap,
	})
	machine(out)
	seedTotal := res.Seed.Issue + res.Seed.Save
	if res.Seed.Grants > 0 && seedTotal > 0 {
		fmt.Fprintf(out, "seed: %d grants in %s (%.0f grants/s): Acme IssueTokens %s, Vault.SaveGrant (%d workers) %s\n",
			res.Seed.Grants, seedTotal.Round(time.Millisecond), float64(res.Seed.Grants)/seedTotal.Seconds(),
			res.Seed.Issue.Round(time.Millisecond), *seedWorkers, res.Seed.Save.Round(time.Millisecond))
	}
	if len(res.Scheduled.Counts) > 0 || res.Scheduled.Before > 0 {
		busy, first := res.Scheduled.Busy()
		lo, med, hi := res.Scheduled.Stats()
		fmt.Fprintf(out, "schedule: margin %s; jobs due from t+%ds for %ds (%d before the window opened); per second min %d median %d max %d\n",
			res.Margin, first, len(busy), res.Scheduled.Before, lo, med, hi)
		fmt.Fprint(out, "due per second:\n"+res.Scheduled.Rows(15))
	}
	if err != nil || *scheduleOnly {
		return err
	}
	busy, first := res.Completed.Busy()
	lo, med, hi := res.Completed.Stats()
	fmt.Fprintf(out, "refreshed: %d grants in %s (%.0f/s overall), completions from t+%ds for %ds, per busy second min %d median %d max %d\n",
		res.JobsCompleted, res.Elapsed.Round(time.Millisecond), float64(res.JobsCompleted)/res.Elapsed.Seconds(), first, len(busy), lo, med, hi)
	fmt.Fprint(out, "done per second:\n"+res.Completed.Rows(15))
	fmt.Fprintf(out, "jobs that ran once without snoozing: %d; retried: %d; snoozed: %d (%d snoozes)\n",
		res.FirstAttempt, res.MoreAttempts, res.Snoozed, res.Snoozes)
	fmt.Fprintf(out, "  start lag (attempted - due): %s\n  due to done:                 %s\n  job run time:                %s\n",
		res.Lag, res.DueToDone, res.Run)
	if res.Snoozed > 0 {
		fmt.Fprintf(out, "  snoozed jobs' start lag after their last snooze: %s\n", res.SnoozeLag)
	}
	fmt.Fprintf(out, "most refreshes started in any 1 s window: %d\n", res.MaxStartedPerSecond)
	fmt.Fprintf(out, "exactly once: Acme refresh grants %d, families revoked %d, reuse detections %d; grants refreshed %d; jobs completed %d, next scheduled %d, other %d\n",
		res.Acme.RefreshGrants, res.Acme.FamiliesRevoked, res.Acme.RefreshReuseDetections, res.GrantsRefreshed, res.JobsCompleted, res.JobsNext, res.JobsOther)
	fmt.Fprintf(out, "memory with every grant refreshed and cached, after GC: HeapAlloc %s, VmRSS %s\n",
		tokenb.MiB(res.MemFull.HeapAlloc), tokenb.MiB(res.MemFull.VmRSS))
	fmt.Fprintf(out, "memory (refresh phase peaks): VmHWM %s, VmRSS %s, HeapAlloc %s, HeapInuse %s, HeapSys %s, Sys %s; after GC: HeapAlloc %s, RSS %s\n",
		tokenb.MiB(res.Mem.VmHWM), tokenb.MiB(res.Mem.VmRSS), tokenb.MiB(res.Mem.HeapAlloc), tokenb.MiB(res.Mem.HeapInuse),
		tokenb.MiB(res.Mem.HeapSys), tokenb.MiB(res.Mem.Sys), tokenb.MiB(res.MemAfter.HeapAlloc), tokenb.MiB(res.MemAfter.VmRSS))
	if m, err := acme.Mem(ctx); err == nil {
		fmt.Fprintf(out, "acme child process (not included above): VmHWM %s, HeapAlloc %s\n", tokenb.MiB(m.VmHWM), tokenb.MiB(m.HeapAlloc))
	}
	return nil
}
