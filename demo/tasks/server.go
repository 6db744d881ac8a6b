package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Scopes understood by the authorization server and enforced by the resource
// API. No scope implies another: listing tasks needs ScopeRead even when the
// token carries ScopeWrite.
const (
	// ScopeRead allows GET /tasks and GET /tasks/{id}.
	ScopeRead = "tasks:read"
	// ScopeWrite allows POST /tasks and PATCH /tasks/{id}.
	ScopeWrite = "tasks:write"
	// ScopeDelete allows DELETE /tasks/{id}.
	ScopeDelete = "tasks:delete"
)

// Defaults applied by [New] to zero fields of [Config].
const (
	// DefaultClientID is the id of the client registered when Config.Clients
	// is empty. Its redirect URIs are any loopback http(s) URI.
	DefaultClientID = "locksmith"
	// DefaultClientSecret is the secret of the default client when
	// Config.DefaultClientSecret is empty.
	DefaultClientSecret = "locksmith-dev-secret"
	// DefaultAccessTokenLifetime is how long access tokens live: 1 hour.
	DefaultAccessTokenLifetime = time.Hour
	// DefaultRefreshTokenLifetime is how long refresh tokens live: 30 days.
	DefaultRefreshTokenLifetime = 30 * 24 * time.Hour
	// DefaultAuthorizationCodeLifetime is how long codes and pending consent
	// requests live: 1 minute.
	DefaultAuthorizationCodeLifetime = time.Minute
	// DefaultMaxTokens bounds stored tokens, codes and consent requests.
	DefaultMaxTokens = 100_000
	// DefaultMaxRecords bounds recorded requests and revocations; the oldest
	// are dropped first.
	DefaultMaxRecords = 10_000
	// DefaultMaxTasksPerUser bounds each user's task list.
	DefaultMaxTasksPerUser = 1_000
	// DevAddr is a suggested fixed loopback address for `locksmith dev`.
	DevAddr = "127.0.0.1:8765"
)

// Sentinel errors returned by the Go API. HTTP handlers answer with RFC 6749
// or RFC 6750 error codes instead.
var (
	// ErrInvalidConfig wraps every validation failure of [New].
	ErrInvalidConfig = errors.New("tasks: invalid config")
	// ErrNotFound reports an unknown user, client or token.
	ErrNotFound = errors.New("tasks: not found")
	// ErrInvalidScope reports an unknown or empty scope list.
	ErrInvalidScope = errors.New("tasks: invalid scope")
	// ErrCapacity reports that a bounded store is full.
	ErrCapacity = errors.New("tasks: capacity exceeded")
	// ErrStarted reports a second call to [Server.Start].
	ErrStarted = errors.New("tasks: server already started")
	// ErrClosed reports use of a closed [Server].
	ErrClosed = errors.New("tasks: server closed")
)

// Client is an OAuth client registered with the authorization server. Clients
// are confidential: they authenticate at the token and revocation endpoints
// with client_secret_basic or client_secret_post.
type Client struct {
	// ID is the client_id. Required, unique.
	ID string
	// Secret is the client_secret. Required.
	Secret string
	// RedirectURIs are compared exactly (no normalisation) with the
	// redirect_uri of authorization requests.
	RedirectURIs []string
	// AllowLoopbackRedirects additionally accepts any http or https redirect
	// URI on 127.0.0.1, [::1] or localhost, with any port and path (RFC 8252
	// section 7.3). The code exchange still needs the exact same URI.
	AllowLoopbackRedirects bool
}

// User is a demo user of Acme Tasks. Users are picked on the consent page;
// there is no password.
type User struct {
	// Name is the subject, e.g. "engineer". Lowercase letters, digits, '-'
	// and '_' only, since it appears in data-testid attributes.
	Name string
	// Email is shown on the consent page, e.g. "engineer@acme.example".
	Email string
}

// DefaultUsers returns the demo users used when Config.Users is empty:
// engineer, approver, approver2 and finance, each with email
// <name>@acme.example.
func DefaultUsers() []User {
	names := []string{"engineer", "approver", "approver2", "finance"}
	users := make([]User, 0, len(names))
	for _, n := range names {
		users = append(users, User{Name: n, Email: n + "@acme.example"})
	}
	return users
}

// Config configures a [Server]. The zero value is usable: every zero field
// gets the documented default.
type Config struct {
	// Issuer is the base URL, e.g. "http://127.0.0.1:8765", used as the RFC
	// 8414 issuer and to build endpoint URLs. Empty means it is chosen by
	// [Server.Start] from the listener address, or, when only
	// [Server.Handler] is used, derived from each request's Host.
	Issuer string
	// Logger receives one line per grant, reuse detection, revocation and
	// injected fault; never a token or secret. Nil discards logs.
	Logger *slog.Logger
	// AccessTokenLifetime defaults to DefaultAccessTokenLifetime.
	AccessTokenLifetime time.Duration
	// RefreshTokenLifetime defaults to DefaultRefreshTokenLifetime.
	RefreshTokenLifetime time.Duration
	// AuthorizationCodeLifetime defaults to DefaultAuthorizationCodeLifetime.
	AuthorizationCodeLifetime time.Duration
	// Clients are the registered clients. Empty means one client,
	// DefaultClientID, with DefaultClientSecret (or DefaultClientSecret
	// below) and AllowLoopbackRedirects.
	Clients []Client
	// DefaultClientSecret overrides the secret of the default client. It is
	// ignored when Clients is not empty.
	DefaultClientSecret string
	// Users defaults to [DefaultUsers].
	Users []User
	// AutoApprove skips the consent page when the authorization request
	// carries a login_hint naming a known user: the code is issued for that
	// user at once. Handy for tests that drive the flow without a browser.
	AutoApprove bool
	// Clock returns the current time; defaults to time.Now. Tests pass a fake
	// clock to expire tokens.
	Clock func() time.Time
	// MaxTokens defaults to DefaultMaxTokens.
	MaxTokens int
	// MaxRecords defaults to DefaultMaxRecords.
	MaxRecords int
	// MaxTasksPerUser defaults to DefaultMaxTasksPerUser.
	MaxTasksPerUser int
}

// Server is the Acme Tasks API and its authorization server. All methods are
// safe for concurrent use; state is guarded by a single mutex.
type Server struct {
	log          *slog.Logger
	clock        func() time.Time
	clients      map[string]Client
	users        []User
	userByName   map[string]User
	codeLifetime time.Duration
	autoApprove  bool
	maxTokens    int
	maxRecords   int
	maxTasks     int
	mux          *http.ServeMux
	done         chan struct{} // closed by Close; releases hung responses

	mu              sync.Mutex
	issuer          string
	accessLifetime  time.Duration
	refreshLifetime time.Duration
	pending         map[string]*pendingAuth // by request id
	codes           map[string]*authCode    // by code hash
	tokens          map[string]*token       // by token hash
	families        map[string]*family      // by family id
	tasks           map[string][]Task       // by subject
	nextTaskID      int
	records         []RecordedRequest
	stats           Stats
	faults          faults
	httpSrv         *http.Server
	serveDone       chan struct{}
	started         bool
	closed          bool
}

var userNameRE = regexp.MustCompile(`^[a-z0-9_-]+$`)

// New validates cfg and returns a Server that is not yet listening; call
// [Server.Start] or mount [Server.Handler]. Validation errors wrap
// [ErrInvalidConfig].
func New(cfg Config) (*Server, error) {
	s := &Server{
		log:             cfg.Logger,
		clock:           cfg.Clock,
		clients:         make(map[string]Client),
		userByName:      make(map[string]User),
		codeLifetime:    orDuration(cfg.AuthorizationCodeLifetime, DefaultAuthorizationCodeLifetime),
		autoApprove:     cfg.AutoApprove,
		maxTokens:       orInt(cfg.MaxTokens, DefaultMaxTokens),
		maxRecords:      orInt(cfg.MaxRecords, DefaultMaxRecords),
		maxTasks:        orInt(cfg.MaxTasksPerUser, DefaultMaxTasksPerUser),
		done:            make(chan struct{}),
		accessLifetime:  orDuration(cfg.AccessTokenLifetime, DefaultAccessTokenLifetime),
		refreshLifetime: orDuration(cfg.RefreshTokenLifetime, DefaultRefreshTokenLifetime),
		pending:         make(map[string]*pendingAuth),
		codes:           make(map[string]*authCode),
		tokens:          make(map[string]*token),
		families:        make(map[string]*family),
		tasks:           make(map[string][]Task),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	for name, d := range map[string]time.Duration{
		"access token lifetime":       cfg.AccessTokenLifetime,
		"refresh token lifetime":      cfg.RefreshTokenLifetime,
		"authorization code lifetime": cfg.AuthorizationCodeLifetime,
	} {
		if d < 0 {
			return nil, fmt.Errorf("%w: negative %s %s", ErrInvalidConfig, name, d)
		}
	}
	if cfg.MaxTokens < 0 || cfg.MaxRecords < 0 || cfg.MaxTasksPerUser < 0 {
		return nil, fmt.Errorf("%w: negative limit", ErrInvalidConfig)
	}
	if cfg.Issuer != "" {
		iss, err := validateIssuer(cfg.Issuer)
		if err != nil {
			return nil, fmt.Errorf("%w: issuer: %w", ErrInvalidConfig, err)
		}
		s.issuer = iss
	}

	clients := cfg.Clients
	if len(clients) == 0 {
		secret := cfg.DefaultClientSecret
		if secret == "" {
			secret = DefaultClientSecret
		}
		clients = []Client{{ID: DefaultClientID, Secret: secret, AllowLoopbackRedirects: true}}
	}
	for _, c := range clients {
		if c.ID == "" || c.Secret == "" {
			return nil, fmt.Errorf("%w: client %q: id and secret are required", ErrInvalidConfig, c.ID)
		}
		if _, dup := s.clients[c.ID]; dup {
			return nil, fmt.Errorf("%w: duplicate client %q", ErrInvalidConfig, c.ID)
		}
		for _, u := range c.RedirectURIs {
			if err := validateRedirectURI(u); err != nil {
				return nil, fmt.Errorf("%w: client %q: %w", ErrInvalidConfig, c.ID, err)
			}
		}
		if len(c.RedirectURIs) == 0 && !c.AllowLoopbackRedirects {
			return nil, fmt.Errorf("%w: client %q has no redirect URIs", ErrInvalidConfig, c.ID)
		}
		c.RedirectURIs = slices.Clone(c.RedirectURIs)
		s.clients[c.ID] = c
	}

	users := cfg.Users
	if len(users) == 0 {
		users = DefaultUsers()
	}
	for _, u := range users {
		if !userNameRE.MatchString(u.Name) {
			return nil, fmt.Errorf("%w: user name %q", ErrInvalidConfig, u.Name)
		}
		if _, dup := s.userByName[u.Name]; dup {
			return nil, fmt.Errorf("%w: duplicate user %q", ErrInvalidConfig, u.Name)
		}
		s.userByName[u.Name] = u
		s.users = append(s.users, u)
	}

	s.mux = s.routes()
	return s, nil
}

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func orInt(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}

func validateIssuer(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("parse %q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%q must be an absolute http(s) URL without query or fragment", raw)
	}
	return strings.TrimRight(raw, "/"), nil
}

func validateRedirectURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("redirect uri %q: %w", raw, err)
	}
	if !u.IsAbs() || u.Host == "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("redirect uri %q must be absolute, without fragment or userinfo", raw)
	}
	return nil
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.api(s.handleIndex))
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", s.api(s.handleASMetadata))
	mux.HandleFunc("GET /.well-known/oauth-protected-resource", s.api(s.handlePRMetadata))
	mux.HandleFunc("GET /openapi.json", s.api(s.handleOpenAPI))

	mux.HandleFunc("GET /authorize", s.page(s.handleAuthorize))
	mux.HandleFunc("GET /authorize/consent", s.page(s.handleConsent))
	mux.HandleFunc("POST /authorize/decision", s.page(s.handleDecision))
	mux.HandleFunc("POST /token", s.handleToken)
	mux.HandleFunc("POST /revoke", s.oauth(s.handleRevoke))

	mux.HandleFunc("GET /tasks", s.resource(ScopeRead, s.handleListTasks))
	mux.HandleFunc("POST /tasks", s.resource(ScopeWrite, s.handleCreateTask))
	mux.HandleFunc("GET /tasks/{id}", s.resource(ScopeRead, s.handleGetTask))
	mux.HandleFunc("PATCH /tasks/{id}", s.resource(ScopeWrite, s.handleUpdateTask))
	mux.HandleFunc("DELETE /tasks/{id}", s.resource(ScopeDelete, s.handleDeleteTask))
	return mux
}

// Handler returns the HTTP handler serving every endpoint, for mounting in
// another server or httptest.Server. When neither Config.Issuer nor
// [Server.Start] fixed the issuer, it is derived from each request's Host.
func (s *Server) Handler() http.Handler { return s.mux }

// Start listens on addr (e.g. "127.0.0.1:0" in tests, [DevAddr] in dev) and
// serves in a background goroutine until [Server.Close]. If Config.Issuer was
// empty, the issuer becomes "http://" + the listener address. It returns
// [ErrStarted] on a second call and [ErrClosed] after Close.
func (s *Server) Start(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("tasks: start %s: %w", addr, ErrClosed)
	}
	if s.started {
		return fmt.Errorf("tasks: start %s: %w", addr, ErrStarted)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("tasks: start %s: %w", addr, err)
	}
	s.started = true
	if s.issuer == "" {
		s.issuer = "http://" + ln.Addr().String()
	}
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.httpSrv = srv
	s.serveDone = make(chan struct{})
	go func(done chan<- struct{}) {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("acme tasks serve failed", "err", err)
		}
	}(s.serveDone)
	s.log.Info("acme tasks listening", "url", s.issuer)
	return nil
}

// URL returns the issuer / base URL without trailing slash, e.g.
// "http://127.0.0.1:41234". It is empty before Start when Config.Issuer was
// empty.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issuer
}

// AuthURL returns URL() + "/authorize".
func (s *Server) AuthURL() string { return s.URL() + "/authorize" }

// TokenURL returns URL() + "/token".
func (s *Server) TokenURL() string { return s.URL() + "/token" }

// RevocationURL returns URL() + "/revoke".
func (s *Server) RevocationURL() string { return s.URL() + "/revoke" }

// Close releases responses held by [Server.HangNextRefreshResponses], then
// shuts the listener down gracefully, waiting for in-flight requests until ctx
// ends (then closes connections forcibly). It waits for the serving goroutine
// to exit. Closing twice, or a server never started, is a no-op.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	srv, serveDone := s.httpSrv, s.serveDone
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	if err != nil {
		_ = srv.Close()
		err = fmt.Errorf("tasks: close: %w", err)
	}
	<-serveDone
	return err
}

// issuerFor returns the configured issuer or, for a handler mounted without
// one, the origin of r.
func (s *Server) issuerFor(r *http.Request) string {
	s.mu.Lock()
	iss := s.issuer
	s.mu.Unlock()
	if iss != "" {
		return iss
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// Users returns the configured demo users in configuration order.
func (s *Server) Users() []User { return slices.Clone(s.users) }

// SupportedScopes returns ScopeRead, ScopeWrite and ScopeDelete.
func SupportedScopes() []string { return []string{ScopeRead, ScopeWrite, ScopeDelete} }
