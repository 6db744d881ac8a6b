package tokenb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/demo/tasks"
)

// LatencyConfig configures RefreshLatency.
type LatencyConfig struct {
	// Samples is how many refreshes are timed (and as many baseline
	// requests). Default 500.
	Samples int
	// Warmup refreshes and baseline requests run first, untimed (pool and
	// keep-alive connections, the sealer's and the broker's upstream
	// caches). Default 20.
	Warmup int
	// NoBaseline skips the baseline requests (for a CPU profile of the
	// refresh path alone).
	NoBaseline bool
	// Profile, when set, receives a CPU profile of the timed loop.
	Profile io.Writer
}

// LatencyResult is what RefreshLatency measured.
type LatencyResult struct {
	// Refresh is Broker.Token for a user whose stored access token has
	// expired, on an empty cache: the locked read and lease (one
	// transaction), the client secret (one), the refresh at Acme Tasks, the
	// compare-and-swap write with the next job's enqueue (one).
	Refresh Summary
	// Baseline is a bare POST of a refresh_token grant to the same token
	// endpoint, with the same client credentials and HTTP client.
	Baseline Summary
	// Elapsed is the wall time of the timed loop.
	Elapsed time.Duration
	// Acme is Acme Tasks' counters after the run.
	Acme tasks.Stats
}

// RefreshLatency times Samples cold refreshes through Broker.Token, each
// interleaved with a baseline refresh of another token family of the same
// user (alternating which goes first), one at a time. acme must know
// Users(0, Warmup+Samples). Each grant is refreshed exactly once; the run
// fails unless Acme Tasks counted exactly one refresh per grant and per
// baseline family, and revoked no family.
func RefreshLatency(ctx context.Context, e *Env, acme Acme, cfg LatencyConfig) (LatencyResult, error) {
	if cfg.Samples <= 0 {
		cfg.Samples = 500
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = 20
	}
	n := cfg.Warmup + cfg.Samples
	users := Users(0, n)
	// Grants whose access token expired a minute ago: Token must refresh.
	// Their refresh jobs are due, but no River client works in this run.
	if _, err := e.SeedGrants(ctx, acme, e.Vault, users, time.Now().Add(-time.Minute), 4, 500); err != nil {
		return LatencyResult{}, err
	}
	base, err := acme.Issue(ctx, users)
	if err != nil {
		return LatencyResult{}, err
	}
	before, err := acme.Stats(ctx)
	if err != nil {
		return LatencyResult{}, err
	}
	broker, err := e.NewBroker(nil)
	if err != nil {
		return LatencyResult{}, err
	}
	bare := func(rt string) error {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.Upstream.TokenURL, strings.NewReader(form.Encode()))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		req.SetBasicAuth(url.QueryEscape(tasks.DefaultClientID), url.QueryEscape(tasks.DefaultClientSecret))
		resp, err := e.Egress.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var body tasks.TokenResponse
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || body.AccessToken == "" {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	}
	seen := make(map[uuid.UUID]bool, n)
	refresh := func(user string) error {
		tok, err := broker.Token(ctx, e.TenantID, e.Upstream.ID, User(user), nil)
		if err != nil {
			return err
		}
		if tok.Value == "" || seen[tok.GrantID] {
			return errors.New("no fresh token")
		}
		seen[tok.GrantID] = true
		return nil
	}
	var res LatencyResult
	refreshes := make([]time.Duration, 0, cfg.Samples)
	baselines := make([]time.Duration, 0, cfg.Samples)
	var start time.Time
	for i, u := range users {
		timed := i >= cfg.Warmup
		if i == cfg.Warmup {
			if cfg.Profile != nil {
				if err := pprof.StartCPUProfile(cfg.Profile); err != nil {
					return res, err
				}
				defer pprof.StopCPUProfile() // a no-op once stopped below
			}
			start = time.Now()
		}
		order := []bool{true, false} // refresh first on even i
		if i%2 == 1 {
			order = []bool{false, true}
		}
		for _, isRefresh := range order {
			if !isRefresh && cfg.NoBaseline {
				continue
			}
			t0 := time.Now()
			var err error
			if isRefresh {
				err = refresh(u)
			} else {
				err = bare(base[i].RefreshToken)
			}
			d := time.Since(t0)
			if err != nil {
				return res, fmt.Errorf("tokenb: latency: user %s (refresh %t): %w", u, isRefresh, err)
			}
			switch {
			case !timed:
			case isRefresh:
				refreshes = append(refreshes, d)
			default:
				baselines = append(baselines, d)
			}
		}
	}
	res.Elapsed = time.Since(start)
	if cfg.Profile != nil {
		pprof.StopCPUProfile()
	}
	res.Refresh, res.Baseline = Summarize(refreshes), Summarize(baselines)
	if res.Acme, err = acme.Stats(ctx); err != nil {
		return res, err
	}
	want := n
	if !cfg.NoBaseline {
		want *= 2
	}
	if got := res.Acme.RefreshGrants - before.RefreshGrants; got != want || res.Acme.FamiliesRevoked != 0 {
		return res, fmt.Errorf("tokenb: latency: Acme Tasks served %d refreshes (want %d) and revoked %d families", got, want, res.Acme.FamiliesRevoked)
	}
	return res, nil
}
