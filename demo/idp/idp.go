package idp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Errors returned by the IdP. Use errors.Is.
var (
	// ErrInvalidConfig reports a Config that New refuses.
	ErrInvalidConfig = errors.New("idp: invalid config")
	// ErrNotStarted reports an operation that needs the issuer before it is known (no
	// Config.Issuer and Start not called yet).
	ErrNotStarted = errors.New("idp: issuer not known yet")
	// ErrAlreadyStarted reports a second Start.
	ErrAlreadyStarted = errors.New("idp: already started")
	// ErrUnknownKey reports a key id that is not published.
	ErrUnknownKey = errors.New("idp: unknown key")
	// ErrCurrentKey reports an attempt to retire the current signing key.
	ErrCurrentKey = errors.New("idp: key is the current signing key")
	// ErrUnknownUser reports a user that is not configured.
	ErrUnknownUser = errors.New("idp: unknown user")
	// ErrNotFound reports an unknown or expired auth request, code, token or client.
	ErrNotFound = errors.New("idp: not found")
)

// Defaults applied by New.
const (
	// DefaultAccessTokenLifetime is the access token lifetime when Config leaves it zero.
	DefaultAccessTokenLifetime = time.Hour
	// DefaultRefreshTokenLifetime is the refresh token lifetime when Config leaves it zero.
	DefaultRefreshTokenLifetime = 24 * time.Hour
)

// Config configures an IdP. Only Logger is required.
type Config struct {
	// Issuer is the public base URL (scheme and host, no path), e.g. http://127.0.0.1:9000.
	// Empty: Start sets it to http://<listen address>. http is allowed for loopback hosts, and
	// for other hosts only with AllowInsecureIssuer.
	Issuer string
	// AllowInsecureIssuer allows an http issuer on a non-loopback host (e.g. a container name).
	AllowInsecureIssuer bool
	// Logger receives the IdP's own logs. Required. (op itself logs through slog.Default.)
	Logger *slog.Logger
	// Users are the accounts offered on the login page. Nil means [DemoUsers].
	Users []User
	// Clients are the registered clients. Nil means DefaultClients(DefaultLocksmithSecret).
	Clients []Client
	// AccessTokenLifetime is the lifetime of issued access tokens. Zero means
	// [DefaultAccessTokenLifetime].
	AccessTokenLifetime time.Duration
	// RefreshTokenLifetime is the lifetime of refresh tokens. Zero means
	// [DefaultRefreshTokenLifetime].
	RefreshTokenLifetime time.Duration
}

// IdP is a running (or ready to run) demo OpenID provider. All methods are safe for
// concurrent use.
type IdP struct {
	logger   *slog.Logger
	store    *storage
	keys     *keyRing
	provider *op.Provider
	handler  http.Handler
	issuer   atomic.Pointer[string]

	jwksFetches    atomic.Int64
	tokenExchanges atomic.Int64

	mu      sync.Mutex
	srv     *http.Server
	started bool
	served  chan struct{}
}

// New validates cfg and builds an IdP with a fresh RSA signing key. It does not listen: call
// Start, or serve Handler yourself (then Config.Issuer is required).
func New(cfg Config) (*IdP, error) {
	if cfg.Logger == nil {
		return nil, fmt.Errorf("idp: new: logger is required: %w", ErrInvalidConfig)
	}
	issuer, err := normalizeIssuer(cfg.Issuer, cfg.AllowInsecureIssuer)
	if err != nil {
		return nil, err
	}
	if cfg.AccessTokenLifetime < 0 || cfg.RefreshTokenLifetime < 0 {
		return nil, fmt.Errorf("idp: new: negative token lifetime: %w", ErrInvalidConfig)
	}
	if cfg.AccessTokenLifetime == 0 {
		cfg.AccessTokenLifetime = DefaultAccessTokenLifetime
	}
	if cfg.RefreshTokenLifetime == 0 {
		cfg.RefreshTokenLifetime = DefaultRefreshTokenLifetime
	}
	if cfg.Users == nil {
		cfg.Users = DemoUsers()
	}
	users, err := validateUsers(cfg.Users)
	if err != nil {
		return nil, err
	}
	if cfg.Clients == nil {
		cfg.Clients = DefaultClients(DefaultLocksmithSecret)
	}
	clients := make(map[string]Client, len(cfg.Clients))
	for _, c := range cfg.Clients {
		if err := validateClient(c); err != nil {
			return nil, fmt.Errorf("idp: new: %w", err)
		}
		if _, dup := clients[c.ID]; dup {
			return nil, fmt.Errorf("idp: new: duplicate client %s: %w", c.ID, ErrInvalidConfig)
		}
		clients[c.ID] = c
	}
	keys, err := newKeyRing()
	if err != nil {
		return nil, err
	}

	i := &IdP{logger: cfg.Logger, keys: keys}
	i.issuer.Store(&issuer)
	i.store = &storage{
		logger:               cfg.Logger,
		keys:                 keys,
		issuer:               i.URL,
		loginURL:             func(id string) string { return i.URL() + "/login?authRequestID=" + url.QueryEscape(id) },
		users:                users,
		clients:              clients,
		accessTokenLifetime:  cfg.AccessTokenLifetime,
		refreshTokenLifetime: cfg.RefreshTokenLifetime,
		authRequests:         map[string]*authRequest{},
		codes:                map[string]string{},
		tokens:               map[string]*accessToken{},
		refreshTokens:        map[string]*refreshToken{},
	}

	var codeKey [32]byte
	if _, err := rand.Read(codeKey[:]); err != nil {
		return nil, fmt.Errorf("idp: new: crypto key: %w", err)
	}
	opCfg := &op.Config{
		CryptoKey:             codeKey,
		CryptoKeyId:           "demo-idp",
		CodeMethodS256:        true,
		AuthMethodPost:        true,
		GrantTypeRefreshToken: true,
	}
	i.provider, err = op.NewProvider(opCfg, i.store,
		func(bool) (op.IssuerFromRequest, error) { return func(*http.Request) string { return i.URL() }, nil },
		op.WithAllowInsecure(),
		op.WithCrypto(&tokenCrypto{s: i.store, fallback: op.NewAES256GCMCrypto(codeKey, "demo-idp")}),
		op.WithHttpInterceptors(i.interceptTokenRequests),
	)
	if err != nil {
		return nil, fmt.Errorf("idp: new: provider: %w", err)
	}

	mux := http.NewServeMux()
	login := http.NewCrossOriginProtection().Handler(http.HandlerFunc(i.serveLogin))
	mux.Handle("GET /login", login)
	mux.Handle("POST /login", login)
	mux.Handle("/", i.countJWKS(i.provider))
	i.handler = mux
	return i, nil
}

func normalizeIssuer(issuer string, allowInsecure bool) (string, error) {
	if issuer == "" {
		return "", nil
	}
	u, err := url.Parse(issuer)
	if err != nil {
		return "", fmt.Errorf("idp: issuer %q: %w: %w", issuer, ErrInvalidConfig, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return "", fmt.Errorf("idp: issuer %q must be an absolute http(s) URL: %w", issuer, ErrInvalidConfig)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "", u.User != nil:
		return "", fmt.Errorf("idp: issuer %q must have no path, query, fragment or userinfo: %w", issuer, ErrInvalidConfig)
	case u.Scheme == "http" && !allowInsecure && !isLoopbackHost(u.Hostname()):
		return "", fmt.Errorf("idp: http issuer %q on a non-loopback host: %w", issuer, ErrInvalidConfig)
	}
	return u.Scheme + "://" + u.Host, nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validateUsers(users []User) ([]User, error) {
	out := make([]User, 0, len(users))
	seen := map[string]bool{}
	for _, u := range users {
		switch {
		case u.Subject == "" || u.Username == "":
			return nil, fmt.Errorf("idp: user without subject or username: %w", ErrInvalidConfig)
		case strings.Contains(u.Subject, ":"):
			return nil, fmt.Errorf("idp: user subject %q contains ':': %w", u.Subject, ErrInvalidConfig)
		case seen["s:"+u.Subject] || seen["u:"+u.Username]:
			return nil, fmt.Errorf("idp: duplicate user %s: %w", u.Username, ErrInvalidConfig)
		}
		seen["s:"+u.Subject], seen["u:"+u.Username] = true, true
		out = append(out, cloneUser(u))
	}
	return out, nil
}

// interceptTokenRequests runs inside op's router. It captures the RFC 8707 resource
// parameters of authorization and token requests (op does not parse them there) and counts
// token exchange attempts.
func (i *IdP) interceptTokenRequests(next http.Handler) http.Handler {
	// Called while op builds its router, before i.provider is set; the IdP keeps op's
	// default endpoint paths.
	authorize := op.DefaultEndpoints.Authorization.Relative()
	token := op.DefaultEndpoints.Token.Relative()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == authorize || r.URL.Path == token {
			if err := r.ParseForm(); err != nil {
				op.RequestError(w, r, oidc.ErrInvalidRequest().WithDescription("cannot parse form").WithParent(err), nil)
				return
			}
			if r.URL.Path == token && r.Form.Get("grant_type") == GrantTokenExchange {
				i.tokenExchanges.Add(1)
			}
			r = r.WithContext(context.WithValue(r.Context(), resourcesKey{}, r.Form["resource"]))
		}
		next.ServeHTTP(w, r)
	})
}

func (i *IdP) countJWKS(next http.Handler) http.Handler {
	keys := i.provider.KeysEndpoint().Relative()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == keys {
			i.jwksFetches.Add(1)
		}
		next.ServeHTTP(w, r)
	})
}

// URL returns the issuer (no trailing slash), or "" before Start when Config.Issuer was empty.
func (i *IdP) URL() string { return *i.issuer.Load() }

// JWKSURL returns the URL of the JSON Web Key Set.
func (i *IdP) JWKSURL() string { return i.URL() + i.provider.KeysEndpoint().Relative() }

// TokenURL returns the URL of the token endpoint.
func (i *IdP) TokenURL() string { return i.URL() + i.provider.TokenEndpoint().Relative() }

// AuthorizeURL returns the URL of the authorization endpoint.
func (i *IdP) AuthorizeURL() string { return i.URL() + i.provider.AuthorizationEndpoint().Relative() }

// Handler returns the HTTP handler of the whole IdP (OpenID endpoints and the login page).
// Serve it at the root of Config.Issuer.
func (i *IdP) Handler() http.Handler { return i.handler }

// Start listens on addr (e.g. "127.0.0.1:0" in tests, a fixed loopback port in dev) and
// serves in the background until Close. With no Config.Issuer the issuer becomes
// http://<actual listen address>.
func (i *IdP) Start(addr string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.started {
		return fmt.Errorf("idp: start %s: %w", addr, ErrAlreadyStarted)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("idp: start: %w", err)
	}
	if i.URL() == "" {
		issuer := "http://" + l.Addr().String()
		i.issuer.Store(&issuer)
	}
	i.started = true
	i.srv = &http.Server{
		Handler:           i.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(i.logger.Handler(), slog.LevelWarn),
	}
	i.served = make(chan struct{})
	go func(srv *http.Server, done chan<- struct{}) {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			i.logger.Error("idp: serve", "err", err)
		}
	}(i.srv, i.served)
	i.logger.Info("idp started", "issuer", i.URL())
	return nil
}

// Close stops the server started by Start, waiting for in-flight requests until ctx ends
// (then it closes connections forcibly). It is a no-op if the IdP was not started or is
// already closed. A closed IdP can't be started again.
func (i *IdP) Close(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.srv == nil {
		return nil
	}
	err := i.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, i.srv.Close())
	}
	<-i.served
	i.srv = nil
	if err != nil {
		return fmt.Errorf("idp: close: %w", err)
	}
	return nil
}

// LookupUser finds a configured user by subject or username.
func (i *IdP) LookupUser(name string) (User, bool) { return i.store.userByName(name) }

// CurrentKeyID returns the kid of the key that signs new tokens.
func (i *IdP) CurrentKeyID() string { return i.keys.current().id }

// RotateKey generates a new RSA key and makes it current. Older keys stay published, so
// tokens they signed keep verifying until RetireKey or RetireOldKeys. It returns the new kid.
func (i *IdP) RotateKey() (string, error) {
	kid, err := i.keys.rotate()
	if err != nil {
		return "", err
	}
	i.logger.Info("idp signing key rotated", "kid", kid)
	return kid, nil
}

// RetireKey removes a non-current key from the JWKS; tokens it signed stop verifying (once a
// verifier refetches the JWKS). It fails with ErrCurrentKey or ErrUnknownKey.
func (i *IdP) RetireKey(kid string) error { return i.keys.retire(kid) }

// RetireOldKeys removes every key but the current one and returns their kids.
func (i *IdP) RetireOldKeys() []string { return i.keys.retireOld() }

// JWKS returns the published public keys, as served at JWKSURL.
func (i *IdP) JWKS() jose.JSONWebKeySet { return i.keys.jwks() }

// SigningKeyForTests returns the current private signing key (KeyID and RSA private key set),
// for tests that forge tokens. Never expose it over HTTP.
func (i *IdP) SigningKeyForTests() jose.JSONWebKey {
	k := i.keys.current()
	return jose.JSONWebKey{Key: k.priv, KeyID: k.id, Algorithm: string(jose.RS256), Use: "sig"}
}

// MintAccessToken signs an access token directly (test only; not reachable over HTTP). The
// token is recorded like an issued one, so with typ at+jwt and a future exp it also works at
// the userinfo endpoint and as a token exchange subject_token. It fails with ErrNotStarted
// before the issuer is known, ErrUnknownUser or ErrUnknownKey.
func (i *IdP) MintAccessToken(req MintRequest) (string, error) { return i.store.mint(req, false) }

// MintIDToken signs an ID token directly (test only): iss, sub, aud (default the client id),
// azp, exp, iat, auth_time and the user's email, groups and names; add nonce etc. with Extra.
func (i *IdP) MintIDToken(req MintRequest) (string, error) { return i.store.mint(req, true) }

// JWKSFetchCount returns how many requests the JWKS endpoint has served.
func (i *IdP) JWKSFetchCount() int64 { return i.jwksFetches.Load() }

// TokenExchangeCount returns how many token exchange requests (accepted or refused) the token
// endpoint has received.
func (i *IdP) TokenExchangeCount() int64 { return i.tokenExchanges.Load() }

// NewTestServer starts an IdP on 127.0.0.1:0 for t and closes it in t.Cleanup. configure
// functions may edit the Config (the Logger defaults to discarding).
func NewTestServer(t testing.TB, configure ...func(*Config)) *IdP {
	t.Helper()
	cfg := Config{Logger: slog.New(slog.DiscardHandler)}
	for _, f := range configure {
		f(&cfg)
	}
	i, err := New(cfg)
	if err != nil {
		t.Fatalf("idp: new test server: %v", err)
	}
	if err := i.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("idp: start test server: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := i.Close(ctx); err != nil {
			// A client of the test still holding a request open makes the
			// graceful shutdown time out; Close has then closed the server
			// hard, so nothing leaks (goroutine leaks are tested apart).
			if errors.Is(err, context.DeadlineExceeded) {
				t.Logf("idp: test server closed hard: %v", err)
				return
			}
			t.Errorf("idp: close test server: %v", err)
		}
	})
	return i
}
