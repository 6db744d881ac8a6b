package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeClock is a settable clock for breaker tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestBreakers(t *testing.T, opts BreakerOptions) (*Breakers[string], *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	s, err := NewBreakers[string](opts)
	require.NoError(t, err)
	return s, clk
}

// call admits one call to key and ends it with v; it fails the test if
// the call is refused.
func call(t *testing.T, s *Breakers[string], key string, v Verdict) bool {
	t.Helper()
	p, err := s.Acquire(context.Background(), key)
	require.NoError(t, err)
	return p.Done(v)
}

func requireOpen(t *testing.T, s *Breakers[string], key string) *UnavailableError {
	t.Helper()
	_, err := s.Acquire(context.Background(), key)
	require.ErrorIs(t, err, ErrCircuitOpen)
	var ue *UnavailableError
	require.ErrorAs(t, err, &ue)
	return ue
}

func TestBreakerDefaults(t *testing.T) {
	t.Parallel()
	s, err := NewBreakers[int](BreakerOptions{})
	require.NoError(t, err)
	o := s.Options()
	require.Equal(t, 5, o.Threshold)
	require.Equal(t, 30*time.Second, o.CoolDown)
	require.Equal(t, 64, o.MaxInFlight)
	require.Equal(t, 2*time.Second, o.InFlightWait)
	for _, bad := range []BreakerOptions{{Threshold: -1}, {CoolDown: -1}, {MaxInFlight: -1}, {InFlightWait: -1}} {
		_, err := NewBreakers[int](bad)
		require.Error(t, err, "%+v", bad)
	}
}

func TestBreakerOpensAfterConsecutiveFailuresThenProbes(t *testing.T) {
	t.Parallel()
	s, clk := newTestBreakers(t, BreakerOptions{Threshold: 3, CoolDown: 10 * time.Second})

	// A healthy answer resets the count: only consecutive failures open.
	require.False(t, call(t, s, "a", Unhealthy()))
	require.False(t, call(t, s, "a", Unhealthy()))
	require.False(t, call(t, s, "a", Healthy()))
	require.False(t, call(t, s, "a", Unhealthy()))
	require.False(t, call(t, s, "a", Unhealthy()))
	require.True(t, call(t, s, "a", Unhealthy()), "the third failure in a row opens the circuit")
	require.EqualValues(t, 1, s.Opens())

	ue := requireOpen(t, s, "a")
	require.Equal(t, 10*time.Second, ue.RetryAfter)
	require.Equal(t, 10*time.Second, ue.OpenFor)
	require.Equal(t, 3, ue.Failures)
	require.True(t, ue.Temporary())
	require.Contains(t, ue.Error(), "after 3 consecutive failures")

	// Other keys are independent.
	require.False(t, call(t, s, "b", Healthy()))

	clk.Advance(4 * time.Second)
	require.Equal(t, 6*time.Second, requireOpen(t, s, "a").RetryAfter)

	// Cool-down over: exactly one probe, the others are refused meanwhile.
	clk.Advance(6 * time.Second)
	probe, err := s.Acquire(context.Background(), "a")
	require.NoError(t, err)
	require.True(t, probe.Probe())
	ue = requireOpen(t, s, "a")
	require.True(t, ue.Probing)

	// The probe fails: open again for a full cool-down.
	require.True(t, probe.Done(Unhealthy()))
	require.EqualValues(t, 2, s.Opens())
	require.Equal(t, 10*time.Second, requireOpen(t, s, "a").RetryAfter)

	clk.Advance(10 * time.Second)
	probe, err = s.Acquire(context.Background(), "a")
	require.NoError(t, err)
	require.True(t, probe.Probe())
	require.False(t, probe.Done(Healthy()))

	// Closed: calls flow, and it takes a full run of failures to open again.
	p, err := s.Acquire(context.Background(), "a")
	require.NoError(t, err)
	require.False(t, p.Probe())
	require.False(t, p.Done(Unhealthy()))
	require.False(t, call(t, s, "a", Unhealthy()))
	require.True(t, call(t, s, "a", Unhealthy()))
}

func TestBreakerIgnoresStaleVerdicts(t *testing.T) {
	t.Parallel()
	s, clk := newTestBreakers(t, BreakerOptions{Threshold: 2, CoolDown: time.Second})
	var old []Permit
	for range 5 {
		p, err := s.Acquire(context.Background(), "k")
		require.NoError(t, err)
		old = append(old, p)
	}
	require.False(t, old[0].Done(Unhealthy()))
	require.True(t, old[1].Done(Unhealthy()))
	// Calls admitted before the circuit opened report after it did: they
	// neither extend nor re-open it.
	require.False(t, old[2].Done(Unhealthy()))
	clk.Advance(time.Second)
	probe, err := s.Acquire(context.Background(), "k")
	require.NoError(t, err)
	require.True(t, probe.Probe())
	require.False(t, probe.Done(Healthy()))
	require.False(t, old[3].Done(Unhealthy()))
	require.False(t, old[4].Done(Unhealthy()))
	// One more failure is one, not three.
	require.False(t, call(t, s, "k", Unhealthy()))
	_, err = s.Acquire(context.Background(), "k")
	require.NoError(t, err)
}

func TestBreakerProbeWithoutVerdictLetsTheNextCallerProbe(t *testing.T) {
	t.Parallel()
	s, clk := newTestBreakers(t, BreakerOptions{Threshold: 1, CoolDown: time.Second})
	require.True(t, call(t, s, "k", Unhealthy()))
	clk.Advance(time.Second)
	p, err := s.Acquire(context.Background(), "k")
	require.NoError(t, err)
	require.True(t, p.Probe())
	require.False(t, p.Done(Verdict{}), "the caller gave up: no news")
	p, err = s.Acquire(context.Background(), "k")
	require.NoError(t, err)
	require.True(t, p.Probe(), "the next caller probes at once")
	p.Done(Healthy())
}

func TestBreakerStaleProbeIsReplaced(t *testing.T) {
	t.Parallel()
	s, clk := newTestBreakers(t, BreakerOptions{Threshold: 1, CoolDown: time.Second})
	require.True(t, call(t, s, "k", Unhealthy()))
	clk.Advance(time.Second)
	lost, err := s.Acquire(context.Background(), "k")
	require.NoError(t, err)
	require.True(t, lost.Probe())
	requireOpen(t, s, "k")
	clk.Advance(staleProbe)
	p, err := s.Acquire(context.Background(), "k")
	require.NoError(t, err)
	require.True(t, p.Probe())
	p.Done(Healthy())
	require.False(t, lost.Done(Unhealthy()), "the lost probe's late news is stale")
	call(t, s, "k", Healthy())
}

// TestBreakerHalfOpenAdmitsExactlyOneProbe: many callers at once after the
// cool-down; one is the probe, every other is refused.
func TestBreakerHalfOpenAdmitsExactlyOneProbe(t *testing.T) {
	t.Parallel()
	s, clk := newTestBreakers(t, BreakerOptions{Threshold: 1, CoolDown: time.Second})
	require.True(t, call(t, s, "k", Unhealthy()))
	clk.Advance(time.Second)
	var admitted, refused atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	var mu sync.Mutex
	var permits []Permit
	for range 200 {
		wg.Go(func() {
			<-start
			p, err := s.Acquire(context.Background(), "k")
			if err != nil {
				if errors.Is(err, ErrCircuitOpen) {
					refused.Add(1)
				}
				return
			}
			admitted.Add(1)
			mu.Lock()
			permits = append(permits, p)
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	require.EqualValues(t, 1, admitted.Load())
	require.EqualValues(t, 199, refused.Load())
	require.True(t, permits[0].Probe())
	permits[0].Done(Healthy())
}

func TestBreakerBoundsCallsInFlight(t *testing.T) {
	t.Parallel()
	s, _ := newTestBreakers(t, BreakerOptions{MaxInFlight: 2, InFlightWait: 80 * time.Millisecond})
	ctx := context.Background()
	p1, err := s.Acquire(ctx, "k")
	require.NoError(t, err)
	p2, err := s.Acquire(ctx, "k")
	require.NoError(t, err)
	_, err = s.Acquire(ctx, "other")
	require.NoError(t, err, "another key has its own slots")

	start := time.Now()
	_, err = s.Acquire(ctx, "k")
	waited := time.Since(start)
	require.ErrorIs(t, err, ErrTooBusy)
	var ue *UnavailableError
	require.ErrorAs(t, err, &ue)
	require.Equal(t, 2, ue.InFlight)
	require.GreaterOrEqual(t, waited, 80*time.Millisecond)
	require.Less(t, waited, time.Second)

	// The caller's context ends the wait early.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = s.Acquire(cctx, "k")
	require.ErrorIs(t, err, ErrTooBusy)
	require.Less(t, time.Since(start), 70*time.Millisecond)

	// A slot freed while waiting is taken.
	go func() {
		time.Sleep(20 * time.Millisecond)
		p1.Done(Healthy())
	}()
	p3, err := s.Acquire(ctx, "k")
	require.NoError(t, err)
	p2.Done(Healthy())
	p3.Done(Healthy())
	require.False(t, Permit{}.Done(Unhealthy()), "the zero permit is a no-op")
}

// TestBreakerProbeWaitingForASlotGivesItBack: a probe that cannot get a
// slot does not leave the circuit half-open.
func TestBreakerProbeWaitingForASlotGivesItBack(t *testing.T) {
	t.Parallel()
	s, clk := newTestBreakers(t, BreakerOptions{Threshold: 1, CoolDown: time.Second, MaxInFlight: 1, InFlightWait: 10 * time.Millisecond})
	require.True(t, call(t, s, "k", Unhealthy()))
	clk.Advance(time.Second)
	b := s.get("k")
	b.slots <- struct{}{} // a call admitted earlier still holds the only slot
	_, err := s.Acquire(context.Background(), "k")
	require.ErrorIs(t, err, ErrTooBusy)
	<-b.slots
	p, err := s.Acquire(context.Background(), "k")
	require.NoError(t, err)
	require.True(t, p.Probe(), "the probe that found no slot was given back")
	p.Done(Healthy())
}

// TestBreakerClosedPathAllocatesNothing guards the hot path. Not parallel:
// AllocsPerRun counts every goroutine's allocations.
func TestBreakerClosedPathAllocatesNothing(t *testing.T) {
	s, _ := newTestBreakers(t, BreakerOptions{})
	type key struct{ a, b [16]byte }
	ks, err := NewBreakers[key](BreakerOptions{})
	require.NoError(t, err)
	k := key{a: [16]byte{1}, b: [16]byte{2}}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		p, err := ks.Acquire(ctx, k)
		if err != nil {
			panic(err)
		}
		p.Done(Healthy())
		p, _ = s.Acquire(ctx, "k")
		p.Done(Unhealthy())
		p, _ = s.Acquire(ctx, "k")
		p.Done(Healthy())
	})
	require.Zero(t, allocs)
}

func BenchmarkBreakerClosed(b *testing.B) {
	s, err := NewBreakers[[32]byte](BreakerOptions{MaxInFlight: 1 << 16})
	require.NoError(b, err)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, err := s.Acquire(ctx, [32]byte{7})
			if err != nil {
				b.Fatal(err)
			}
			p.Done(Healthy())
		}
	})
}

func TestJudge(t *testing.T) {
	t.Parallel()
	resp := func(status int, retryAfter string) *http.Response {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return &http.Response{StatusCode: status, Header: h}
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "x"}}
	for _, tc := range []struct {
		name string
		resp *http.Response
		err  error
		want Verdict
	}{
		{"200", resp(200, ""), nil, Healthy()},
		{"302", resp(302, ""), nil, Healthy()},
		{"400", resp(400, ""), nil, Healthy()},
		{"401", resp(401, ""), nil, Healthy()},
		{"404", resp(404, ""), nil, Healthy()},
		{"422", resp(422, ""), nil, Healthy()},
		{"429 with Retry-After: no verdict (often one user's limit)", resp(429, "7"), nil, Verdict{}},
		{"429 without Retry-After", resp(429, ""), nil, Verdict{}},
		{"500", resp(500, ""), nil, Unhealthy()},
		{"503", resp(503, "3"), nil, Unhealthy()},
		{"connection refused", nil, fmt.Errorf("get: %w", syscall.ECONNREFUSED), Unhealthy()},
		{"dial error", nil, refused, Unhealthy()},
		{"timeout", nil, fmt.Errorf("get: %w", context.DeadlineExceeded), Unhealthy()},
		{"dns", nil, resolveError("nowhere.example", &net.DNSError{IsNotFound: true}), Unhealthy()},
		{"cancelled by the caller", nil, fmt.Errorf("get: %w", context.Canceled), Verdict{}},
		{"forbidden target", nil, forbidden("", netip.MustParseAddr("127.0.0.1"), "loopback"), Verdict{}},
		{"invalid url", nil, invalidURL("", "bad"), Verdict{}},
		{"too large", nil, tooLarge(10), Healthy()},
		{"nothing", nil, nil, Verdict{}},
	} {
		require.Equal(t, tc.want, Judge(tc.resp, tc.err), tc.name)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		" 120 ":                         2 * time.Minute,
		"0":                             0,
		"-3":                            0,
		"soon":                          0,
		"Sun, 01 Mar 2026 12:01:30 GMT": 90 * time.Second,
		"Sun, 01 Mar 2026 11:59:00 GMT": 0,
		"99999999999":                   24 * time.Hour,
	} {
		h := http.Header{}
		if v != "" {
			h.Set("Retry-After", v)
		}
		require.Equal(t, want, RetryAfter(h, now), "%q", v)
	}
}
