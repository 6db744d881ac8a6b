package consent

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/google/uuid"
)

// cacheKey names one cached Token B: a user's token for an upstream and a
// requested scope set (by hash; entries keep the scopes to rule out
// collisions).
type cacheKey struct {
	tenant   uuid.UUID
	upstream uuid.UUID
	issuer   string
	subject  string
	scopes   uint64
}

// cacheEntry holds a token sealed with the process-local key: a memory dump
// of the cache holds nothing usable without that key.
type cacheEntry struct {
	tenantID  uuid.UUID
	grantID   uuid.UUID // uuid.Nil for exchanged tokens
	reqScopes []string  // the requested scope set, normal
	scopes    []string  // the token's scopes
	narrowed  bool
	expiresAt time.Time
	useUntil  int64 // unix nanoseconds: expiresAt minus the safety margin
	nonce     [12]byte
	ad        []byte
	sealed    []byte
	lastUsed  atomic.Int64 // unix nanoseconds, for last_used_at
	// reported is the lastUsed value the last sweep reported (under c.mu).
	reported int64
	// tokenA, when not zero, binds an exchanged token to the Token A it was
	// exchanged for (a hash): another agent's session of the same user
	// exchanges its own.
	tokenA uint64
}

// tokenCache is the broker's in-memory cache. Lookups take a read lock and
// open one AES-GCM box; nothing touches the database.
type tokenCache struct {
	aead cipher.AEAD

	mu      sync.RWMutex
	m       map[cacheKey]*cacheEntry
	byGrant map[uuid.UUID]map[cacheKey]struct{}
	// gen is bumped by every invalidation; a fill that started before one
	// is not stored (it may hold a token of a grant revoked meanwhile).
	gen atomic.Uint64
	// seed keys the Token A hash.
	seed maphash.Seed
	// uncached holds, per grant, the last use of a token that was handed
	// out but not cached (an invalidation raced its fill, or it expires too
	// soon), for the next sweep: such uses are recorded too. Under mu.
	uncached map[uuid.UUID]usage
}

func newTokenCache() (*tokenCache, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("consent: cache key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	clear(key)
	return &tokenCache{aead: aead, seed: maphash.MakeSeed(), m: map[cacheKey]*cacheEntry{},
		byGrant: map[uuid.UUID]map[cacheKey]struct{}{}, uncached: map[uuid.UUID]usage{}}, nil
}

// hashScopes is FNV-1a over the scopes, each followed by a zero byte.
func hashScopes(scopes []string) uint64 {
	h := uint64(14695981039346656037)
	for _, s := range scopes {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 1099511628211
		}
		h ^= 0xff
		h *= 1099511628211
	}
	return h
}

// hashTokenA returns the binding of an exchanged token to Token A (never 0).
func (c *tokenCache) hashTokenA(tokenA string) uint64 {
	return maphash.String(c.seed, tokenA) | 1
}

// get returns the cached token for key if it is still usable at now (unix
// nanoseconds). It allocates only the returned string.
func (c *tokenCache) get(key cacheKey, req []string, now int64, tokenA string) (Token, bool) {
	c.mu.RLock()
	e := c.m[key]
	c.mu.RUnlock()
	if e == nil || now >= e.useUntil || !slices.Equal(e.reqScopes, req) {
		return Token{}, false
	}
	if e.tokenA != 0 && c.hashTokenA(tokenA) != e.tokenA {
		return Token{}, false
	}
	buf := make([]byte, len(e.sealed)-c.aead.Overhead())
	plain, err := c.aead.Open(buf[:0], e.nonce[:], e.sealed, e.ad)
	if err != nil || len(plain) == 0 {
		return Token{}, false
	}
	if last := e.lastUsed.Load(); now-last > int64(time.Second) {
		e.lastUsed.Store(now)
	}
	return Token{
		// buf is fresh and never written again: sharing it with the string
		// saves a copy of the token.
		Value:     unsafe.String(&plain[0], len(plain)),
		Scopes:    e.scopes,
		Narrowed:  e.narrowed,
		ExpiresAt: e.expiresAt,
		GrantID:   e.grantID,
	}, true
}

// put seals tok and stores it under key unless an invalidation happened
// since gen was read, or the token is too close to expiry to be reused.
// tokenA is the hashTokenA binding, 0 for none.
func (c *tokenCache) put(key cacheKey, req []string, tenantID uuid.UUID, tok Token, tokenA uint64, margin time.Duration, now time.Time, gen uint64) {
	useUntil := tok.ExpiresAt.Add(-margin)
	if !useUntil.After(now) || tok.Value == "" {
		c.mu.Lock()
		c.noteUncachedLocked(tenantID, tok.GrantID, now.UnixNano())
		c.mu.Unlock()
		return
	}
	e := &cacheEntry{
		tenantID:  tenantID,
		grantID:   tok.GrantID,
		reqScopes: slices.Clone(req),
		scopes:    tok.Scopes,
		narrowed:  tok.Narrowed,
		expiresAt: tok.ExpiresAt,
		useUntil:  useUntil.UnixNano(),
		tokenA:    tokenA,
	}
	if _, err := rand.Read(e.nonce[:]); err != nil {
		return
	}
	e.ad = append(append(append([]byte("locksmith/cache/v1\x00"), tenantID[:]...), tok.GrantID[:]...), key.issuer+"\x00"+key.subject...)
	e.sealed = c.aead.Seal(nil, e.nonce[:], []byte(tok.Value), e.ad)
	e.lastUsed.Store(now.UnixNano())

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != gen {
		c.noteUncachedLocked(tenantID, tok.GrantID, now.UnixNano())
		return
	}
	c.m[key] = e
	if tok.GrantID != uuid.Nil {
		keys := c.byGrant[tok.GrantID]
		if keys == nil {
			keys = map[cacheKey]struct{}{}
			c.byGrant[tok.GrantID] = keys
		}
		keys[key] = struct{}{}
	}
}

// noteUncachedLocked records a use of grantID's token that is not in the
// cache, for the next sweep; c.mu is held.
func (c *tokenCache) noteUncachedLocked(tenantID, grantID uuid.UUID, at int64) {
	if grantID == uuid.Nil {
		return
	}
	if u, ok := c.uncached[grantID]; !ok || at > u.at {
		c.uncached[grantID] = usage{tenantID: tenantID, grantID: grantID, at: at}
	}
}

// drop removes the entry under key, if any.
func (c *tokenCache) drop(key cacheKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[key]
	if e == nil {
		return
	}
	delete(c.m, key)
	if keys := c.byGrant[e.grantID]; keys != nil {
		delete(keys, key)
		if len(keys) == 0 {
			delete(c.byGrant, e.grantID)
		}
	}
}

// invalidateGrant drops every entry of the grant.
func (c *tokenCache) invalidateGrant(grantID uuid.UUID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	for k := range c.byGrant[grantID] {
		delete(c.m, k)
	}
	delete(c.byGrant, grantID)
}

// invalidateAll drops everything (after the listener missed notifications).
func (c *tokenCache) invalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	clear(c.m)
	clear(c.byGrant)
}

// usage is one grant's last use, for the last_used_at flush.
type usage struct {
	tenantID, grantID uuid.UUID
	at                int64
}

// sweep drops entries past their use-by time and returns the grants used
// (cached or not: noteUncachedLocked) since the previous sweep reported them. Each entry remembers what it last
// reported, so a use stamped just before a sweep but stored after it is
// reported by the next sweep instead of being lost.
func (c *tokenCache) sweep(now int64) []usage {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[uuid.UUID]int{}
	var used []usage
	for id, u := range c.uncached {
		seen[id] = len(used)
		used = append(used, u)
		delete(c.uncached, id)
	}
	for k, e := range c.m {
		if e.grantID != uuid.Nil {
			if at := e.lastUsed.Load(); at > e.reported {
				e.reported = at
				if i, ok := seen[e.grantID]; ok {
					used[i].at = max(used[i].at, at)
				} else {
					seen[e.grantID] = len(used)
					used = append(used, usage{tenantID: e.tenantID, grantID: e.grantID, at: at})
				}
			}
		}
		if now >= e.useUntil {
			delete(c.m, k)
			if keys := c.byGrant[e.grantID]; keys != nil {
				delete(keys, k)
				if len(keys) == 0 {
					delete(c.byGrant, e.grantID)
				}
			}
		}
	}
	return used
}

// len reports the number of entries (tests).
func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
