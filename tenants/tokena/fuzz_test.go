package tokena_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/tenants/tokena"
)

// FuzzVerify feeds arbitrary strings to Verify. It must never panic, every
// refusal must be an *Error, and every accepted token must independently
// verify (go-jose, the IdP's published keys, iss, aud, exp).
func FuzzVerify(f *testing.F) {
	b := setup(f, realClock)
	priv, kid := idpKey(b.idp)
	now := time.Now()
	claims := baseClaims(b.idp.URL(), now)
	mint := func(req idp.MintRequest) string { return b.mint(f, req) }
	idTok, err := b.idp.MintIDToken(idp.MintRequest{User: idp.UserEngineer, Audience: []string{audA}})
	if err != nil {
		f.Fatal(err)
	}
	valid := mint(idp.MintRequest{})
	parts := strings.Split(valid, ".")

	for _, seed := range []string{
		valid,
		mint(idp.MintRequest{Scopes: []string{"a", "b"}, Extra: map[string]any{"act": map[string]any{"sub": "x", "act": map[string]any{"sub": "y"}}}}),
		mint(idp.MintRequest{Lifetime: -time.Hour}),
		mint(idp.MintRequest{Audience: []string{audB}}),
		mint(idp.MintRequest{Type: "JWT", Extra: map[string]any{"nonce": "n"}}),
		idTok,
		parts[0] + "." + parts[1] + ".",
		parts[0] + "." + parts[1],
		valid + ".",
		forge(f, map[string]any{"alg": "none", "typ": "at+jwt"}, claims, nil),
		forge(f, map[string]any{"alg": "HS256", "kid": kid, "typ": "at+jwt"}, claims, hs256([]byte("secret"))),
		forge(f, map[string]any{"alg": "RS256", "kid": kid, "typ": "at+jwt", "jku": "http://127.0.0.1:1/keys"}, claims, rs256(f, priv)),
		forge(f, map[string]any{"alg": "RS256", "kid": "../../etc/passwd", "typ": "at+jwt"}, claims, rs256(f, priv)),
		forge(f, `{"alg":"RS256","alg":"none","kid":"`+kid+`","typ":"at+jwt"}`, claims, rs256(f, priv)),
		forge(f, map[string]any{"alg": "RS256", "kid": kid, "typ": "at+jwt"}, `{"iss":"`+b.idp.URL()+`","aud":"`+audA+`","exp":9999999999,"sub":"s","sub":"t"}`, rs256(f, priv)),
		"", ".", "..", "...", "a.b.c", "e30.e30.", "e30.e30.e30",
		strings.Repeat("W", 100) + "." + strings.Repeat("[", 200) + ".x",
	} {
		f.Add(seed)
	}

	ctx := f.Context()
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := b.v.Verify(ctx, b.reg, audA, raw)
		if err != nil {
			if tokena.ReasonOf(err) == "" {
				t.Fatalf("refusal is not a *tokena.Error: %v", err)
			}
			return
		}
		if p.Subject == "" {
			t.Fatal("accepted a token without subject")
		}
		checkIndependently(t, b, raw)
	})
}

// checkIndependently verifies raw with go-jose against the IdP's published
// keys and checks the claims the verifier must have checked.
func checkIndependently(t *testing.T, b *testBundle, raw string) {
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("accepted a token go-jose cannot parse: %v", err)
	}
	var payload []byte
	for _, k := range b.idp.JWKS().Keys {
		if payload, err = jws.Verify(k.Key); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("accepted a token no published key verifies: %v", err)
	}
	var c struct {
		Iss string          `json:"iss"`
		Aud json.RawMessage `json:"aud"`
		Exp float64         `json:"exp"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatalf("accepted claims that don't parse: %v", err)
	}
	var auds []string
	if json.Unmarshal(c.Aud, &auds) != nil {
		auds = []string{strings.Trim(string(c.Aud), `"`)}
	}
	switch {
	case c.Iss != b.idp.URL():
		t.Fatalf("accepted iss %q", c.Iss)
	case !slices.Contains(auds, audA):
		t.Fatalf("accepted aud %s", c.Aud)
	case time.Unix(int64(c.Exp), 0).Add(testSkew).Before(time.Now()):
		t.Fatalf("accepted an expired token")
	}
}
