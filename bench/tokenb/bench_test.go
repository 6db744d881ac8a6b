package tokenb_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/bench/tokenb"
	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/sql/sqltest"
)

func TestMain(m *testing.M) { os.Exit(sqltest.Main(m)) }

// testBundle is one tenant on the package database with its own app pool,
// and Acme Tasks on a loopback port of this process.
type testBundle struct {
	env  *tokenb.Env
	acme *tokenb.LocalAcme
}

func setup(t testing.TB, users int, accessLifetime time.Duration) *testBundle {
	t.Helper()
	acme, err := tokenb.StartLocalAcme(tokenb.AcmeConfig(users, accessLifetime))
	require.NoError(t, err)
	t.Cleanup(func() { _ = acme.Close(context.Background()) })
	env, err := tokenb.Open(context.Background(), tokenb.Config{OwnerURL: sqltest.OwnerURL(t), AcmeURL: acme.URL()})
	require.NoError(t, err)
	t.Cleanup(env.Close)
	return &testBundle{env: env, acme: acme}
}

// warmCache is a broker whose cache holds one token per user, whose
// database pool is closed, and whose upstream lookups are counted.
type warmCache struct {
	broker *consent.Broker
	up     *tokenb.CountingUpstreams
	users  []consent.User
	tb     *testBundle
	err    error
}

var (
	warmMu sync.Mutex
	warm   = map[int]*warmCache{}
)

// warmBroker builds (once per process and size) a broker with n cached
// tokens: n grants with fresh access tokens, one Token call each (a locked
// read that uses the stored token and caches it), then the pool is closed.
// A cache miss would now fail, and so would any other database round trip.
func warmBroker(b *testing.B, n int) *warmCache {
	b.Helper()
	warmMu.Lock()
	defer warmMu.Unlock()
	if w, ok := warm[n]; ok {
		require.NoError(b, w.err)
		return w
	}
	ctx := context.Background()
	w := &warmCache{}
	warm[n] = w
	acme, err := tokenb.StartLocalAcme(tokenb.AcmeConfig(n, 0))
	require.NoError(b, err)
	env, err := tokenb.Open(ctx, tokenb.Config{OwnerURL: sqltest.OwnerURL(b), AcmeURL: acme.URL(), MaxConns: 8})
	require.NoError(b, err)
	names := tokenb.Users(0, n)
	_, w.err = env.SeedGrants(ctx, acme, env.Vault, names, time.Now().Add(time.Hour), 8, 1000)
	require.NoError(b, w.err)
	w.up = &tokenb.CountingUpstreams{Next: env.Tenants}
	w.broker, w.err = env.NewBroker(w.up)
	require.NoError(b, w.err)
	for _, name := range names {
		u := tokenb.User(name)
		w.users = append(w.users, u)
		_, w.err = w.broker.Token(ctx, env.TenantID, env.Upstream.ID, u, nil)
		require.NoError(b, w.err)
	}
	w.tb = &testBundle{env: env, acme: acme}
	env.Close() // from here on, any database round trip fails
	_ = acme.Close(ctx)
	return w
}

// BenchmarkTokenWarmCache measures Broker.Token on a warm cache holding
// one token, and one per user of 10,000 (cycled through): a map lookup
// under a read lock and one AES-GCM open. The database pool is closed and
// upstream lookups are counted, so the reported upstream-lookups/op and
// the absence of errors prove zero database round trips.
func BenchmarkTokenWarmCache(b *testing.B) {
	for _, n := range []int{1, 10_000} {
		b.Run(fmt.Sprintf("grants=%d", n), func(b *testing.B) {
			if n > 1 && testing.Short() {
				b.Skip("seeding 10,000 grants is not short")
			}
			w := warmBroker(b, n)
			ctx := context.Background()
			tenantID, upstreamID := w.tb.env.TenantID, w.tb.env.Upstream.ID
			b.Run("serial", func(b *testing.B) {
				before := w.up.Calls()
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if _, err := w.broker.Token(ctx, tenantID, upstreamID, w.users[i], nil); err != nil {
						b.Fatal(err)
					}
					if i++; i == len(w.users) {
						i = 0
					}
				}
				b.ReportMetric(float64(w.up.Calls()-before)/float64(b.N), "lookups/op")
			})
			b.Run("parallel", func(b *testing.B) {
				before := w.up.Calls()
				b.ReportAllocs()
				var next sync.Mutex
				start := 0
				b.RunParallel(func(pb *testing.PB) {
					next.Lock()
					i := start % len(w.users)
					start += 7919
					next.Unlock()
					for pb.Next() {
						if _, err := w.broker.Token(ctx, tenantID, upstreamID, w.users[i], nil); err != nil {
							b.Error(err)
							return
						}
						if i++; i == len(w.users) {
							i = 0
						}
					}
				})
				b.ReportMetric(float64(w.up.Calls()-before)/float64(b.N), "lookups/op")
			})
		})
	}
}

func TestRefreshLatency(t *testing.T) {
	t.Parallel()
	tb := setup(t, 60, 0)
	res, err := tokenb.RefreshLatency(context.Background(), tb.env, tb.acme, tokenb.LatencyConfig{Samples: 40, Warmup: 5})
	require.NoError(t, err)
	require.Equal(t, 40, res.Refresh.N)
	require.Equal(t, 40, res.Baseline.N)
	require.Greater(t, res.Refresh.P50, res.Baseline.P50, "a refresh through the broker does more than a bare refresh")
	require.Equal(t, 2*45, res.Acme.RefreshGrants)
	require.Zero(t, res.Acme.FamiliesRevoked)
}

// TestScale runs the scale harness small: 300 grants whose 40-second
// tokens expire together, refreshed by the River jobs within seconds.
func TestScale(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a refresh window")
	}
	t.Parallel()
	tb := setup(t, 300, 0)
	res, err := tokenb.Scale(context.Background(), tb.env, tb.acme, tokenb.ScaleConfig{
		Grants: 300, TokenLife: 40 * time.Second, OpenAfter: 5 * time.Second,
		RefreshPerSecond: 10_000, Timeout: time.Minute,
	})
	require.NoError(t, err)
	require.Equal(t, 10*time.Second, res.Margin)
	busy, first := res.Scheduled.Busy()
	require.Zero(t, res.Scheduled.Before, "no job due before the window opens")
	require.LessOrEqual(t, first+len(busy), 6, "jitter spreads jobs over half the margin")
	require.Equal(t, 300, res.Acme.RefreshGrants)
	require.Zero(t, res.Acme.FamiliesRevoked)
	require.Equal(t, 300, res.GrantsRefreshed)
	require.Positive(t, res.Mem.VmHWM)
}
