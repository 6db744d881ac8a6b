package tokena_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/tokena"
)

func TestVerifyValid(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tok := b.mint(t, idp.MintRequest{Scopes: []string{"tasks:read", "tasks:write"}})

	p, err := b.verify(t, tok)
	require.NoError(t, err)
	require.Equal(t, b.idp.URL(), p.Issuer)
	require.Equal(t, idp.UserEngineer, p.Subject)
	require.Equal(t, "engineer@acme.example", p.Email)
	require.Equal(t, []string{"engineering"}, p.Groups)
	require.Equal(t, []string{"tasks:read", "tasks:write"}, p.Scopes)
	require.Equal(t, idp.ClientMCPAgent, p.AgentClientID)
	require.Nil(t, p.Act)
	require.True(t, strings.HasPrefix(p.TokenID, "at_"), p.TokenID)
	require.WithinDuration(t, time.Now().Add(time.Hour), p.ExpiresAt, 5*time.Second)

	require.True(t, p.HasScopes())
	require.True(t, p.HasScopes("tasks:read", "tasks:write"))
	require.False(t, p.HasScopes("tasks:read", "tasks:admin"))
	require.Equal(t, []string{"tasks:admin"}, p.MissingScopes("tasks:read", "tasks:admin"))
	require.True(t, p.InGroup("engineering"))
	require.False(t, p.InGroup("finance"))
}

func TestVerifyRegistrationErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tok := b.mint(t, idp.MintRequest{})
	for name, reg := range map[string]tenants.IdP{
		"no issuer": {JWKSURI: b.reg.JWKSURI},
		"no jwks":   {Issuer: b.reg.Issuer},
	} {
		_, err := b.v.Verify(t.Context(), reg, audA, tok)
		require.Error(t, err, name)
		require.Empty(t, tokena.ReasonOf(err), "%s is a programming error, not a refusal", name)
	}
	_, err := b.v.Verify(t.Context(), b.reg, "", tok)
	require.Error(t, err)
	require.Empty(t, tokena.ReasonOf(err))
}

func TestVerifyMalformed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	priv, kid := idpKey(b.idp)
	hdr := map[string]any{"alg": "RS256", "kid": kid, "typ": "at+jwt"}
	good := baseClaims(b.idp.URL(), b.clock.Now())
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for k, v := range good {
			c[k] = v
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	valid := forge(t, hdr, good, rs256(t, priv))
	h, p, s := func() (string, string, string) { x := strings.Split(valid, "."); return x[0], x[1], x[2] }()

	deep := map[string]any{"sub": "actor-0"}
	for i := 1; i <= 9; i++ {
		deep = map[string]any{"sub": "actor", "act": deep}
	}

	tests := []struct {
		name string
		raw  string
		want tokena.Reason
	}{
		{"empty", "", tokena.ReasonMissing},
		{"not a jwt", "not a token", tokena.ReasonMalformed},
		{"two parts", h + "." + p, tokena.ReasonMalformed},
		{"four parts", valid + ".x", tokena.ReasonMalformed},
		{"jwe", "a.b.c.d.e", tokena.ReasonMalformed},
		{"empty header", "." + p + "." + s, tokena.ReasonMalformed},
		{"empty claims", h + ".." + s, tokena.ReasonMalformed},
		{"too large", strings.Repeat("a", tokena.MaxTokenBytes+1), tokena.ReasonTooLarge},
		{"header too large", enc(t, map[string]any{"alg": "RS256", "kid": kid, "pad": strings.Repeat("x", 3000)}) + "." + p + "." + s, tokena.ReasonTooLarge},
		{"signature too large", h + "." + p + "." + strings.Repeat("A", 2000), tokena.ReasonTooLarge},
		{"header not base64", "!!!." + p + "." + s, tokena.ReasonMalformed},
		{"header padded", h + "=." + p + "." + s, tokena.ReasonMalformed},
		{"header not json", enc(t, "hello") + "." + p + "." + s, tokena.ReasonMalformed},
		{"header an array", enc(t, "[]") + "." + p + "." + s, tokena.ReasonMalformed},
		{"header duplicate alg", forge(t, `{"alg":"RS256","alg":"RS256","kid":"`+kid+`","typ":"at+jwt"}`, good, rs256(t, priv)), tokena.ReasonMalformed},
		{"header trailing data", forge(t, `{"alg":"RS256","kid":"`+kid+`","typ":"at+jwt"} {}`, good, rs256(t, priv)), tokena.ReasonMalformed},
		{"alg null", forge(t, `{"alg":null,"kid":"`+kid+`","typ":"at+jwt"}`, good, rs256(t, priv)), tokena.ReasonUnsupportedAlg},
		{"typ not a string", forge(t, `{"alg":"RS256","kid":"`+kid+`","typ":1}`, good, rs256(t, priv)), tokena.ReasonMalformed},
		{"claims not base64", h + ".***." + s, tokena.ReasonMalformed},
		{"claims not json", h + "." + enc(t, "{") + "." + s, tokena.ReasonMalformed},
		{"claims an array", forge(t, hdr, []any{good}, rs256(t, priv)), tokena.ReasonMalformed},
		{"claims duplicate sub", forge(t, hdr, `{"iss":"`+b.idp.URL()+`","aud":"`+audA+`","exp":9999999999,"sub":"a","sub":"b"}`, rs256(t, priv)), tokena.ReasonMalformed},
		{"signature not base64", h + "." + p + ".$$$", tokena.ReasonMalformed},
		{"no exp", forge(t, hdr, with("exp", nil), rs256(t, priv)), tokena.ReasonMalformed},
		{"exp a string", forge(t, hdr, with("exp", "tomorrow"), rs256(t, priv)), tokena.ReasonMalformed},
		{"exp beyond year 9999", forge(t, hdr, with("exp", 1e300), rs256(t, priv)), tokena.ReasonMalformed},
		{"iat negative", forge(t, hdr, with("iat", -5), rs256(t, priv)), tokena.ReasonMalformed},
		{"no sub", forge(t, hdr, with("sub", nil), rs256(t, priv)), tokena.ReasonMalformed},
		{"empty sub", forge(t, hdr, with("sub", ""), rs256(t, priv)), tokena.ReasonMalformed},
		{"sub a number", forge(t, hdr, with("sub", 42), rs256(t, priv)), tokena.ReasonMalformed},
		{"aud a number", forge(t, hdr, with("aud", 42), rs256(t, priv)), tokena.ReasonMalformed},
		{"scope a number", forge(t, hdr, with("scope", 42), rs256(t, priv)), tokena.ReasonMalformed},
		{"groups of objects", forge(t, hdr, with("groups", []any{map[string]any{}}), rs256(t, priv)), tokena.ReasonMalformed},
		{"act not an object", forge(t, hdr, with("act", "agent"), rs256(t, priv)), tokena.ReasonMalformed},
		{"act without sub", forge(t, hdr, with("act", map[string]any{"client_id": "x"}), rs256(t, priv)), tokena.ReasonMalformed},
		{"act nested too deep", forge(t, hdr, with("act", deep), rs256(t, priv)), tokena.ReasonMalformed},
	}
	t.Run("refused", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				_, err := b.verify(t, tc.raw)
				requireReason(t, err, tc.want)
			})
		}
	})
	require.Zero(t, b.jwks.hits.Load(), "malformed tokens are refused before any JWKS fetch")
	// The control: the same parts, untouched, verify.
	_, err := b.verify(t, valid)
	require.NoError(t, err)
}

func TestVerifyExpired(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.verify(t, b.mint(t, idp.MintRequest{Lifetime: -time.Hour}))
	requireReason(t, err, tokena.ReasonExpired)
}

func TestVerifyNotBefore(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.verify(t, b.mint(t, idp.MintRequest{Extra: map[string]any{"nbf": b.clock.Now().Add(time.Hour)}}))
	requireReason(t, err, tokena.ReasonNotYetValid)
}

func TestVerifyIssuedInFuture(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.verify(t, b.mint(t, idp.MintRequest{Extra: map[string]any{"iat": b.clock.Now().Add(time.Hour)}}))
	requireReason(t, err, tokena.ReasonNotYetValid)
}

// TestVerifySkewEdges checks exp, nbf and iat one second inside and one
// second outside the configured skew (and exactly on it).
func TestVerifySkewEdges(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := b.clock.Now()
	tests := []struct {
		name  string
		claim string
		at    time.Time
		want  tokena.Reason // "" means accepted
	}{
		{"exp 1s inside skew", "exp", now.Add(-testSkew + time.Second), ""},
		{"exp exactly skew ago", "exp", now.Add(-testSkew), tokena.ReasonExpired},
		{"exp 1s outside skew", "exp", now.Add(-testSkew - time.Second), tokena.ReasonExpired},
		{"nbf 1s inside skew", "nbf", now.Add(testSkew - time.Second), ""},
		{"nbf exactly skew ahead", "nbf", now.Add(testSkew), ""},
		{"nbf 1s outside skew", "nbf", now.Add(testSkew + time.Second), tokena.ReasonNotYetValid},
		{"iat 1s inside skew", "iat", now.Add(testSkew - time.Second), ""},
		{"iat 1s outside skew", "iat", now.Add(testSkew + time.Second), tokena.ReasonNotYetValid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			extra := map[string]any{tc.claim: tc.at}
			if tc.claim == "exp" {
				extra["iat"] = now.Add(-time.Hour)
			}
			_, err := b.verify(t, b.mint(t, idp.MintRequest{Extra: extra}))
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			requireReason(t, err, tc.want)
		})
	}
}

func TestVerifyWrongIssuer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, iss := range map[string]any{
		"other":          "https://evil.example",
		"trailing slash": b.idp.URL() + "/",
		"upper case":     strings.ToUpper(b.idp.URL()),
		"missing":        nil,
		"not a string":   []string{b.idp.URL()},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := b.verify(t, b.mint(t, idp.MintRequest{Extra: map[string]any{"iss": iss}}))
			requireReason(t, err, tokena.ReasonWrongIssuer)
		})
	}
}

func TestVerifyWrongAudience(t *testing.T) {
	t.Parallel()
	b := setup(t)

	_, err := b.verify(t, b.mint(t, idp.MintRequest{Audience: []string{audB}}))
	requireReason(t, err, tokena.ReasonWrongAudience)
	var e *tokena.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, "the token was issued for a different audience (expected "+audA+")", e.PublicMessage())
	require.NotContains(t, e.PublicMessage(), audB)

	for name, aud := range map[string]any{
		"missing":        nil,
		"trailing slash": audA + "/",
		"prefix":         "https://locksmith.example/t/acme",
		"empty array":    []string{},
	} {
		_, err := b.verify(t, b.mint(t, idp.MintRequest{Extra: map[string]any{"aud": aud}}))
		requireReason(t, err, tokena.ReasonWrongAudience)
		_ = name
	}

	// Scheme and host are case-insensitive; the path is not.
	_, err = b.verify(t, b.mint(t, idp.MintRequest{Audience: []string{"HTTPS://Locksmith.EXAMPLE/t/acme/mcp"}}))
	require.NoError(t, err)
	_, err = b.verify(t, b.mint(t, idp.MintRequest{Audience: []string{"https://locksmith.example/t/ACME/mcp"}}))
	requireReason(t, err, tokena.ReasonWrongAudience)
	_, err = b.verify(t, b.mint(t, idp.MintRequest{Audience: []string{"https://user@locksmith.example/t/acme/mcp"}}))
	requireReason(t, err, tokena.ReasonWrongAudience)

	// The control: an array that contains tenant A's audience is accepted.
	_, err = b.verify(t, b.mint(t, idp.MintRequest{Audience: []string{audB, audA}}))
	require.NoError(t, err)
}

// TestVerifyCrossTenant verifies every tenant's token at every tenant's
// endpoint: only a tenant's own token passes.
func TestVerifyCrossTenant(t *testing.T) {
	t.Parallel()
	clock := newClock()
	v := newVerifier(t, clock)
	type tenant struct {
		idp *idp.IdP
		reg tenants.IdP
		aud string
	}
	var ts []tenant
	for i, aud := range []string{audA, audB, "https://locksmith.example/t/initech/mcp"} {
		_ = i
		p := idp.NewTestServer(t)
		ts = append(ts, tenant{idp: p, reg: registration(p.URL(), p.JWKSURL()), aud: aud})
	}
	for i, from := range ts {
		tok, err := from.idp.MintAccessToken(idp.MintRequest{User: idp.UserEngineer, Audience: []string{from.aud}})
		require.NoError(t, err)
		for j, at := range ts {
			_, err := v.Verify(t.Context(), at.reg, at.aud, tok)
			if i == j {
				require.NoError(t, err)
				continue
			}
			requireReason(t, err, tokena.ReasonWrongIssuer)
		}
	}

	// Tenant B's IdP forging tenant A's issuer and audience: its key is not
	// in A's JWKS.
	before := ts[0].idp.JWKSFetchCount()
	forged, err := ts[1].idp.MintAccessToken(idp.MintRequest{User: idp.UserEngineer, Audience: []string{audA}, Extra: map[string]any{"iss": ts[0].idp.URL()}})
	require.NoError(t, err)
	_, err = v.Verify(t.Context(), ts[0].reg, audA, forged)
	requireReason(t, err, tokena.ReasonUnknownKey)
	require.LessOrEqual(t, ts[0].idp.JWKSFetchCount()-before, int64(1), "at most one refetch for the unknown kid")
}

func TestVerifySameKidOtherKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.verify(t, b.mint(t, idp.MintRequest{}))
	require.NoError(t, err)
	hits := b.jwks.hits.Load()

	other, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	_, kid := idpKey(b.idp)
	tok := forge(t, map[string]any{"alg": "RS256", "kid": kid, "typ": "at+jwt"}, baseClaims(b.idp.URL(), b.clock.Now()), rs256(t, other))
	_, err = b.verify(t, tok)
	requireReason(t, err, tokena.ReasonBadSignature)
	require.Equal(t, hits, b.jwks.hits.Load(), "a bad signature under a known kid causes no refetch")
}

func TestVerifyAlgNone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, kid := idpKey(b.idp)
	claims := baseClaims(b.idp.URL(), b.clock.Now())
	real := b.mint(t, idp.MintRequest{})
	parts := strings.Split(real, ".")

	for _, alg := range []string{"none", "None", "NONE", ""} {
		_, err := b.verify(t, forge(t, map[string]any{"alg": alg, "kid": kid, "typ": "at+jwt"}, claims, nil))
		requireReason(t, err, tokena.ReasonUnsupportedAlg)
	}
	// alg none on a real token, with its signature kept or dropped.
	noneHdr := enc(t, map[string]any{"alg": "none", "kid": kid, "typ": "at+jwt"})
	_, err := b.verify(t, noneHdr+"."+parts[1]+"."+parts[2])
	requireReason(t, err, tokena.ReasonUnsupportedAlg)
	_, err = b.verify(t, noneHdr+"."+parts[1]+".")
	requireReason(t, err, tokena.ReasonUnsupportedAlg)
	// A real header with the signature stripped.
	_, err = b.verify(t, parts[0]+"."+parts[1]+".")
	requireReason(t, err, tokena.ReasonBadSignature)
	// The real signature over other claims.
	_, err = b.verify(t, parts[0]+"."+enc(t, claims)+"."+parts[2])
	requireReason(t, err, tokena.ReasonBadSignature)
	// The control: the real token verifies.
	_, err = b.verify(t, real)
	require.NoError(t, err)
}

// TestVerifyHS256WithPublicKey forges the classic key-confusion token: HS256
// with the IdP's RSA public key, in every encoding a verifier might hand to
// HMAC, as the secret.
func TestVerifyHS256WithPublicKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	priv, kid := idpKey(b.idp)
	pub := &priv.PublicKey
	pkix, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	jwk, err := json.Marshal(jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: "RS256", Use: "sig"})
	require.NoError(t, err)
	secrets := map[string][]byte{
		"pkix pem":  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}),
		"pkcs1 pem": pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(pub)}),
		"pkix der":  pkix,
		"jwk json":  jwk,
		"modulus":   pub.N.Bytes(),
	}
	claims := baseClaims(b.idp.URL(), b.clock.Now())
	for name, secret := range secrets {
		for _, alg := range []string{"HS256", "HS384", "HS512"} {
			tok := forge(t, map[string]any{"alg": alg, "kid": kid, "typ": "at+jwt"}, claims, hs256(secret))
			_, err := b.verify(t, tok)
			requireReason(t, err, tokena.ReasonUnsupportedAlg)
			_ = name
		}
	}
	require.Zero(t, b.jwks.hits.Load(), "refused before any key lookup")
}

func TestVerifyAlgOutsideAllowList(t *testing.T) {
	t.Parallel()
	b := setup(t)
	priv, kid := idpKey(b.idp)
	claims := baseClaims(b.idp.URL(), b.clock.Now())
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	ec521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	require.NoError(t, err)

	for _, tc := range []struct {
		alg jose.SignatureAlgorithm
		key any
	}{
		{jose.RS384, priv}, {jose.RS512, priv}, {jose.PS384, priv}, {jose.PS512, priv},
		{jose.ES384, ec384}, {jose.ES512, ec521},
		{jose.HS256, []byte("0123456789abcdef0123456789abcdef")},
		{jose.HS512, []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")},
	} {
		_, err := b.verify(t, signJOSE(t, tc.alg, tc.key, kid, "at+jwt", claims))
		requireReason(t, err, tokena.ReasonUnsupportedAlg)
	}
	// Case matters: "rs256" is not RS256, even with a valid RS256 signature.
	_, err = b.verify(t, forge(t, map[string]any{"alg": "rs256", "kid": kid, "typ": "at+jwt"}, claims, rs256(t, priv)))
	requireReason(t, err, tokena.ReasonUnsupportedAlg)
	// The control: the same claims and key as RS256 verify.
	_, err = b.verify(t, forge(t, map[string]any{"alg": "RS256", "kid": kid, "typ": "at+jwt"}, claims, rs256(t, priv)))
	require.NoError(t, err)
}

// TestVerifyAlgorithms checks every accepted algorithm end to end, and that
// key type, JWK alg and JWK use are enforced, against a JWKS we control.
func TestVerifyAlgorithms(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	encKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	smallKey, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	rs384Key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)

	pubJWK := func(k any, kid, alg, use string) map[string]any {
		b, err := json.Marshal(jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: alg, Use: use})
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m))
		return m
	}
	privJWK := pubJWK(rsaKey, "private", "", "sig") // a JWKS that leaks a private key
	doc := map[string]any{"keys": []any{
		pubJWK(&rsaKey.PublicKey, "rsa", "", ""),
		pubJWK(&encKey.PublicKey, "enc", "", "enc"),
		pubJWK(&ecKey.PublicKey, "ec", "ES256", "sig"),
		pubJWK(edPub, "ed", "", "sig"),
		pubJWK(&smallKey.PublicKey, "small", "", "sig"),
		pubJWK(&rs384Key.PublicKey, "rs384", "RS384", "sig"),
		map[string]any{"kty": "oct", "kid": "oct", "k": base64.RawURLEncoding.EncodeToString([]byte("secret"))},
		map[string]any{"kty": "RSA", "kid": "ops", "key_ops": []string{"encrypt"}, "n": pubJWK(&encKey.PublicKey, "", "", "")["n"], "e": "AQAB"},
		privJWK,
		map[string]any{"kty": "unknown", "kid": "weird"},
	}}
	jwks := newStaticJWKS(t, doc)
	clock := newClock()
	v := newVerifier(t, clock)
	const issuer = "https://idp.static.example"
	reg := registration(issuer, jwks.srv.URL)
	claims := baseClaims(issuer, clock.Now())

	tests := []struct {
		name string
		alg  jose.SignatureAlgorithm
		key  any
		kid  string
		want tokena.Reason
	}{
		{"RS256", jose.RS256, rsaKey, "rsa", ""},
		{"PS256", jose.PS256, rsaKey, "rsa", ""},
		{"ES256", jose.ES256, ecKey, "ec", ""},
		{"EdDSA", jose.EdDSA, edPriv, "ed", ""},
		{"enc key ignored", jose.RS256, encKey, "enc", tokena.ReasonUnknownKey},
		{"key_ops without verify ignored", jose.RS256, encKey, "ops", tokena.ReasonUnknownKey},
		{"RSA under 2048 bits ignored", jose.RS256, smallKey, "small", tokena.ReasonUnknownKey},
		{"published private key ignored", jose.RS256, rsaKey, "private", tokena.ReasonUnknownKey},
		{"JWK alg RS384 is not for RS256", jose.RS256, rs384Key, "rs384", tokena.ReasonUnknownKey},
		{"ES256 under an RSA kid", jose.ES256, ecKey, "rsa", tokena.ReasonUnknownKey},
		{"RS256 under an EC kid", jose.RS256, rsaKey, "ec", tokena.ReasonUnknownKey},
		{"EdDSA under an RSA kid", jose.EdDSA, edPriv, "rsa", tokena.ReasonUnknownKey},
		{"ES256 signed by another EC key", jose.ES256, mustEC(t), "ec", tokena.ReasonBadSignature},
		{"EdDSA signed by another key", jose.EdDSA, mustEd(t), "ed", tokena.ReasonBadSignature},
		{"PS256 signed by another key", jose.PS256, encKey, "rsa", tokena.ReasonBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := v.Verify(t.Context(), reg, audA, signJOSE(t, tc.alg, tc.key, tc.kid, "at+jwt", claims))
			if tc.want == "" {
				require.NoError(t, err)
				require.Equal(t, idp.UserEngineer, p.Subject)
				return
			}
			requireReason(t, err, tc.want)
		})
	}
}

func mustEC(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

func mustEd(t *testing.T) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return k
}

// TestVerifyNoKid: a token without kid is accepted only while exactly one
// published key fits its alg.
func TestVerifyNoKid(t *testing.T) {
	t.Parallel()
	b := setup(t)
	priv, _ := idpKey(b.idp)
	tok := forge(t, map[string]any{"alg": "RS256", "typ": "at+jwt"}, baseClaims(b.idp.URL(), b.clock.Now()), rs256(t, priv))
	_, err := b.verify(t, tok)
	require.NoError(t, err)

	_, err = b.idp.RotateKey()
	require.NoError(t, err)
	b.clock.Advance(tokena.DefaultKeysMaxAge) // refresh: now two keys
	tok = forge(t, map[string]any{"alg": "RS256", "typ": "at+jwt"}, baseClaims(b.idp.URL(), b.clock.Now()), rs256(t, priv))
	_, err = b.verify(t, tok)
	requireReason(t, err, tokena.ReasonUnknownKey)
}

func TestVerifyTokenType(t *testing.T) {
	t.Parallel()
	b := setup(t)
	loose := b.reg
	loose.RequireATJWT = false

	idToken := func(req idp.MintRequest) string {
		req.User = idp.UserEngineer
		tok, err := b.idp.MintIDToken(req)
		require.NoError(t, err)
		return tok
	}
	tests := []struct {
		name      string
		raw       string
		requireAT tokena.Reason // result when RequireATJWT
		loose     tokena.Reason // result when not
	}{
		{"at+jwt", b.mint(t, idp.MintRequest{}), "", ""},
		{"application/at+jwt", b.mint(t, idp.MintRequest{Type: "application/at+jwt"}), "", ""},
		{"AT+JWT", b.mint(t, idp.MintRequest{Type: "AT+JWT"}), "", ""},
		{"typ JWT access token", b.mint(t, idp.MintRequest{Type: "JWT"}), tokena.ReasonNotAccessToken, ""},
		{"no typ", b.mint(t, idp.MintRequest{OmitType: true}), tokena.ReasonNotAccessToken, ""},
		{"typ logout+jwt", b.mint(t, idp.MintRequest{Type: "logout+jwt"}), tokena.ReasonNotAccessToken, tokena.ReasonNotAccessToken},
		{"typ oauth-id-jag+jwt", b.mint(t, idp.MintRequest{Type: "oauth-id-jag+jwt"}), tokena.ReasonNotAccessToken, tokena.ReasonNotAccessToken},
		{"ID token", idToken(idp.MintRequest{Audience: []string{audA}}), tokena.ReasonNotAccessToken, ""},
		{"ID token with nonce", idToken(idp.MintRequest{Audience: []string{audA}, Extra: map[string]any{"nonce": "n-0S6_WzA2Mj"}}), tokena.ReasonNotAccessToken, tokena.ReasonNotAccessToken},
		{"ID token issued to the audience (aud == azp)", idToken(idp.MintRequest{ClientID: audA}), tokena.ReasonNotAccessToken, tokena.ReasonNotAccessToken},
		{"access token with nonce", b.mint(t, idp.MintRequest{Extra: map[string]any{"nonce": "abc"}}), tokena.ReasonNotAccessToken, tokena.ReasonNotAccessToken},
		{"access token with at_hash", b.mint(t, idp.MintRequest{Type: "JWT", Extra: map[string]any{"at_hash": "x"}}), tokena.ReasonNotAccessToken, tokena.ReasonNotAccessToken},
		{"keycloak ID token (payload typ ID)", b.mint(t, idp.MintRequest{Type: "JWT", Extra: map[string]any{"typ": "ID"}}), tokena.ReasonNotAccessToken, tokena.ReasonNotAccessToken},
		{"keycloak access token (payload typ Bearer)", b.mint(t, idp.MintRequest{Type: "JWT", Extra: map[string]any{"typ": "Bearer"}}), tokena.ReasonNotAccessToken, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range []struct {
				reg  tenants.IdP
				want tokena.Reason
			}{{b.reg, tc.requireAT}, {loose, tc.loose}} {
				_, err := b.v.Verify(t.Context(), c.reg, audA, tc.raw)
				if c.want == "" {
					require.NoError(t, err, "RequireATJWT=%v", c.reg.RequireATJWT)
					continue
				}
				requireReason(t, err, c.want)
			}
		})
	}
}

// TestVerifyForbiddenHeaders: keys named or carried by the token itself
// are never fetched nor trusted.
func TestVerifyForbiddenHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	attackerSrv, attackerHits := counter(t)
	attacker, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	idpPriv, idpKid := idpKey(b.idp)
	attackerJWK, err := json.Marshal(jose.JSONWebKey{Key: &attacker.PublicKey, KeyID: "attacker", Algorithm: "RS256", Use: "sig"})
	require.NoError(t, err)
	cert := base64.StdEncoding.EncodeToString([]byte("not even a certificate"))
	claims := baseClaims(b.idp.URL(), b.clock.Now())

	for name, extra := range map[string]map[string]any{
		"jku":  {"jku": attackerSrv.URL + "/jwks.json"},
		"x5u":  {"x5u": attackerSrv.URL + "/cert.pem"},
		"jwk":  {"jwk": json.RawMessage(attackerJWK)},
		"x5c":  {"x5c": []string{cert}},
		"crit": {"crit": []string{"exp"}, "exp": 1},
	} {
		for _, signedBy := range []struct {
			key *rsa.PrivateKey
			kid string
		}{{attacker, "attacker"}, {idpPriv, idpKid}} {
			hdr := map[string]any{"alg": "RS256", "kid": signedBy.kid, "typ": "at+jwt"}
			for k, v := range extra {
				hdr[k] = v
			}
			_, err := b.verify(t, forge(t, hdr, claims, rs256(t, signedBy.key)))
			requireReason(t, err, tokena.ReasonForbiddenHeader)
			_ = name
		}
	}
	require.Zero(t, attackerHits.Load(), "no request to a URL named by a token")
	require.Zero(t, b.jwks.hits.Load(), "refused before any JWKS lookup")

	// The control: the IdP-signed token without those headers verifies.
	_, err = b.verify(t, forge(t, map[string]any{"alg": "RS256", "kid": idpKid, "typ": "at+jwt"}, claims, rs256(t, idpPriv)))
	require.NoError(t, err)
}

// TestVerifyKidInjection: hostile kids are refused with no fetch and no
// lookup; an ordinary unknown kid does cause one, which shows the count
// would notice.
func TestVerifyKidInjection(t *testing.T) {
	t.Parallel()
	b := setup(t)
	priv, _ := idpKey(b.idp)
	_, err := b.verify(t, b.mint(t, idp.MintRequest{}))
	require.NoError(t, err)
	fetches := b.idp.JWKSFetchCount()
	claims := baseClaims(b.idp.URL(), b.clock.Now())

	for kid, want := range map[any]tokena.Reason{
		"../../../../etc/passwd":    tokena.ReasonMalformed,
		"..":                        tokena.ReasonMalformed,
		`a"b`:                       tokena.ReasonMalformed,
		`' OR '1'='1`:               tokena.ReasonMalformed,
		`a\b`:                       tokena.ReasonMalformed,
		"a b":                       tokena.ReasonMalformed,
		"%2e%2e%2fkeys":             tokena.ReasonMalformed,
		"k\x00":                     tokena.ReasonMalformed,
		"k\n":                       tokena.ReasonMalformed,
		"ключ":                      tokena.ReasonMalformed,
		"":                          tokena.ReasonMalformed,
		strings.Repeat("k", 300):    tokena.ReasonMalformed,
		strings.Repeat("k", 10<<10): tokena.ReasonTooLarge,
		42:                          tokena.ReasonMalformed,
	} {
		tok := forge(t, map[string]any{"alg": "RS256", "kid": kid, "typ": "at+jwt"}, claims, rs256(t, priv))
		_, err := b.verify(t, tok)
		requireReason(t, err, want)
	}
	require.Equal(t, fetches, b.idp.JWKSFetchCount(), "no JWKS fetch for a hostile kid")

	tok := forge(t, map[string]any{"alg": "RS256", "kid": "plain-unknown-kid", "typ": "at+jwt"}, claims, rs256(t, priv))
	_, err = b.verify(t, tok)
	requireReason(t, err, tokena.ReasonUnknownKey)
	require.Equal(t, fetches+1, b.idp.JWKSFetchCount(), "an ordinary unknown kid is refetched once")
}
