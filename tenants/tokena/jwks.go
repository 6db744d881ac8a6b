package tokena

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// JWKS limits.
const (
	// maxJWKSBytes caps a JWKS response body.
	maxJWKSBytes = 1 << 20
	// maxJWKSKeys caps the keys taken from one JWKS; real sets have 1–10.
	maxJWKSKeys = 64
	// maxKeySets caps the JWKS URIs remembered at once; the least recently
	// used set is dropped beyond it.
	maxKeySets = 1024
	// minRSABits is the smallest RSA modulus accepted (RFC 7518 section 3.3).
	minRSABits = 2048
	// maxRSABits bounds the cost of one signature check.
	maxRSABits = 8192
)

// Errors of a JWKS fetch attempt, for logs and Error.Err.
var (
	errRateLimited = errors.New("jwks refetch skipped: rate limited")
	errBackoff     = errors.New("jwks fetch skipped: the last attempt failed recently")
	errNoKeys      = errors.New("jwks has no usable signing keys")
)

// key is one usable public signing key of a JWKS. It is immutable; a
// refetch that returns the same key material keeps the same *key, which is
// how cached tokens know their key is still published.
type key struct {
	kid string
	// alg is the JWK's alg, "" when the JWK doesn't restrict it.
	alg string
	// pub is *rsa.PublicKey, *ecdsa.PublicKey on P-256, or ed25519.PublicKey.
	pub crypto.PublicKey
}

// fits reports whether k may verify a signature made with alg. The key
// type must match the algorithm family: this, with the alg allow-list, is
// what defeats an HS256 token "signed" with an RSA public key.
func (k *key) fits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		return alg == algRS256 || alg == algPS256
	case *ecdsa.PublicKey:
		return alg == algES256 && pub.Curve == elliptic.P256()
	case ed25519.PublicKey:
		return alg == algEdDSA
	}
	return false
}

// verify checks sig over input with alg. Callers check k.fits(alg) first;
// a key of the wrong type simply fails.
func (k *key) verify(alg, input string, sig []byte) bool {
	switch alg {
	case algRS256, algPS256:
		pub, ok := k.pub.(*rsa.PublicKey)
		if !ok || len(sig) != pub.Size() {
			return false
		}
		d := sha256.Sum256([]byte(input))
		if alg == algRS256 {
			return rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig) == nil
		}
		// RFC 7518 section 3.5: the salt is as long as the hash.
		return rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	case algES256:
		// RFC 7518 section 3.4: R and S as two 32-byte big-endian integers.
		pub, ok := k.pub.(*ecdsa.PublicKey)
		if !ok || len(sig) != 64 {
			return false
		}
		d := sha256.Sum256([]byte(input))
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(pub, d[:], r, s)
	case algEdDSA:
		pub, ok := k.pub.(ed25519.PublicKey)
		return ok && len(sig) == ed25519.SignatureSize && ed25519.Verify(pub, []byte(input), sig)
	}
	return false
}

func (k *key) same(o *key) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := k.pub.(equaler)
	return ok && k.kid == o.kid && k.alg == o.alg && e.Equal(o.pub)
}

// keyMap is one successfully fetched JWKS. It is immutable once stored.
type keyMap struct {
	keys      []*key
	byKID     map[string][]*key
	fetchedAt time.Time
}

// find returns the key for a token's kid and alg. A token without kid is
// accepted only when exactly one published key fits alg, so that a
// kid-less token never costs more than one signature check.
func (m *keyMap) find(kid, alg string) (k *key, kidKnown bool) {
	if kid != "" {
		cands := m.byKID[kid]
		for _, c := range cands {
			if c.fits(alg) {
				return c, true
			}
		}
		return nil, len(cands) > 0
	}
	for _, c := range m.keys {
		if c.fits(alg) {
			if k != nil {
				return nil, false
			}
			k = c
		}
	}
	return k, false
}

// has reports whether k is still published in m.
func (m *keyMap) has(k *key) bool {
	return slices.Contains(m.byKID[k.kid], k)
}

// keySet is the cached JWKS of one URI with its fetch state. Readers load
// keys without locking; mu serializes fetch decisions.
type keySet struct {
	uri      string
	keys     atomic.Pointer[keyMap]
	evicted  atomic.Bool
	lastUsed atomic.Int64

	mu sync.Mutex
	// inflight is the fetch in progress, if any (single flight).
	inflight *fetchCall
	// lastMiss is when the last unknown-kid refetch started.
	lastMiss time.Time
	// lastFailure is when the last fetch failed; zero after a success.
	lastFailure time.Time
}

type fetchCall struct {
	done chan struct{}
	err  error
}

// fetchMode says why a JWKS fetch is wanted, which decides its rate limit.
type fetchMode int

const (
	// fetchInitial: no keys are cached yet. Waits for an in-flight fetch;
	// after a failure, tries again only once RefetchInterval has passed.
	fetchInitial fetchMode = iota
	// fetchStale: the cached keys are older than KeysMaxAge. Never waits
	// for another fetch; same failure back-off as fetchInitial.
	fetchStale
	// fetchMiss: a token names a kid that is not cached. Waits for an
	// in-flight fetch, else at most one per RefetchInterval.
	fetchMiss
	// fetchForce: Warm. Waits for an in-flight fetch, else always fetches.
	fetchForce
)

// keySetFor returns the key set of uri, creating it (and evicting the least
// recently used set beyond maxKeySets) if needed.
func (v *Verifier) keySetFor(uri string) *keySet {
	now := v.now().UnixNano()
	v.setsMu.Lock()
	defer v.setsMu.Unlock()
	ks, ok := v.sets[uri]
	if !ok {
		if len(v.sets) >= maxKeySets {
			var oldest *keySet
			for _, s := range v.sets {
				if oldest == nil || s.lastUsed.Load() < oldest.lastUsed.Load() {
					oldest = s
				}
			}
			oldest.evicted.Store(true)
			delete(v.sets, oldest.uri)
		}
		ks = &keySet{uri: uri}
		v.sets[uri] = ks
	}
	ks.lastUsed.Store(now)
	return ks
}

// lookupKey finds the key that must have signed a token with header h,
// fetching the JWKS as the fetch modes allow.
func (v *Verifier) lookupKey(ctx context.Context, ks *keySet, h header) (*key, *Error) {
	m := ks.keys.Load()
	if m == nil {
		err := v.fetch(ctx, ks, fetchInitial)
		if m = ks.keys.Load(); m == nil {
			return nil, &Error{Reason: ReasonJWKSUnavailable, Message: "the identity provider's signing keys could not be fetched; try again later", Err: err}
		}
	} else if v.now().Sub(m.fetchedAt) >= v.maxAge {
		_ = v.fetch(ctx, ks, fetchStale) // failures are logged; the cached keys stay
		m = ks.keys.Load()
	}
	k, kidKnown := m.find(h.kid, h.alg)
	if k != nil {
		return k, nil
	}
	if kidKnown {
		return nil, refuse(ReasonUnknownKey, "the identity provider's key %s is not a key for alg %s", quote(h.kid), h.alg)
	}
	if h.kid == "" {
		return nil, refuse(ReasonUnknownKey, "the token has no kid and the identity provider publishes no single key for alg %s", h.alg)
	}
	err := v.fetch(ctx, ks, fetchMiss)
	if k, _ = ks.keys.Load().find(h.kid, h.alg); k != nil {
		return k, nil
	}
	return nil, &Error{Reason: ReasonUnknownKey, Message: fmt.Sprintf("the token was signed with key %s, which the identity provider does not publish", quote(h.kid)), Err: err}
}

// fetch refreshes ks from its URI, at most one fetch at a time per key set;
// mode decides whether to wait for an in-flight fetch and how fetches are
// rate limited. The fetch itself runs under its own timeout and is not
// cancelled with ctx, since other callers may be waiting for it; ctx only
// ends this caller's wait.
func (v *Verifier) fetch(ctx context.Context, ks *keySet, mode fetchMode) error {
	ks.mu.Lock()
	if c := ks.inflight; c != nil {
		ks.mu.Unlock()
		if mode == fetchStale {
			return nil
		}
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	now := v.now()
	switch mode {
	case fetchInitial, fetchStale:
		if !ks.lastFailure.IsZero() && now.Sub(ks.lastFailure) < v.refetchInterval {
			ks.mu.Unlock()
			return errBackoff
		}
	case fetchMiss:
		if !ks.lastMiss.IsZero() && now.Sub(ks.lastMiss) < v.refetchInterval {
			ks.mu.Unlock()
			return errRateLimited
		}
		ks.lastMiss = now
	}
	c := &fetchCall{done: make(chan struct{})}
	ks.inflight = c
	ks.mu.Unlock()

	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.fetchTimeout)
	m, err := v.fetchJWKS(fctx, ks.uri)
	cancel()

	ks.mu.Lock()
	if err != nil {
		ks.lastFailure = v.now()
		v.log.Warn("jwks fetch failed", "jwks_uri", ks.uri, "err", err)
	} else {
		m.fetchedAt = v.now()
		if old := ks.keys.Load(); old != nil {
			m.keepIdentity(old)
		}
		ks.keys.Store(m)
		ks.lastFailure = time.Time{}
	}
	ks.inflight = nil
	c.err = err
	ks.mu.Unlock()
	close(c.done)
	return err
}

// keepIdentity replaces keys of m that are unchanged since old by old's
// *key, so that cached tokens signed by them stay valid across refetches.
func (m *keyMap) keepIdentity(old *keyMap) {
	for i, k := range m.keys {
		for _, o := range old.byKID[k.kid] {
			if k.same(o) {
				m.keys[i] = o
				break
			}
		}
	}
	m.index()
}

func (m *keyMap) index() {
	m.byKID = make(map[string][]*key, len(m.keys))
	for _, k := range m.keys {
		m.byKID[k.kid] = append(m.byKID[k.kid], k)
	}
}

// fetchJWKS GETs and parses one JWKS with the injected (SSRF-guarded)
// client.
func (v *Verifier) fetchJWKS(ctx context.Context, uri string) (*keyMap, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := v.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks get: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks get: HTTP status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("jwks read: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("jwks read: larger than %d bytes", maxJWKSBytes)
	}
	m, skipped, err := parseJWKS(body)
	if err != nil {
		return nil, err
	}
	if skipped > 0 {
		v.log.Debug("jwks keys skipped", "jwks_uri", uri, "skipped", skipped, "usable", len(m.keys))
	}
	return m, nil
}

// parseJWKS keeps the keys usable for signature verification: use absent
// or "sig", key_ops absent or containing "verify", public, RSA of 2048 to
// 8192 bits, EC on P-256 or Ed25519, with an acceptable kid. Symmetric
// ("oct") keys, private keys and anything unparsable are skipped, not
// fatal, so one odd key can't take an IdP's whole set down.
func parseJWKS(body []byte) (*keyMap, int, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, 0, fmt.Errorf("jwks parse: %w", err)
	}
	m := &keyMap{}
	skipped := 0
	for i, raw := range set.Keys {
		if i >= maxJWKSKeys {
			skipped += len(set.Keys) - i
			break
		}
		k, ok := parseJWK(raw)
		if !ok {
			skipped++
			continue
		}
		m.keys = append(m.keys, k)
	}
	if len(m.keys) == 0 {
		return nil, skipped, errNoKeys
	}
	m.index()
	return m, skipped, nil
}

func parseJWK(raw json.RawMessage) (*key, bool) {
	var meta struct {
		Use    *string  `json:"use"`
		KeyOps []string `json:"key_ops"`
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, false
	}
	if meta.Use != nil && *meta.Use != "sig" {
		return nil, false
	}
	if meta.KeyOps != nil && !slices.Contains(meta.KeyOps, "verify") {
		return nil, false
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil || !jwk.IsPublic() || !jwk.Valid() {
		return nil, false
	}
	if jwk.KeyID != "" && !validKID(jwk.KeyID) {
		return nil, false
	}
	switch pub := jwk.Key.(type) {
	case *rsa.PublicKey:
		if n := pub.N.BitLen(); n < minRSABits || n > maxRSABits {
			return nil, false
		}
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, false
		}
	case ed25519.PublicKey:
	default:
		return nil, false
	}
	return &key{kid: jwk.KeyID, alg: jwk.Algorithm, pub: jwk.Key}, true
}
