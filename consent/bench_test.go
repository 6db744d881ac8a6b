package consent_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/tasks"
	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/sql/sqltest"
)

// BenchmarkTokenWarmCache measures Broker.Token on a warm cache: a map
// lookup and one AES-GCM open of the sealed token. The broker's database
// pool is closed before timing starts, so any database round trip would fail
// the benchmark: zero round trips by construction.
func BenchmarkTokenWarmCache(b *testing.B) {
	ctx := context.Background()
	e := setup(b)
	acme := startAcme(b, 0)
	up := e.addUpstream(b, acme, upstreamOpts{})
	e.save(b, acme, up, "engineer")

	db, err := lsql.Open(ctx, lsql.Options{URL: sqltest.OwnerURL(b), AssumeRole: true, MaxConns: 2})
	require.NoError(b, err)
	v, err := consent.NewVault(consent.VaultConfig{DB: db, Sealer: e.sealer, Inserter: e.inserter, Logger: e.logger})
	require.NoError(b, err)
	broker := e.newBroker(b, brokerOpts{vault: v})
	user := testUser("engineer")
	scopes := []string{tasks.ScopeRead}
	_, err = broker.Token(ctx, e.tenantID, up.ID, user, scopes)
	require.NoError(b, err)
	db.Close()

	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := broker.Token(ctx, e.tenantID, up.ID, user, scopes); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := broker.Token(ctx, e.tenantID, up.ID, user, scopes); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkTokenRefresh measures a Token call on an empty cache that must
// refresh: the upstream lookup, the locked
// read and lease (one short transaction), the upstream refresh at Acme Tasks
// over loopback HTTP, and the compare-and-swap write with the next job's
// enqueue (a second transaction).
func BenchmarkTokenRefresh(b *testing.B) {
	ctx := context.Background()
	e := setup(b)
	acme := startAcme(b, 0)
	up := e.addUpstream(b, acme, upstreamOpts{})
	g := e.save(b, acme, up, "engineer")
	user := testUser("engineer")
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		e.expire(b, g.ID)
		broker := e.newBroker(b, brokerOpts{}) // an empty cache
		b.StartTimer()
		if _, err := broker.Token(ctx, e.tenantID, up.ID, user, nil); err != nil {
			b.Fatal(err)
		}
	}
}
