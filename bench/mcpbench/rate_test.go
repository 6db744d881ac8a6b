package mcpbench

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Open-loop fixed-rate load for issue 7's goal: "p99 added latency of the
// audit on a tools/call ≤ 5 ms at 2,000 calls/s".
const (
	rateCalls    = 2000             // calls per second
	rateDuration = 10 * time.Second // per phase
	ratePairs    = 5                // noaudit, durable; alternating
	rateInFlight = 256              // bounded pool of in-flight requests
	// rateWarmUp is run at the same rate before every measured phase and
	// not counted: the first seconds of a target's load grow its connection
	// pools (PostgreSQL connections for the audit writer, upstream
	// keep-alives), a cost a running server has already paid.
	rateWarmUp = time.Second
	// rateFirstWarmUp is run against each target once, before the first
	// pair: in a new process against a new database, the first durable
	// phase measured with only rateWarmUp had a p99 1.5–4× the later
	// phases' (an empty audit table and indexes growing from nothing, the
	// heap and the GC's pacing settling), a start-up cost a running
	// server does not pay.
	rateFirstWarmUp = 5 * time.Second
)

// rateResult is one phase of the fixed-rate load.
type rateResult struct {
	p50, p99 float64 // µs, from each call's scheduled send time
	// sentP99 is the p99 from the instant each call was actually sent (µs).
	// With no late calls, the difference to p99 is the generator's own
	// timer lateness: when the process is idle Go's timers wake with about
	// 1 ms granularity, which lengthens the less busy (no-audit) phase's
	// latencies from the scheduled time and so shortens the added p99.
	sentP99 float64
	late    int // calls that found no free in-flight slot at their scheduled time
	behind  int // calls started more than 1 ms after their scheduled time
	errs    int64
	rate    float64 // calls per second actually dispatched
}

// BenchmarkAuditAtRate issues tools/call at exactly rateCalls per second for
// rateDuration (after rateWarmUp) against locksmith-noaudit, then
// locksmith-durable, ratePairs times (after rateFirstWarmUp against each),
// and reports p50/p99 for each and the audit's added p99 (durable −
// noaudit), per pair and as medians of the pairs. It is open-loop: a ticker
// dispatches every call at its scheduled time (start + i/rate) whatever the
// earlier calls are doing, and latency is measured from the scheduled time,
// so queueing behind a slow call counts (no coordinated omission). Run it
// with -benchtime 1x: each run takes about two minutes.
func BenchmarkAuditAtRate(b *testing.B) {
	e := setup(b)
	var noaudit, durable target
	for _, t := range e.targets {
		switch t.name {
		case "locksmith-noaudit":
			noaudit = t
		case "locksmith-durable":
			durable = t
		}
	}
	b.Run("pairs", func(b *testing.B) {
		var n50, n99, d50, d99, add50, add99, addSent99 []float64
		e.atRate(noaudit, rateFirstWarmUp)
		e.atRate(durable, rateFirstWarmUp)
		for range b.N {
			for pair := range ratePairs {
				e.atRate(noaudit, rateWarmUp)
				rn := e.atRate(noaudit, rateDuration)
				e.atRate(durable, rateWarmUp)
				rd := e.atRate(durable, rateDuration)
				// One line per pair: the testing package keeps only about
				// ten lines of a benchmark's log.
				b.Logf("pair %d: noaudit p50 %.0f p99 %.0f (from send %.0f) | durable p50 %.0f p99 %.0f (from send %.0f) | added p50 %.0f p99 %.0f (from send %.0f) µs | late %d/%d, behind>1ms %d/%d, rate %.0f/%.0f per s",
					pair+1, rn.p50, rn.p99, rn.sentP99, rd.p50, rd.p99, rd.sentP99, rd.p50-rn.p50, rd.p99-rn.p99, rd.sentP99-rn.sentP99,
					rn.late, rd.late, rn.behind, rd.behind, rn.rate, rd.rate)
				for _, x := range []struct {
					name string
					r    rateResult
				}{{noaudit.name, rn}, {durable.name, rd}} {
					if x.r.errs > 0 {
						b.Errorf("%s: %d failed calls", x.name, x.r.errs)
					}
				}
				n50, n99 = append(n50, rn.p50), append(n99, rn.p99)
				d50, d99 = append(d50, rd.p50), append(d99, rd.p99)
				add50, add99 = append(add50, rd.p50-rn.p50), append(add99, rd.p99-rn.p99)
				addSent99 = append(addSent99, rd.sentP99-rn.sentP99)
			}
		}
		b.ReportMetric(median(n50), "noaudit-p50-us")
		b.ReportMetric(median(n99), "noaudit-p99-us")
		b.ReportMetric(median(d50), "durable-p50-us")
		b.ReportMetric(median(d99), "durable-p99-us")
		b.ReportMetric(median(add50), "added-p50-us")
		b.ReportMetric(median(add99), "added-p99-us")
		b.ReportMetric(median(addSent99), "added-p99-from-send-us")
	})
}

// atRate runs one phase: rateCalls per second for d against t.
func (e *env) atRate(t target, d time.Duration) rateResult {
	runtime.GC()
	time.Sleep(200 * time.Millisecond) // let the previous phase's stragglers and the GC settle
	interval := time.Second / rateCalls
	n := int(d / interval)
	lat := make([]time.Duration, n)
	sentLat := make([]time.Duration, n)
	sem := make(chan struct{}, rateInFlight)
	var wg sync.WaitGroup
	var errs atomic.Int64
	var res rateResult

	tick := time.NewTicker(interval)
	defer tick.Stop()
	start := time.Now()
	var last time.Time
	for i := 0; i < n; {
		<-tick.C
		// The ticker drops ticks when the dispatcher falls behind: send
		// every call whose scheduled time has come.
		for now := time.Now(); i < n; i++ {
			sched := start.Add(time.Duration(i) * interval)
			if sched.After(now) {
				break
			}
			select {
			case sem <- struct{}{}:
			default:
				res.late++
				sem <- struct{}{} // wait for a slot; the wait counts in the latency
			}
			last = time.Now()
			if last.Sub(sched) > time.Millisecond {
				res.behind++
			}
			wg.Add(1)
			go func(i int, sched, sent time.Time) {
				defer wg.Done()
				if err := e.doDiscard(t); err != nil {
					errs.Add(1)
				}
				end := time.Now()
				lat[i], sentLat[i] = end.Sub(sched), end.Sub(sent)
				<-sem
			}(i, sched, last)
		}
	}
	wg.Wait()
	res.errs = errs.Load()
	res.rate = float64(n-1) / last.Sub(start).Seconds()
	slices.Sort(lat)
	res.p50, res.p99 = percentile(lat, 0.50), percentile(lat, 0.99)
	res.sentP99 = percentile(sentLat, 0.99)
	return res
}
