package tokena

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/locksmithhq/locksmith/tenants"
)

// Defaults applied by [New] to zero-valued [Config] fields.
const (
	// DefaultSkew is the clock skew allowed on exp, nbf and iat.
	DefaultSkew = 30 * time.Second
	// MaxSkew is the largest Skew New accepts.
	MaxSkew = 5 * time.Minute
	// DefaultRefetchInterval is the minimum time between two JWKS refetches
	// of one JWKS URI caused by unknown kids, and the back-off after a
	// failed fetch.
	DefaultRefetchInterval = 30 * time.Second
	// DefaultKeysMaxAge is how long fetched keys are used before the next
	// token that needs them refreshes them (so retired keys stop
	// verifying within about this long even without unknown kids).
	DefaultKeysMaxAge = 10 * time.Minute
	// DefaultFetchTimeout bounds one JWKS fetch.
	DefaultFetchTimeout = 5 * time.Second
	// DefaultCacheSize is the number of verified tokens kept.
	DefaultCacheSize = 10000
)

// Config configures a [Verifier]. HTTP and Logger are required.
type Config struct {
	// HTTP fetches JWKS. Pass the SSRF-guarded client of tenants/egress
	// ((*egress.Client).HTTPClient()); its timeouts and response cap apply
	// as well as FetchTimeout.
	HTTP *http.Client
	// Logger receives JWKS fetch failures (warn) and skipped keys (debug).
	// Tokens are never logged.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Skew is the clock skew tolerated in both directions: a token is
	// expired once now >= exp+Skew, and refused while nbf or iat > now+Skew.
	// Zero means DefaultSkew (30s); negative or above MaxSkew (5m) is an
	// error.
	Skew time.Duration
	// RefetchInterval is the minimum time between unknown-kid refetches of
	// one JWKS URI, and how long a failed fetch is not retried. Zero means
	// DefaultRefetchInterval (30s).
	RefetchInterval time.Duration
	// KeysMaxAge is the age after which cached keys are refreshed by the
	// next token verification that uses them (a failed refresh keeps the
	// old keys). Zero means DefaultKeysMaxAge (10m).
	KeysMaxAge time.Duration
	// FetchTimeout bounds one JWKS fetch. Zero means DefaultFetchTimeout
	// (5s).
	FetchTimeout time.Duration
	// CacheSize is how many verified tokens are cached. Zero means
	// DefaultCacheSize (10000); negative disables the cache.
	CacheSize int
}

// Verifier verifies Token A, the agent's JWT access token issued by a
// tenant's own IdP, and maps it to a [Principal]. It caches each JWKS per
// URI and each verified token until it expires. It is safe for concurrent
// use; build one with [New] and share it across tenants.
type Verifier struct {
	http            *http.Client
	log             *slog.Logger
	now             func() time.Time
	skew            time.Duration
	refetchInterval time.Duration
	maxAge          time.Duration
	fetchTimeout    time.Duration
	cache           *cache

	setsMu sync.Mutex
	sets   map[string]*keySet
}

// New validates cfg, applies the defaults and returns a Verifier.
func New(cfg Config) (*Verifier, error) {
	switch {
	case cfg.HTTP == nil:
		return nil, errors.New("tokena: new: HTTP client is required")
	case cfg.Logger == nil:
		return nil, errors.New("tokena: new: logger is required")
	case cfg.Skew < 0 || cfg.Skew > MaxSkew:
		return nil, fmt.Errorf("tokena: new: skew %s outside 0..%s", cfg.Skew, MaxSkew)
	case cfg.RefetchInterval < 0 || cfg.KeysMaxAge < 0 || cfg.FetchTimeout < 0:
		return nil, errors.New("tokena: new: durations must not be negative")
	}
	v := &Verifier{
		http:            cfg.HTTP,
		log:             cfg.Logger,
		now:             cfg.Now,
		skew:            orDefault(cfg.Skew, DefaultSkew),
		refetchInterval: orDefault(cfg.RefetchInterval, DefaultRefetchInterval),
		maxAge:          orDefault(cfg.KeysMaxAge, DefaultKeysMaxAge),
		fetchTimeout:    orDefault(cfg.FetchTimeout, DefaultFetchTimeout),
		sets:            make(map[string]*keySet),
	}
	if v.now == nil {
		v.now = time.Now
	}
	if cfg.CacheSize >= 0 {
		v.cache = newCache(orDefault(cfg.CacheSize, DefaultCacheSize))
	}
	return v, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Verify checks raw as an access token of the IdP registration reg for
// audience (the tenant's MCP resource URL, or reg.Audience when set; the
// caller resolves it) and returns the Principal it names.
//
// A refusal is an [*Error] wrapping [ErrInvalidToken] (or [ErrUnavailable]
// when no keys could be fetched), with a public message and a [Reason].
// A registration without issuer or JWKS URI, or an empty audience, is a
// programming error and returns a plain error.
//
// Checks run cheapest first, and nothing is decoded before the size limits
// pass: size; the verified-token cache; three segments; the header (strict
// JSON, alg allow-list, no jku/x5u/jwk/x5c/crit, typ, kid syntax); the
// claims (iss, aud, exp, nbf, iat, ID-token traits, mapped claims) — all
// before any key lookup, so that a foreign, stale or malformed token never
// causes a JWKS fetch or a signature operation; then the key (JWKS cache,
// rate-limited refetch on an unknown kid) and the signature. A verified
// token is cached by its SHA-256 together with the registration's issuer,
// JWKS URI, audience, typ rule and claim mapping, until exp plus skew, and
// is served from the cache only while its signing key is still published
// in the last fetched JWKS.
func (v *Verifier) Verify(ctx context.Context, reg tenants.IdP, audience, raw string) (Principal, error) {
	if reg.Issuer == "" || reg.JWKSURI == "" || audience == "" {
		return Principal{}, fmt.Errorf("tokena: verify: registration %s needs an issuer, a JWKS URI and an audience", reg.ID)
	}
	if raw == "" {
		return Principal{}, refuse(ReasonMissing, "no token was presented")
	}
	if len(raw) > MaxTokenBytes {
		return Principal{}, refuse(ReasonTooLarge, "the token is %d bytes long; at most %d bytes are accepted", len(raw), MaxTokenBytes)
	}
	rk := regKey{
		issuer:    reg.Issuer,
		jwksURI:   reg.JWKSURI,
		audience:  audience,
		requireAT: reg.RequireATJWT,
		claims:    EffectiveClaims(reg.Preset, reg.Claims),
	}
	var ck cacheKey
	if v.cache != nil {
		ck = cacheKey{hash: tokenHash(raw), reg: rk}
		if e := v.cache.get(ck); e != nil {
			if v.now().Before(e.deadline) && !e.ks.evicted.Load() && e.ks.keys.Load().has(e.key) {
				return e.p.clone(), nil
			}
			// Expired, or its key was retired: forget it and run the full
			// checks, which give the precise refusal.
			v.cache.drop(ck, e)
		}
	}
	p, deadline, ks, k, err := v.verifyFull(ctx, rk, raw)
	if err != nil {
		return Principal{}, err
	}
	if v.cache != nil {
		v.cache.put(ck, &cacheEntry{p: p, deadline: deadline, ks: ks, key: k}, v.now())
	}
	return p.clone(), nil
}

// tokenHash is the SHA-256 of raw. Tokens up to 4 KiB (nearly all) are
// hashed from a stack copy, which saves the hot path a heap allocation.
func tokenHash(raw string) [32]byte {
	var buf [4096]byte
	if len(raw) <= len(buf) {
		return sha256.Sum256(buf[:copy(buf[:], raw)])
	}
	return sha256.Sum256([]byte(raw))
}

// verifyFull runs every check on raw and returns the Principal, the time
// until which the result may be cached, and the key that verified it.
func (v *Verifier) verifyFull(ctx context.Context, rk regKey, raw string) (Principal, time.Time, *keySet, *key, error) {
	parts, rerr := split(raw)
	if rerr != nil {
		return Principal{}, time.Time{}, nil, nil, rerr
	}
	h, rerr := parseHeader(parts.header)
	if rerr != nil {
		return Principal{}, time.Time{}, nil, nil, rerr
	}
	if rerr := checkType(h, rk.requireAT); rerr != nil {
		return Principal{}, time.Time{}, nil, nil, rerr
	}
	sig, err := b64.DecodeString(parts.signature)
	switch {
	case err != nil:
		return Principal{}, time.Time{}, nil, nil, refuse(ReasonMalformed, "the token signature is not base64url without padding")
	case len(sig) == 0:
		return Principal{}, time.Time{}, nil, nil, refuse(ReasonBadSignature, "the token is not signed")
	}
	p, exp, rerr := v.checkClaims(parts.payload, h, rk)
	if rerr != nil {
		return Principal{}, time.Time{}, nil, nil, rerr
	}
	ks := v.keySetFor(rk.jwksURI)
	k, rerr := v.lookupKey(ctx, ks, h)
	if rerr != nil {
		return Principal{}, time.Time{}, nil, nil, rerr
	}
	if !k.verify(h.alg, parts.signingInput, sig) {
		return Principal{}, time.Time{}, nil, nil, refuse(ReasonBadSignature, "the token signature does not verify with the identity provider's key %s", quote(k.kid))
	}
	return p, exp.Add(v.skew), ks, k, nil
}

// Warm fetches the JWKS at jwksURI now, whatever the rate limits (it still
// joins a fetch already in flight), so the first token of an IdP doesn't
// wait for it and retired keys are noticed. For a periodic job and the
// console's IdP check. On failure the previously cached keys are kept.
func (v *Verifier) Warm(ctx context.Context, jwksURI string) error {
	if jwksURI == "" {
		return errors.New("tokena: warm: empty JWKS URI")
	}
	if err := v.fetch(ctx, v.keySetFor(jwksURI), fetchForce); err != nil {
		return fmt.Errorf("tokena: warm %s: %w", jwksURI, err)
	}
	return nil
}
