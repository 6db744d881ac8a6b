package consent

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// TestUncachedUseIsSwept: a token handed out but not cached — its fill
// raced an invalidation (any grant's, from any tenant), or it expires too
// soon to reuse — still counts as a use of its grant at the next sweep,
// once; a cached one is reported through its entry as before.
func TestUncachedUseIsSwept(t *testing.T) {
	t.Parallel()
	c, err := newTokenCache()
	require.NoError(t, err)
	tenant, raced, short, cached := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	now := time.Now()
	key := func(sub string) cacheKey { return cacheKey{tenant: tenant, issuer: "iss", subject: sub} }

	gen := c.gen.Load()
	c.invalidateGrant(uuid.New()) // another grant changed meanwhile
	c.put(key("a"), nil, tenant, Token{Value: "t1", GrantID: raced, ExpiresAt: now.Add(time.Hour)}, 0, time.Minute, now, gen)
	c.put(key("b"), nil, tenant, Token{Value: "t2", GrantID: short, ExpiresAt: now.Add(time.Second)}, 0, time.Minute, now, c.gen.Load())
	c.put(key("c"), nil, tenant, Token{Value: "t3", GrantID: cached, ExpiresAt: now.Add(time.Hour)}, 0, time.Minute, now, c.gen.Load())
	require.Equal(t, 1, c.len(), "only the last one is cached")

	got := map[uuid.UUID]int64{}
	for _, u := range c.sweep(now.UnixNano()) {
		require.Equal(t, tenant, u.tenantID)
		got[u.grantID] = u.at
	}
	require.Equal(t, map[uuid.UUID]int64{raced: now.UnixNano(), short: now.UnixNano(), cached: now.UnixNano()}, got)
	require.Empty(t, c.sweep(now.UnixNano()), "each use is reported once")
}
