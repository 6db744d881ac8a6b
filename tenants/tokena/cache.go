package tokena

import (
	"sync"
	"time"

	"github.com/locksmithhq/locksmith/tenants"
)

// regKey is everything about a registration that can change the verdict on
// a token or the Principal built from it. It is part of the cache key, so a
// token verified for one registration (one tenant) is never served from the
// cache to another that differs in any of these.
type regKey struct {
	issuer    string
	jwksURI   string
	audience  string
	requireAT bool
	claims    tenants.ClaimMapping
}

// cacheKey identifies a verified token: the SHA-256 of the raw token (the
// token itself is never kept) and the registration it was verified for.
type cacheKey struct {
	hash [32]byte
	reg  regKey
}

// cacheEntry is a verified token's result. It is valid until deadline
// (exp plus skew) and while its signing key is still published in ks.
type cacheEntry struct {
	p        Principal
	deadline time.Time
	ks       *keySet
	key      *key
}

// cache is the bounded verified-token cache. Hits take a read lock only.
// When full, an insert first drops expired entries among a sample, then an
// arbitrary entry (Go's map iteration order is randomized, so eviction is
// close to random, which needs no bookkeeping on hits).
type cache struct {
	mu  sync.RWMutex
	m   map[cacheKey]*cacheEntry
	max int
}

// evictSample is how many entries an insert into a full cache inspects.
const evictSample = 32

func newCache(max int) *cache {
	return &cache{m: make(map[cacheKey]*cacheEntry), max: max}
}

func (c *cache) get(k cacheKey) *cacheEntry {
	c.mu.RLock()
	e := c.m[k]
	c.mu.RUnlock()
	return e
}

func (c *cache) put(k cacheKey, e *cacheEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		n := 0
		var victim *cacheKey
		for ck, ce := range c.m {
			if !now.Before(ce.deadline) {
				delete(c.m, ck)
			} else if victim == nil {
				victim = &ck
			}
			if n++; n >= evictSample {
				break
			}
		}
		if len(c.m) >= c.max && victim != nil {
			delete(c.m, *victim)
		}
	}
	c.m[k] = e
}

// drop removes k if it still maps to e.
func (c *cache) drop(k cacheKey, e *cacheEntry) {
	c.mu.Lock()
	if c.m[k] == e {
		delete(c.m, k)
	}
	c.mu.Unlock()
}

func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
