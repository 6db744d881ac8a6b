package tokena_test

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/tokena"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Audiences of two tenants' MCP endpoints.
const (
	audA = "https://locksmith.example/t/acme/mcp"
	audB = "https://locksmith.example/t/globex/mcp"
)

// testSkew is the skew every test verifier is configured with; edge tests
// are relative to it.
const testSkew = 30 * time.Second

// testClock is a settable clock, starting at the current whole second.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *testClock { return &testClock{t: time.Now().Truncate(time.Second)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type testBundle struct {
	idp   *idp.IdP
	clock *testClock
	v     *tokena.Verifier
	// reg is tenant A's registration of idp (generic preset, at+jwt).
	reg tenants.IdP
	// jwks is a proxy in front of idp's JWKS that can be switched off.
	jwks *jwksProxy
}

// setup starts a demo IdP, puts a switchable proxy in front of its JWKS,
// and builds a Verifier with a test clock and testSkew.
func setup(t testing.TB, configure ...func(*tokena.Config)) *testBundle {
	t.Helper()
	b := &testBundle{idp: idp.NewTestServer(t), clock: newClock()}
	b.jwks = newJWKSProxy(t, b.idp)
	b.v = newVerifier(t, b.clock, configure...)
	b.reg = registration(b.idp.URL(), b.jwks.url())
	return b
}

func newVerifier(t testing.TB, clock *testClock, configure ...func(*tokena.Config)) *tokena.Verifier {
	t.Helper()
	ec, err := egress.New(egress.Options{AllowPrivate: true})
	require.NoError(t, err)
	hc := ec.HTTPClient()
	t.Cleanup(hc.CloseIdleConnections)
	cfg := tokena.Config{HTTP: hc, Logger: slog.New(slog.DiscardHandler), Now: clock.Now, Skew: testSkew}
	for _, f := range configure {
		f(&cfg)
	}
	v, err := tokena.New(cfg)
	require.NoError(t, err)
	return v
}

func registration(issuer, jwksURI string) tenants.IdP {
	return tenants.IdP{
		TenantID:     uuid.New(),
		ID:           uuid.New(),
		Issuer:       issuer,
		JWKSURI:      jwksURI,
		Preset:       tokena.PresetGeneric,
		RequireATJWT: true,
	}
}

// mint mints an access token for the engineer at tenant A, with req's
// fields overriding.
func (b *testBundle) mint(t testing.TB, req idp.MintRequest) string {
	t.Helper()
	if req.User == "" {
		req.User = idp.UserEngineer
	}
	if req.Audience == nil {
		req.Audience = []string{audA}
	}
	if req.Scopes == nil {
		req.Scopes = []string{"tasks:read", "tasks:write"}
	}
	tok, err := b.idp.MintAccessToken(req)
	require.NoError(t, err)
	return tok
}

func (b *testBundle) verify(t testing.TB, raw string) (tokena.Principal, error) {
	t.Helper()
	return b.v.Verify(t.Context(), b.reg, audA, raw)
}

// requireReason asserts err is a refusal with reason r.
func requireReason(t testing.TB, err error, r tokena.Reason) {
	t.Helper()
	require.Error(t, err)
	var e *tokena.Error
	require.ErrorAs(t, err, &e, "refusals are *tokena.Error: %v", err)
	require.Equal(t, r, e.Reason, "message: %s", e.Message)
	require.NotEmpty(t, e.PublicMessage())
	if r == tokena.ReasonJWKSUnavailable {
		require.ErrorIs(t, err, tokena.ErrUnavailable)
	} else {
		require.ErrorIs(t, err, tokena.ErrInvalidToken)
	}
}

// jwksProxy serves the IdP's handler on its own listener, counts requests
// and can answer 503 instead (an outage of the JWKS endpoint).
type jwksProxy struct {
	srv  *httptest.Server
	path string
	down atomic.Bool
	hits atomic.Int64
}

func newJWKSProxy(t testing.TB, i *idp.IdP) *jwksProxy {
	p := &jwksProxy{path: strings.TrimPrefix(i.JWKSURL(), i.URL())}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.hits.Add(1)
		if p.down.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		i.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *jwksProxy) url() string { return p.srv.URL + p.path }

// staticJWKS serves a fixed JWKS document and counts requests.
type staticJWKS struct {
	srv  *httptest.Server
	hits atomic.Int64
}

func newStaticJWKS(t testing.TB, doc any) *staticJWKS {
	body, err := json.Marshal(doc)
	require.NoError(t, err)
	s := &staticJWKS{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// counter is an httptest server that only counts requests: a stand-in for
// an attacker's key server named in jku or x5u.
func counter(t testing.TB) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// baseClaims are RFC 9068 claims of an access token for tenant A from
// issuer, valid for an hour from now.
func baseClaims(issuer string, now time.Time) map[string]any {
	return map[string]any{
		"iss":       issuer,
		"sub":       idp.UserEngineer,
		"aud":       audA,
		"exp":       now.Add(time.Hour).Unix(),
		"iat":       now.Unix(),
		"jti":       uuid.NewString(),
		"client_id": idp.ClientMCPAgent,
		"scope":     "tasks:read",
	}
}

func enc(t testing.TB, v any) string {
	t.Helper()
	if s, ok := v.(string); ok {
		return base64.RawURLEncoding.EncodeToString([]byte(s))
	}
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(b)
}

// signer signs a JWS signing input and returns the raw signature.
type signer func(input []byte) []byte

// rs256 signs with an RSA private key (PKCS #1 v1.5, SHA-256).
func rs256(t testing.TB, priv *rsa.PrivateKey) signer {
	return func(input []byte) []byte {
		d := sha256.Sum256(input)
		sig, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, d[:])
		require.NoError(t, err)
		return sig
	}
}

// hs256 signs with an HMAC secret.
func hs256(secret []byte) signer {
	return func(input []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(input)
		return m.Sum(nil)
	}
}

// forge builds a compact JWS by hand: any header (a map or a raw JSON
// string), any claims, any signature.
func forge(t testing.TB, hdr, claims any, sign signer) string {
	t.Helper()
	input := enc(t, hdr) + "." + enc(t, claims)
	if sign == nil {
		return input + "."
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sign([]byte(input)))
}

// idpKey returns the IdP's current private RSA key and its kid.
func idpKey(i *idp.IdP) (*rsa.PrivateKey, string) {
	k := i.SigningKeyForTests()
	return k.Key.(*rsa.PrivateKey), k.KeyID
}

// signJOSE signs claims with go-jose (for algorithms other than RS256).
func signJOSE(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, typ string, claims any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), kid)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	require.NoError(t, err)
	payload, err := json.Marshal(claims)
	require.NoError(t, err)
	jws, err := s.Sign(payload)
	require.NoError(t, err)
	out, err := jws.CompactSerialize()
	require.NoError(t, err)
	return out
}
