package consent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/singleflight"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
)

// Upstreams is what the broker needs from the tenant domain's upstream
// registrations (*tenants.Service provides it).
type Upstreams interface {
	Upstream(ctx context.Context, tenantID, id uuid.UUID) (tenants.Upstream, error)
	UpstreamClientSecret(ctx context.Context, tenantID, id uuid.UUID) (string, error)
}

// ExchangeClient is where and as whom Locksmith exchanges a user's Token A
// at the tenant's IdP (RFC 8693, or Entra ID On-Behalf-Of).
type ExchangeClient struct {
	// TokenURL is the IdP's token endpoint.
	TokenURL string
	// ClientID and ClientSecret are Locksmith's confidential client at the IdP.
	ClientID     string
	ClientSecret string
}

// ExchangeClients finds the exchange client of a tenant (its IdP
// registration).
type ExchangeClients interface {
	ExchangeClient(ctx context.Context, tenantID uuid.UUID) (ExchangeClient, error)
}

// ConsentURLFunc builds the URL where the user connects upstream up with
// scopes (see ConsentURL). It must not fail: on a lookup error it may return "".
type ConsentURLFunc func(ctx context.Context, tenantID uuid.UUID, up tenants.Upstream, scopes []string) string

// ConsentURL returns baseURL + "/t/{tenantSlug}/connect/{upstreamSlug}",
// with ?scope= the space-separated scopes when there are any.
func ConsentURL(baseURL, tenantSlug, upstreamSlug string, scopes []string) string {
	u := strings.TrimRight(baseURL, "/") + "/t/" + url.PathEscape(tenantSlug) + "/connect/" + url.PathEscape(upstreamSlug)
	if len(scopes) > 0 {
		u += "?" + url.Values{"scope": {strings.Join(scopes, " ")}}.Encode()
	}
	return u
}

// Token is a Token B for one call. Value is the bearer token, opened from
// the sealed cache for this use only: don't keep it, log it or return it to
// an agent. Scopes is shared and must not be modified.
type Token struct {
	Value string
	// Scopes are the token's scopes.
	Scopes []string
	// Narrowed reports that the token was narrowed to the requested scopes
	// (a refresh with scope=, or a token exchange with scope=). False means
	// the grant's own token is used; it may carry more than was asked.
	Narrowed bool
	// ExpiresAt is when the upstream said the token expires.
	ExpiresAt time.Time
	// GrantID is the grant the token came from; uuid.Nil for exchanged tokens.
	GrantID uuid.UUID
	// RevokeAfterUse reports that the token was minted for this call alone:
	// the upstream revokes after use (tenants.Upstream.RevokeAfterUse) and
	// the token is narrowed or exchanged, never the grant's own. It is in no
	// cache and no other caller has it; the caller must hand it to
	// Broker.AfterUse once the call is over, whatever its outcome.
	RevokeAfterUse bool
}

// minted reports whether tok was made for calls (a narrowed refresh or a
// token exchange) rather than being the grant's own access token.
func (t Token) minted() bool { return t.Narrowed || t.GrantID == uuid.Nil }

// singleUse reports whether tok, from up, serves one call and is then
// revoked: only minted tokens, so the grant's own access and refresh tokens
// are never revoked by RevokeAfterUse (that would disconnect the user).
func singleUse(up tenants.Upstream, tok Token) bool { return up.RevokeAfterUse && tok.minted() }

// BrokerConfig holds the Broker's dependencies and tuning. Zero durations
// get the documented defaults.
type BrokerConfig struct {
	Vault     *Vault
	Upstreams Upstreams
	// Egress is the SSRF-guarded client every token, exchange and
	// revocation request goes through.
	Egress *egress.Client
	// Exchange finds a tenant's IdP exchange client; nil means upstreams in
	// token_exchange mode fail with an error.
	Exchange   ExchangeClients
	ConsentURL ConsentURLFunc
	Logger     *slog.Logger
	// Instance names this broker as a lease owner; "" means a random id.
	// Two brokers must never share one.
	Instance string
	// Lease is how long a refresh lease lasts: longer than RefreshTimeout.
	// Default 30s.
	Lease time.Duration
	// RefreshTimeout bounds one upstream token request. Default 10s.
	RefreshTimeout time.Duration
	// WaitTimeout bounds how long a caller waits for another instance's
	// refresh. Default RefreshTimeout + 2s.
	WaitTimeout time.Duration
	// ExpiryMargin: a token is not used (cached or stored) when it expires
	// within this margin. Default 30s.
	ExpiryMargin time.Duration
	// UpstreamTTL is how long upstream registrations are cached. Default 30s.
	UpstreamTTL time.Duration
	// FlushInterval is how often last_used_at is written and expired cache
	// entries dropped (after Start). Default 1 minute.
	FlushInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// Test-only knobs, set through export_test.go.
	noSingleFlight bool
	afterUpstream  func() error
}

// Broker hands out Token B: from its sealed in-memory cache, from the vault,
// by a single-flight refresh, or by token exchange. It is safe for
// concurrent use; Start begins listening for revocations.
type Broker struct {
	vault     *Vault
	upstreams Upstreams
	egress    *egress.Client
	exchange  ExchangeClients
	consent   ConsentURLFunc
	logger    *slog.Logger
	owner     string
	lease     time.Duration
	timeout   time.Duration
	wait      time.Duration
	margin    time.Duration
	upTTL     time.Duration
	flush     time.Duration
	now       func() time.Time

	noSingleFlight bool
	afterUpstream  func() error

	cache *tokenCache
	sf    singleflight.Group

	upMu    sync.RWMutex
	upCache map[[2]uuid.UUID]*cachedUpstream
	// blocked holds, per upstream, until when its token endpoint asked us to
	// stay away (Retry-After).
	blocked map[uuid.UUID]time.Time

	runMu   sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	started bool

	// Revocations after use (AfterUse) run in goroutines tracked by afterWG,
	// at most cap(afterSem) at a time; once afterClosed is set (Close) they
	// run inline instead.
	afterMu     sync.Mutex
	afterClosed bool
	afterWG     sync.WaitGroup
	afterSem    chan struct{}
	afterOK     atomic.Int64
	afterFailed atomic.Int64
	// unwritten holds grant uses whose last_used_at write failed, for the
	// next flush (run goroutine only).
	unwritten []usage
	// held maps each single-use token handed out to its grant_revocations
	// row, for AfterUse to delete once it revoked the token.
	held heldTokens
}

type cachedUpstream struct {
	up      tenants.Upstream
	fetched time.Time
}

// NewBroker validates cfg and returns a Broker with an empty cache and a
// fresh process-local cache key.
func NewBroker(cfg BrokerConfig) (*Broker, error) {
	switch {
	case cfg.Vault == nil:
		return nil, errors.New("consent: broker: vault is required")
	case cfg.Upstreams == nil:
		return nil, errors.New("consent: broker: upstreams are required")
	case cfg.Egress == nil:
		return nil, errors.New("consent: broker: egress client is required")
	case cfg.ConsentURL == nil:
		return nil, errors.New("consent: broker: consent URL builder is required")
	case cfg.Logger == nil:
		return nil, errors.New("consent: broker: logger is required")
	case cfg.Lease < 0 || cfg.RefreshTimeout < 0 || cfg.WaitTimeout < 0 || cfg.ExpiryMargin < 0 || cfg.UpstreamTTL < 0 || cfg.FlushInterval < 0:
		return nil, errors.New("consent: broker: durations must not be negative")
	}
	b := &Broker{
		vault: cfg.Vault, upstreams: cfg.Upstreams, egress: cfg.Egress, exchange: cfg.Exchange,
		consent: cfg.ConsentURL, logger: cfg.Logger, owner: cfg.Instance,
		lease: orDefault(cfg.Lease, 30*time.Second), timeout: orDefault(cfg.RefreshTimeout, 10*time.Second),
		margin: orDefault(cfg.ExpiryMargin, 30*time.Second), upTTL: orDefault(cfg.UpstreamTTL, 30*time.Second),
		flush: orDefault(cfg.FlushInterval, time.Minute), now: cfg.Now,
		noSingleFlight: cfg.noSingleFlight, afterUpstream: cfg.afterUpstream,
		upCache: map[[2]uuid.UUID]*cachedUpstream{}, blocked: map[uuid.UUID]time.Time{},
		afterSem: make(chan struct{}, maxAfterUse), held: heldTokens{m: map[[32]byte]heldToken{}},
	}
	b.wait = orDefault(cfg.WaitTimeout, b.timeout+2*time.Second)
	if b.lease <= b.timeout {
		return nil, fmt.Errorf("consent: broker: lease (%s) must be longer than the refresh timeout (%s)", b.lease, b.timeout)
	}
	if b.owner == "" {
		b.owner = uuid.NewString()
	}
	if b.now == nil {
		b.now = time.Now
	}
	var err error
	if b.cache, err = newTokenCache(); err != nil {
		return nil, err
	}
	return b, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Vault returns the broker's vault.
func (b *Broker) Vault() *Vault { return b.vault }

// Token returns a Token B for the user's calls to the upstream with scopes
// (nil means the grant's scopes). A warm cache answers without touching the
// database (a cached narrowed or exchanged token re-checks the upstream's
// RevokeAfterUse in the registration cache, read from the database at most
// once per UpstreamTTL). When the upstream revokes after use, a narrowed or
// exchanged token is minted for this call alone (Token.RevokeAfterUse): the
// caller must pass it to AfterUse when the call is over. Such a token is
// handed out only after its revocation was made durable (a sealed
// grant_revocations row and a revoke job RevokeAfterUseBackstop later, one
// transaction); when that write fails, the token is revoked at once and
// not returned. Errors:
//   - *ConsentRequiredError: no grant, needs_reauth, missing scopes, or
//     revoked (errors.Is(err, ErrRevoked)); it carries the consent URL;
//   - *RetryableError: upstream or IdP unreachable, 5xx/429 (RetryAfter),
//     a refresh elsewhere did not settle within the wait timeout, or a
//     single-use token could not be recorded for revocation (the database);
//   - *OAuthError: the upstream or IdP refused (e.g. a refused exchange);
//   - ErrNotBrokered, ErrInvalid (bad user), ErrNotFound (no such upstream).
func (b *Broker) Token(ctx context.Context, tenantID, upstreamID uuid.UUID, user User, scopes []string) (Token, error) {
	req := normScopes(scopes)
	key := cacheKey{tenant: tenantID, upstream: upstreamID, issuer: user.Issuer, subject: user.Subject, scopes: hashScopes(req)}
	now := b.now()
	if tok, ok := b.cache.get(key, req, now.UnixNano(), user.RawTokenA); ok {
		if !tok.minted() || !b.revokesAfterUse(ctx, tenantID, upstreamID, now) {
			return tok, nil
		}
		// Cached before the upstream turned RevokeAfterUse on: drop it and
		// mint one for this call. It is not revoked (calls that got it from
		// the cache may still be using it); it expires on its own.
		b.cache.drop(key)
	}
	return b.tokenSlow(ctx, key, user, req)
}

// revokesAfterUse reports whether the upstream's registration has
// RevokeAfterUse: from the registration cache while it is fresh (no copy,
// no I/O), else re-read. When it can't be read, the last known answer
// holds for another UpstreamTTL, so that a database outage neither stops
// warm calls nor makes each of them wait for the database.
func (b *Broker) revokesAfterUse(ctx context.Context, tenantID, upstreamID uuid.UUID, now time.Time) bool {
	k := [2]uuid.UUID{tenantID, upstreamID}
	b.upMu.RLock()
	c := b.upCache[k]
	b.upMu.RUnlock()
	if c != nil && now.Sub(c.fetched) < b.upTTL {
		return c.up.RevokeAfterUse
	}
	up, err := b.upstream(ctx, tenantID, upstreamID)
	if err == nil {
		return up.RevokeAfterUse
	}
	if c == nil {
		return false
	}
	b.upMu.Lock()
	if b.upCache[k] == c {
		b.upCache[k] = &cachedUpstream{up: c.up, fetched: now}
	}
	b.upMu.Unlock()
	return c.up.RevokeAfterUse
}

// keep caches tok for later calls of the same user, upstream and scope set
// (bound to Token A when tokenA is not 0), or, when tok is single-use,
// keeps it out of the cache and hands it out only once its revocation is
// durable (holdSingleUse).
func (b *Broker) keep(ctx context.Context, up tenants.Upstream, key cacheKey, req []string, tok Token, tokenA uint64, now time.Time, gen uint64) (Token, error) {
	if singleUse(up, tok) {
		return b.holdSingleUse(ctx, up, tok)
	}
	b.cache.put(key, req, key.tenant, tok, tokenA, b.margin, now, gen)
	return tok, nil
}

func (b *Broker) tokenSlow(ctx context.Context, key cacheKey, user User, req []string) (Token, error) {
	if err := validUser(user); err != nil {
		return Token{}, err
	}
	up, err := b.upstream(ctx, key.tenant, key.upstream)
	if err != nil {
		return Token{}, err
	}
	var fn func(context.Context) (Token, error)
	switch up.AuthMode {
	case tenants.AuthOAuth2:
		fn = func(ctx context.Context) (Token, error) { return b.obtain(ctx, up, key, req) }
	case tenants.AuthTokenExchange:
		fn = func(ctx context.Context) (Token, error) { return b.exchangeToken(ctx, up, key, user, req) }
	default:
		return Token{}, fmt.Errorf("consent: upstream %s: %w", up.Slug, ErrNotBrokered)
	}
	if b.noSingleFlight || up.RevokeAfterUse {
		// With RevokeAfterUse a minted token serves one call, so callers
		// can't share a flight's token. Refreshes of one grant still take
		// turns under its lease.
		return fn(ctx)
	}
	// Callers for the same user, upstream and scope set share one flight.
	// The flight outlives a caller that gives up, bounded by its own deadline.
	fk := key.tenant.String() + "|" + key.upstream.String() + "|" + key.issuer + "|" + key.subject + "|" + strings.Join(req, " ")
	if up.AuthMode == tenants.AuthTokenExchange {
		fk += "|" + strconv.FormatUint(b.cache.hashTokenA(user.RawTokenA), 36)
	}
	ch := b.sf.DoChan(fk, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.wait+b.timeout)
		defer cancel()
		return fn(fctx)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return Token{}, r.Err
		}
		return r.Val.(Token), nil
	case <-ctx.Done():
		return Token{}, fmt.Errorf("consent: token: %w", ctx.Err())
	}
}

// upstream returns the registration, cached for UpstreamTTL.
func (b *Broker) upstream(ctx context.Context, tenantID, id uuid.UUID) (tenants.Upstream, error) {
	k := [2]uuid.UUID{tenantID, id}
	now := b.now()
	b.upMu.RLock()
	c, ok := b.upCache[k]
	b.upMu.RUnlock()
	if ok && now.Sub(c.fetched) < b.upTTL {
		return c.up, nil
	}
	up, err := b.upstreams.Upstream(ctx, tenantID, id)
	if err != nil {
		return tenants.Upstream{}, fmt.Errorf("consent: upstream %s: %w", id, err)
	}
	if up.TenantID != tenantID || up.ID != id {
		return tenants.Upstream{}, fmt.Errorf("consent: upstream %s: %w", id, ErrNotFound)
	}
	b.upMu.Lock()
	b.upCache[k] = &cachedUpstream{up: up, fetched: now}
	b.upMu.Unlock()
	return up, nil
}

// consentRequired builds the error for up, asking for scopes.
func (b *Broker) consentRequired(ctx context.Context, up tenants.Upstream, grantID uuid.UUID, reason, detail string, scopes, missing []string) *ConsentRequiredError {
	return &ConsentRequiredError{
		TenantID: up.TenantID, UpstreamID: up.ID, GrantID: grantID, Reason: reason, Detail: detail,
		ConsentURL: b.consent(ctx, up.TenantID, up, scopes), MissingScopes: missing,
	}
}

// blockedFor reports how long the upstream's token endpoint still asked us
// to wait (Retry-After), zero when it did not.
func (b *Broker) blockedFor(upstreamID uuid.UUID, now time.Time) time.Duration {
	b.upMu.Lock()
	defer b.upMu.Unlock()
	until, ok := b.blocked[upstreamID]
	if !ok {
		return 0
	}
	if !now.Before(until) {
		delete(b.blocked, upstreamID)
		return 0
	}
	return until.Sub(now)
}

func (b *Broker) block(upstreamID uuid.UUID, d time.Duration) {
	if d <= 0 {
		return
	}
	b.upMu.Lock()
	defer b.upMu.Unlock()
	if until := b.now().Add(d); until.After(b.blocked[upstreamID]) {
		b.blocked[upstreamID] = until
	}
}

// Revoke revokes the user's grant (see Vault.Revoke) and drops it from this
// broker's cache at once; other brokers drop it on the notification.
func (b *Broker) Revoke(ctx context.Context, tenantID, grantID uuid.UUID, by User) error {
	err := b.vault.Revoke(ctx, tenantID, grantID, by)
	b.cache.invalidateGrant(grantID)
	return err
}
