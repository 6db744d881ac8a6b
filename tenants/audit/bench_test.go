package audit_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants/audit"
)

// BenchmarkDurableWrites measures sustained durable audit writes: many
// concurrent callers, each waiting for its own COMMIT (synchronous_commit
// as configured on the server), group-committed by one Writer.
//
//	go test -run '^$' -bench DurableWrites -benchtime 1000000x ./tenants/audit/
func BenchmarkDurableWrites(b *testing.B) {
	for _, tc := range []struct {
		tenants, callers int
	}{{1, 1024}, {8, 1024}} {
		b.Run(fmt.Sprintf("tenants=%d/callers=%d", tc.tenants, tc.callers), func(b *testing.B) {
			ids := make([]uuid.UUID, tc.tenants)
			for i := range ids {
				ids[i], _ = newTenant(b)
			}
			w := newWriter(b, nil)
			ctx := context.Background()
			c := call(1)
			b.ResetTimer()
			var wg sync.WaitGroup
			work := make(chan int, tc.callers)
			for range tc.callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range work {
						if _, err := w.Intent(ctx, ids[i%len(ids)], c); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			for i := range b.N {
				work <- i
			}
			close(work)
			wg.Wait()
			b.StopTimer()
			st := w.Stats()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(st.Events)/float64(max(st.Batches, 1)), "events/commit")
		})
	}
}

// BenchmarkVerify measures verification throughput over a sealed trail of
// 200,000 events.
//
//	go test -run '^$' -bench Verify ./tenants/audit/
func BenchmarkVerify(b *testing.B) {
	const events = 200_000
	ctx := context.Background()
	tenant, _ := newTenant(b)
	store, err := audit.New(audit.Config{DB: sqltest.DB(b), Logger: discard})
	require.NoError(b, err)
	w := newWriter(b, nil)
	var wg sync.WaitGroup
	work := make(chan struct{}, 256)
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				if _, err := w.Intent(ctx, tenant, call(1)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	for range events {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	_, err = store.SealAll(ctx)
	require.NoError(b, err)

	b.ResetTimer()
	var checked int64
	for range b.N {
		rep, err := store.Verify(ctx, tenant)
		require.NoError(b, err)
		require.True(b, rep.OK())
		checked += rep.Events
	}
	b.ReportMetric(float64(checked)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkSeal measures sealing throughput.
func BenchmarkSeal(b *testing.B) {
	ctx := context.Background()
	store, err := audit.New(audit.Config{DB: sqltest.DB(b), Logger: discard})
	require.NoError(b, err)
	w := newWriter(b, nil)
	var sealed int64
	for range b.N {
		b.StopTimer()
		tenant, _ := newTenant(b)
		var wg sync.WaitGroup
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 500 {
					_, err := w.Intent(ctx, tenant, call(1))
					if err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.StartTimer()
		for {
			res, err := store.Seal(ctx, tenant)
			require.NoError(b, err)
			if res.Events == 0 {
				break
			}
			sealed += res.Events
		}
	}
	b.ReportMetric(float64(sealed)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkCallAtRate is the writer's share of a tools/call at a fixed
// rate: an open-loop load starts a call every 1/rate seconds (whatever the
// earlier ones are doing), each call waits for its Intent, then (after a
// simulated 300 µs upstream) for its Outcome, and the latency of the two
// waits is taken. It isolates the audit from the rest of the MCP endpoint
// (bench/mcpbench's BenchmarkAuditAtRate measures the whole call).
//
//	go test -run '^$' -bench CallAtRate -benchtime 1x ./tenants/audit/
func BenchmarkCallAtRate(b *testing.B) {
	const (
		rate     = 2000
		duration = 5 * time.Second
	)
	tenant, _ := newTenant(b)
	w := newWriter(b, nil)
	ctx := context.Background()
	c := call(1)
	for range b.N {
		interval := time.Second / rate
		n := int(duration / interval)
		lat := make([]time.Duration, n)
		var wg sync.WaitGroup
		start := time.Now()
		for i := range n {
			sched := start.Add(time.Duration(i) * interval)
			time.Sleep(time.Until(sched))
			wg.Add(1)
			go func() {
				defer wg.Done()
				t0 := time.Now()
				seq, err := w.Intent(ctx, tenant, c)
				if err != nil {
					b.Error(err)
					return
				}
				waited := time.Since(t0)
				time.Sleep(300 * time.Microsecond)
				t1 := time.Now()
				if _, err := w.Outcome(ctx, tenant, seq, audit.Outcome{Status: 200, Latency: 300 * time.Microsecond}); err != nil {
					b.Error(err)
					return
				}
				lat[i] = waited + time.Since(t1)
			}()
		}
		wg.Wait()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[n/2].Microseconds()), "p50-us")
		b.ReportMetric(float64(lat[n*99/100].Microseconds()), "p99-us")
		b.ReportMetric(float64(lat[n*999/1000].Microseconds()), "p999-us")
	}
}
