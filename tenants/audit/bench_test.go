package audit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants/audit"
)

// BenchmarkDurableWrites measures sustained durable audit writes: many
// concurrent callers, each waiting for its own COMMIT (synchronous_commit
// as configured on the server), group-committed by one Writer.
//
//	go test -run '^$' -bench DurableWrites -benchtime 200000x ./tenants/audit/
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
