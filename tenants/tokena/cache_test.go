package tokena_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/tokena"
)

// TestCacheExpiry: a cached token is served until exp+skew and refused
// from then on.
func TestCacheExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	exp := b.clock.Now().Add(2 * time.Minute)
	tok := b.mint(t, idp.MintRequest{Extra: map[string]any{"exp": exp}})
	for range 2 {
		_, err := b.verify(t, tok)
		require.NoError(t, err)
	}

	b.clock.Advance(exp.Add(testSkew - time.Second).Sub(b.clock.Now()))
	_, err := b.verify(t, tok)
	require.NoError(t, err, "1s before exp+skew")

	b.clock.Advance(time.Second)
	_, err = b.verify(t, tok)
	requireReason(t, err, tokena.ReasonExpired)
	_, err = b.verify(t, tok)
	requireReason(t, err, tokena.ReasonExpired)
}

// TestCacheRetiredKey: once a refetch shows the signing key retired, its
// cached tokens are refused.
func TestCacheRetiredKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	oldKID := b.idp.CurrentKeyID()
	old := b.mint(t, idp.MintRequest{})
	_, err := b.verify(t, old)
	require.NoError(t, err)

	_, err = b.idp.RotateKey()
	require.NoError(t, err)
	require.NoError(t, b.idp.RetireKey(oldKID))
	_, err = b.verify(t, old)
	require.NoError(t, err, "no refetch yet: the cached JWKS still has the key")

	// A token under the new key makes the verifier refetch the JWKS.
	_, err = b.verify(t, b.mint(t, idp.MintRequest{}))
	require.NoError(t, err)
	require.EqualValues(t, 2, b.idp.JWKSFetchCount())

	_, err = b.verify(t, old)
	requireReason(t, err, tokena.ReasonUnknownKey)
}

// TestCacheRetiredKeyByAge: the periodic refresh also retires cached tokens.
func TestCacheRetiredKeyByAge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	oldKID := b.idp.CurrentKeyID()
	old := b.mint(t, idp.MintRequest{})
	_, err := b.verify(t, old)
	require.NoError(t, err)

	_, err = b.idp.RotateKey()
	require.NoError(t, err)
	require.NoError(t, b.idp.RetireKey(oldKID))
	b.clock.Advance(tokena.DefaultKeysMaxAge)
	_, err = b.verify(t, b.mint(t, idp.MintRequest{})) // refreshes the stale keys
	require.NoError(t, err)

	_, err = b.verify(t, old)
	requireReason(t, err, tokena.ReasonUnknownKey)
}

// TestCacheTenantIsolation: a token cached for one registration is not
// served to a registration that differs in audience, JWKS, typ rule or
// claim mapping.
func TestCacheTenantIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other := idp.NewTestServer(t)

	tok := b.mint(t, idp.MintRequest{Type: "JWT"})
	loose := b.reg
	loose.RequireATJWT = false
	p, err := b.v.Verify(t.Context(), loose, audA, tok)
	require.NoError(t, err)
	require.Equal(t, idp.UserEngineer, p.Subject)

	// Tenant B: same IdP, its own audience.
	regB := loose
	regB.TenantID, regB.ID = regB.ID, regB.TenantID
	_, err = b.v.Verify(t.Context(), regB, audB, tok)
	requireReason(t, err, tokena.ReasonWrongAudience)

	// A registration claiming the same issuer and audience but another JWKS.
	foreign := loose
	foreign.JWKSURI = other.JWKSURL()
	_, err = b.v.Verify(t.Context(), foreign, audA, tok)
	requireReason(t, err, tokena.ReasonUnknownKey)

	// Same IdP and audience, stricter typ rule.
	strict := loose
	strict.RequireATJWT = true
	_, err = b.v.Verify(t.Context(), strict, audA, tok)
	requireReason(t, err, tokena.ReasonNotAccessToken)

	// Same IdP and audience, another claim mapping.
	byEmail := loose
	byEmail.Claims = tenants.ClaimMapping{Subject: "email"}
	p, err = b.v.Verify(t.Context(), byEmail, audA, tok)
	require.NoError(t, err)
	require.Equal(t, "engineer@acme.example", p.Subject)

	// And the first registration still gets its cached answer.
	p, err = b.v.Verify(t.Context(), loose, audA, tok)
	require.NoError(t, err)
	require.Equal(t, idp.UserEngineer, p.Subject)
}

// TestCachedPrincipalIsACopy: modifying a returned Principal does not
// change what the cache returns next.
func TestCachedPrincipalIsACopy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tok := b.mint(t, idp.MintRequest{Scopes: []string{"a", "b"}})
	for range 3 { // the first answer is computed, the next ones come from the cache
		p, err := b.verify(t, tok)
		require.NoError(t, err)
		require.Equal(t, []string{"a", "b"}, p.Scopes)
		require.Equal(t, []string{"engineering"}, p.Groups)

		p.Groups = append(p.Groups, "approvers")
		require.Equal(t, []string{"a", "b"}, p.Scopes, "appending to one slice does not spill into another")
		p.Scopes[0] = "admin"
		p.Groups[0] = "finance"
	}
}

// TestCacheBounded: a tiny cache still verifies everything correctly.
func TestCacheBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *tokena.Config) { c.CacheSize = 2 })
	var toks []string
	for range 5 {
		toks = append(toks, b.mint(t, idp.MintRequest{}))
	}
	for range 2 {
		for _, tok := range toks {
			_, err := b.verify(t, tok)
			require.NoError(t, err)
		}
	}
}
