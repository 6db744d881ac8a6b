package jobs

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// fakeClock is the injected clock of refreshLimits tests.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) set(t time.Time)         { c.t = t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestLimits(perSecond float64, burst int) (*refreshLimits, *fakeClock) {
	c := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	return newRefreshLimits(perSecond, burst, c.now), c
}

// tokens is what upstream's bucket holds at the clock's time.
func (l *refreshLimits) tokens(upstream uuid.UUID) float64 {
	return l.upstreams[upstream].bucket.TokensAt(l.now())
}

func TestRefreshLimitsReserveDistinctSlots(t *testing.T) {
	t.Parallel()
	l, clock := newTestLimits(50, 50)
	up, other := uuid.New(), uuid.New()
	start := clock.now()
	job := int64(0)
	for range 50 { // the burst
		job++
		require.Zero(t, l.take(up, job))
	}
	require.Empty(t, l.slots, "jobs within the burst reserve nothing")

	// 20 more at the same instant: distinct slots, 1/rate apart, the first
	// when the bucket holds its next token.
	const n = 20
	slots := make([]time.Time, n)
	for i := range n {
		job++
		wait := l.take(up, job)
		require.Positive(t, wait)
		slots[i] = start.Add(wait)
		require.Equal(t, slots[i], l.slots[job])
	}
	require.InDelta(t, 20*time.Millisecond, slots[0].Sub(start), float64(time.Microsecond))
	for i := 1; i < n; i++ {
		require.Equal(t, l.spacing, slots[i].Sub(slots[i-1]))
	}
	require.InDelta(t, 20*time.Millisecond, l.spacing, float64(time.Microsecond), "spacing is 1/rate")
	// Another upstream has its own bucket.
	require.Zero(t, l.take(other, 1000))

	// A new job while slots are reserved goes after them, even when the
	// bucket holds a token by then (here: the first slot's).
	clock.set(slots[0])
	require.GreaterOrEqual(t, l.tokens(up), 1.0)
	wait := l.take(up, job+1)
	require.Equal(t, slots[n-1].Add(l.spacing), clock.now().Add(wait))
	slots = append(slots, clock.now().Add(wait))
	next := l.upstreams[up].next

	// Each job back exactly at its slot runs: it takes the token its slot
	// left in the bucket (the bucket is then empty), reserves nothing new,
	// and leaves the later slots theirs.
	for i := range slots {
		clock.set(slots[i])
		require.Zero(t, l.take(up, int64(51+i)), "job %d back at its slot", 51+i)
		require.Less(t, l.tokens(up), 1.0, "the job took its slot's token, no more")
		require.GreaterOrEqual(t, l.tokens(up), 0.0)
	}
	require.Empty(t, l.slots, "reservations are dropped once used")
	require.Equal(t, next, l.upstreams[up].next, "no slot was reserved again")
}

// TestRefreshLimitsSlotsOfAnOddRate: at 3 a second a slot is 333,333,333.3
// ns; rounded down, a job back at its slot would find 0.999999999 tokens.
func TestRefreshLimitsSlotsOfAnOddRate(t *testing.T) {
	t.Parallel()
	l, clock := newTestLimits(3, 1)
	up := uuid.New()
	start := clock.now()
	require.Zero(t, l.take(up, 0))
	var slots []time.Time
	for job := int64(1); job <= 30; job++ {
		slots = append(slots, start.Add(l.take(up, job)))
	}
	for i, slot := range slots {
		clock.set(slot)
		require.Zero(t, l.take(up, int64(i+1)), "job %d back at its slot", i+1)
	}
	require.Empty(t, l.slots)
}

func TestRefreshLimitsEarlyAndLateReturns(t *testing.T) {
	t.Parallel()
	l, clock := newTestLimits(10, 2)
	up := uuid.New()
	start := clock.now()
	require.Zero(t, l.take(up, 1))
	require.Zero(t, l.take(up, 2))
	s3 := start.Add(l.take(up, 3))
	s4 := start.Add(l.take(up, 4))
	s5 := start.Add(l.take(up, 5))
	require.Equal(t, start.Add(100*time.Millisecond+1), s3)
	require.Equal(t, []time.Duration{l.spacing, l.spacing}, []time.Duration{s4.Sub(s3), s5.Sub(s4)})
	next := l.upstreams[up].next

	// Back 30 ms before its slot (should not happen: River snoozes by this
	// process's clock): it waits the rest again, keeping its slot and
	// taking nothing.
	clock.set(s3.Add(-30 * time.Millisecond))
	before := l.tokens(up)
	require.Equal(t, 30*time.Millisecond, l.take(up, 3))
	require.Equal(t, s3, l.slots[3])
	require.Equal(t, next, l.upstreams[up].next)
	require.InDelta(t, before, l.tokens(up), 1e-9)
	clock.set(s3)
	require.Zero(t, l.take(up, 3))

	// Job 4 comes back late (River's poll), after job 5's slot: job 5 runs
	// at its slot, and job 4 on the token its own slot left in the bucket.
	clock.set(s5)
	require.Zero(t, l.take(up, 5))
	clock.advance(40 * time.Millisecond)
	require.Zero(t, l.take(up, 4))
	require.Empty(t, l.slots)
	require.Equal(t, next, l.upstreams[up].next, "no slot was reserved again")
}

func TestRefreshLimitsBunchedReturnsStayWithinTheBurst(t *testing.T) {
	t.Parallel()
	l, clock := newTestLimits(10, 2)
	up := uuid.New()
	require.Zero(t, l.take(up, 1))
	require.Zero(t, l.take(up, 2))
	var last time.Duration
	for job := int64(3); job <= 8; job++ {
		last = l.take(up, job)
	}
	// River brings all six back at once, a second after the last slot: the
	// bucket holds at most the burst, so two run and four reserve again.
	clock.advance(last + time.Second)
	ran := 0
	for job := int64(3); job <= 8; job++ {
		if l.take(up, job) == 0 {
			ran++
		}
	}
	require.Equal(t, 2, ran)
	require.Len(t, l.slots, 4)
}

func TestRefreshLimitsExpire(t *testing.T) {
	t.Parallel()
	l, clock := newTestLimits(1, 1)
	up := uuid.New()
	require.Zero(t, l.take(up, 1))
	wait := l.take(up, 2) // job 2 never comes back (another process took it)
	require.Len(t, l.slots, 1)

	clock.advance(wait + slotGrace/2)
	require.Zero(t, l.take(up, 3))
	require.Len(t, l.slots, 1, "within slotGrace of its slot: kept")
	clock.advance(slotGrace)
	require.Zero(t, l.take(up, 4))
	require.Empty(t, l.slots, "past slotGrace: dropped")

	// Job 2 back after all: a job like any other.
	clock.advance(time.Second)
	require.Zero(t, l.take(up, 2))
}

// TestRefreshLimitsSimulated plays 2,000 jobs arriving at 100 a second
// against a limit of 50 a second, each snoozed job coming back 0 to 150 ms
// after its jittered slot (River's poll), and 1 in 20 coming back up to 5 ms
// early: the starts never exceed rate×window+burst over any window, and a
// job snoozes once, or twice when it came back early.
func TestRefreshLimitsSimulated(t *testing.T) {
	t.Parallel()
	const jobs, perSecond, burst = 2000, 50, 50
	l, clock := newTestLimits(perSecond, burst)
	up := uuid.New()
	rng := rand.New(rand.NewPCG(1, 2))
	type event struct {
		at  time.Time
		job int64
	}
	start := clock.now()
	var queue []event
	for j := range jobs {
		queue = append(queue, event{start.Add(time.Duration(j) * 10 * time.Millisecond), int64(j)})
	}
	snoozes := map[int64]int{}
	early := map[int64]bool{}
	var starts []time.Time
	for len(queue) > 0 {
		i := 0
		for k := range queue {
			if queue[k].at.Before(queue[i].at) {
				i = k
			}
		}
		e := queue[i]
		queue = slices.Delete(queue, i, i+1)
		clock.set(e.at)
		wait := l.take(up, e.job)
		if wait == 0 {
			starts = append(starts, e.at)
			continue
		}
		snoozes[e.job]++
		back := e.at.Add(l.jitter(wait))
		if rng.IntN(20) == 0 && !early[e.job] {
			early[e.job] = true
			back = back.Add(-time.Duration(rng.Int64N(int64(5 * time.Millisecond))))
		} else {
			back = back.Add(time.Duration(rng.Int64N(int64(150 * time.Millisecond))))
		}
		queue = append(queue, event{back, e.job})
	}
	require.Len(t, starts, jobs)
	require.True(t, slices.IsSortedFunc(starts, func(a, b time.Time) int { return a.Compare(b) }))
	for i := range starts {
		for j := i; j < len(starts); j++ {
			if w := starts[j].Sub(starts[i]).Seconds(); float64(j-i+1) > perSecond*w+burst {
				t.Fatalf("%d starts in %.3f s (starts %d to %d)", j-i+1, w, i, j)
			}
		}
	}
	// No slot went unused: the last job started when 1,950 slots had passed.
	elapsed := starts[len(starts)-1].Sub(start)
	require.Less(t, elapsed, (jobs-burst)/perSecond*time.Second+200*time.Millisecond)
	for job, n := range snoozes {
		allowed := 1
		if early[job] {
			allowed = 2
		}
		require.LessOrEqual(t, n, allowed, "job %d", job)
	}
	require.Greater(t, len(snoozes), jobs/2, "most jobs were over the limit")
	require.Empty(t, l.slots)
}
