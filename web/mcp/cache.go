package mcp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/singleflight"

	"github.com/locksmithhq/locksmith/tenants"
)

// DefaultTenantTTL is how long a tenant's registrations are cached per
// instance. A change made in the console reaches every instance within it;
// LISTEN/NOTIFY invalidation will shorten this later.
const DefaultTenantTTL = 5 * time.Second

// maxCachedTenants bounds the tenant cache (unknown slugs are cached too, so
// that random slugs cannot flood the database).
const maxCachedTenants = 10_000

// errNoEndpoint means the slug names no tenant, or a tenant without an IdP
// registration: both are answered 404 alike.
var errNoEndpoint = errors.New("mcp: no endpoint for this tenant")

// snapshot is one tenant's registrations as read at one moment. It is
// immutable once built.
type snapshot struct {
	tenant    tenants.Tenant
	idp       tenants.IdP
	resource  string // canonical MCP URL: BASE/t/slug/mcp
	audience  string // what Token A's aud must contain
	prmURL    string
	upstreams map[uuid.UUID]tenants.Upstream
	mcpUps    []tenants.Upstream // kind mcp, by slug order of the catalog
	tools     []tenants.Tool
	toolByKey map[string]int // name → index in tools
	loadedAt  time.Time
	err       error
}

func (s *snapshot) tool(name string) (tenants.Tool, bool) {
	i, ok := s.toolByKey[name]
	if !ok {
		return tenants.Tool{}, false
	}
	return s.tools[i], true
}

// tenantCache caches snapshots by slug with a TTL; concurrent misses for one
// slug share one load.
type tenantCache struct {
	reg     Registry
	base    string
	ttl     time.Duration
	now     func() time.Time
	group   singleflight.Group
	mu      sync.Mutex
	entries map[string]*snapshot
}

func newTenantCache(reg Registry, base string, ttl time.Duration, now func() time.Time) *tenantCache {
	return &tenantCache{reg: reg, base: base, ttl: ttl, now: now, entries: make(map[string]*snapshot)}
}

// get returns the slug's snapshot, loading it when absent or stale. It
// returns errNoEndpoint for unknown slugs and tenants without an IdP.
func (c *tenantCache) get(ctx context.Context, slug string) (*snapshot, error) {
	now := c.now()
	c.mu.Lock()
	s, ok := c.entries[slug]
	c.mu.Unlock()
	if ok && now.Sub(s.loadedAt) < c.ttl {
		return s, s.err
	}
	v, err, _ := c.group.Do(slug, func() (any, error) {
		// The load must not die with the first caller's request.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		s, err := c.load(lctx, slug)
		if err != nil {
			return nil, err
		}
		c.put(slug, s)
		return s, nil
	})
	if err != nil {
		if ok {
			// Serve the last good snapshot while the database is unwell.
			return s, s.err
		}
		return nil, err
	}
	s = v.(*snapshot)
	return s, s.err
}

// invalidate drops a slug, so the next request reloads it.
func (c *tenantCache) invalidate(slug string) {
	c.mu.Lock()
	delete(c.entries, slug)
	c.mu.Unlock()
}

func (c *tenantCache) put(slug string, s *snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxCachedTenants {
		now := c.now()
		for k, e := range c.entries {
			if now.Sub(e.loadedAt) >= c.ttl {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < maxCachedTenants {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[slug] = s
}

func (c *tenantCache) load(ctx context.Context, slug string) (*snapshot, error) {
	s := &snapshot{loadedAt: c.now()}
	t, err := c.reg.TenantBySlug(ctx, slug)
	if errors.Is(err, tenants.ErrNotFound) {
		s.err = errNoEndpoint
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mcp: load tenant %q: %w", slug, err)
	}
	s.tenant = t
	reg, err := c.reg.IdP(ctx, t.ID)
	if errors.Is(err, tenants.ErrNotFound) {
		s.err = errNoEndpoint
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mcp: load IdP of tenant %s: %w", t.ID, err)
	}
	s.idp = reg
	s.resource = c.base + "/t/" + t.Slug + "/mcp"
	s.prmURL = c.base + "/.well-known/oauth-protected-resource/t/" + t.Slug + "/mcp"
	s.audience = s.resource
	if reg.Audience != "" {
		s.audience = reg.Audience
	}
	ups, tools, err := c.reg.Catalog(ctx, t.ID)
	if err != nil {
		return nil, fmt.Errorf("mcp: load catalog of tenant %s: %w", t.ID, err)
	}
	s.upstreams = make(map[uuid.UUID]tenants.Upstream, len(ups))
	for _, u := range ups {
		s.upstreams[u.ID] = u
		if u.Kind == tenants.UpstreamMCP {
			s.mcpUps = append(s.mcpUps, u)
		}
	}
	s.toolByKey = make(map[string]int, len(tools))
	for _, tl := range tools {
		if u, ok := s.upstreams[tl.UpstreamID]; !ok || u.Kind != tenants.UpstreamREST {
			continue // tools of MCP upstreams come from the upstream itself
		}
		s.toolByKey[tl.Name] = len(s.tools)
		s.tools = append(s.tools, tl)
	}
	return s, nil
}
