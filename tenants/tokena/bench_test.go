package tokena_test

import (
	"context"
	"testing"
	"time"

	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/tenants/tokena"
)

// realClock makes a benchmark use time.Now, not the test clock's mutex.
func realClock(c *tokena.Config) { c.Now = time.Now }

// BenchmarkVerifyWarmCache is the hot path: a token already verified, served
// from the cache (hash, lookup, expiry and key checks, Principal copy).
func BenchmarkVerifyWarmCache(b *testing.B) {
	tb := setup(b, realClock)
	tok := tb.mint(b, idp.MintRequest{})
	ctx := context.Background()
	if _, err := tb.v.Verify(ctx, tb.reg, audA, tok); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(tok)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tb.v.Verify(ctx, tb.reg, audA, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyWarmCacheParallel is the hot path under concurrency.
func BenchmarkVerifyWarmCacheParallel(b *testing.B) {
	tb := setup(b, realClock)
	tok := tb.mint(b, idp.MintRequest{})
	ctx := context.Background()
	if _, err := tb.v.Verify(ctx, tb.reg, audA, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := tb.v.Verify(ctx, tb.reg, audA, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerifyCold runs every check including the RS256 (RSA-2048)
// signature, with the JWKS cached and the token cache disabled.
func BenchmarkVerifyCold(b *testing.B) {
	tb := setup(b, realClock, func(c *tokena.Config) { c.CacheSize = -1 })
	tok := tb.mint(b, idp.MintRequest{})
	ctx := context.Background()
	if _, err := tb.v.Verify(ctx, tb.reg, audA, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tb.v.Verify(ctx, tb.reg, audA, tok); err != nil {
			b.Fatal(err)
		}
	}
}
