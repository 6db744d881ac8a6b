package tokena_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/tenants/tokena"
)

// TestKeyRotation: a token signed by a key published after the JWKS was
// cached causes exactly one refetch, shared by concurrent callers; more
// unknown kids within the refetch interval cause none.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.verify(t, b.mint(t, idp.MintRequest{}))
	require.NoError(t, err)
	require.EqualValues(t, 1, b.idp.JWKSFetchCount())

	newKID, err := b.idp.RotateKey()
	require.NoError(t, err)
	tok := b.mint(t, idp.MintRequest{})

	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() { _, errs[i] = b.verify(t, tok) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, 2, b.idp.JWKSFetchCount(), "one refetch for all concurrent callers")

	// Unknown kids within the interval: refused, no refetch.
	priv, _ := idpKey(b.idp)
	for _, kid := range []string{"unknown-1", "unknown-2", "unknown-3"} {
		forged := forge(t, map[string]any{"alg": "RS256", "kid": kid, "typ": "at+jwt"}, baseClaims(b.idp.URL(), b.clock.Now()), rs256(t, priv))
		_, err := b.verify(t, forged)
		requireReason(t, err, tokena.ReasonUnknownKey)
	}
	require.EqualValues(t, 2, b.idp.JWKSFetchCount(), "rate limited within RefetchInterval")

	// A key rotated in within the interval waits for it…
	_, err = b.idp.RotateKey()
	require.NoError(t, err)
	tok2 := b.mint(t, idp.MintRequest{})
	_, err = b.verify(t, tok2)
	requireReason(t, err, tokena.ReasonUnknownKey)
	require.EqualValues(t, 2, b.idp.JWKSFetchCount())

	// …and verifies once it has passed, with one more fetch.
	b.clock.Advance(tokena.DefaultRefetchInterval)
	_, err = b.verify(t, tok2)
	require.NoError(t, err)
	require.EqualValues(t, 3, b.idp.JWKSFetchCount())
	_ = newKID
}

// TestJWKSDown: while the JWKS endpoint answers 503, cached keys keep
// verifying new tokens, even past KeysMaxAge.
func TestJWKSDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.verify(t, b.mint(t, idp.MintRequest{}))
	require.NoError(t, err)
	require.EqualValues(t, 1, b.jwks.hits.Load())

	b.jwks.down.Store(true)
	_, err = b.verify(t, b.mint(t, idp.MintRequest{}))
	require.NoError(t, err, "a new token under a cached key needs no fetch")
	require.EqualValues(t, 1, b.jwks.hits.Load())

	// The keys go stale: the refresh fails, the cached keys still verify.
	b.clock.Advance(tokena.DefaultKeysMaxAge + time.Second)
	_, err = b.verify(t, b.mint(t, idp.MintRequest{}))
	require.NoError(t, err)
	require.EqualValues(t, 2, b.jwks.hits.Load(), "one refresh attempt")
	_, err = b.verify(t, b.mint(t, idp.MintRequest{}))
	require.NoError(t, err)
	require.EqualValues(t, 2, b.jwks.hits.Load(), "a failed refresh is not retried within RefetchInterval")

	// A rotated key can't be learnt while the endpoint is down.
	_, err = b.idp.RotateKey()
	require.NoError(t, err)
	rotated := b.mint(t, idp.MintRequest{})
	_, err = b.verify(t, rotated)
	requireReason(t, err, tokena.ReasonUnknownKey)
	require.Contains(t, err.Error(), "503", "the logged detail says why")
	var e *tokena.Error
	require.ErrorAs(t, err, &e)
	require.NotContains(t, e.PublicMessage(), "503", "the public message does not")

	// Back up: after the interval the new key is fetched.
	b.jwks.down.Store(false)
	b.clock.Advance(tokena.DefaultRefetchInterval)
	_, err = b.verify(t, rotated)
	require.NoError(t, err)
}

// TestJWKSUnavailable: with nothing cached and the endpoint down, tokens
// can't be checked: ErrUnavailable, and no retry storm.
func TestJWKSUnavailable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.jwks.down.Store(true)
	for range 3 {
		_, err := b.verify(t, b.mint(t, idp.MintRequest{}))
		requireReason(t, err, tokena.ReasonJWKSUnavailable)
	}
	require.EqualValues(t, 1, b.jwks.hits.Load(), "failed fetches back off for RefetchInterval")

	b.jwks.down.Store(false)
	b.clock.Advance(tokena.DefaultRefetchInterval)
	_, err := b.verify(t, b.mint(t, idp.MintRequest{}))
	require.NoError(t, err)
}

func TestWarm(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.v.Warm(t.Context(), b.reg.JWKSURI))
	require.NoError(t, b.v.Warm(t.Context(), b.reg.JWKSURI), "Warm ignores the rate limit")
	require.EqualValues(t, 2, b.jwks.hits.Load())

	_, err := b.verify(t, b.mint(t, idp.MintRequest{}))
	require.NoError(t, err)
	require.EqualValues(t, 2, b.jwks.hits.Load(), "warmed keys are used")

	b.jwks.down.Store(true)
	require.Error(t, b.v.Warm(t.Context(), b.reg.JWKSURI))
	_, err = b.verify(t, b.mint(t, idp.MintRequest{}))
	require.NoError(t, err, "a failed Warm keeps the cached keys")
	require.Error(t, b.v.Warm(t.Context(), ""))
}
