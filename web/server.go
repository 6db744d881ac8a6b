package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/approvals"
	"github.com/locksmithhq/locksmith/tenants/audit"
	"github.com/locksmithhq/locksmith/tenants/policy"
	"github.com/locksmithhq/locksmith/tenants/tokena"
)

// DefaultMaxBodyBytes caps request bodies (1 MiB) unless a route sets its own.
const DefaultMaxBodyBytes = 1 << 20

// Readiness reports whether the server can serve traffic: the database
// answers and its schema is current.
type Readiness interface {
	Ready(ctx context.Context) error
}

// Config holds the Server's dependencies.
type Config struct {
	// Logger receives one line per request and every unexpected error. Required.
	Logger *slog.Logger
	// BaseURL is the public URL (LOCKSMITH_BASE_URL). Required.
	BaseURL *url.URL
	// Ready backs /readyz. Required.
	Ready Readiness
	// Registry receives the HTTP metrics and is served at /metrics. Required.
	Registry *prometheus.Registry
	// Tenants is the tenant domain (console, admin API). Required.
	Tenants *tenants.Service
	// MaxBodyBytes caps request bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// ClientIPHeader names a header set by a trusted proxy with the client's
	// IP (e.g. "Fly-Client-IP"), used to rate-limit sign-ins per client; ""
	// means the connection's remote address.
	ClientIPHeader string
	// Verifier checks Token A for the console's "test a token" box; nil
	// means the server builds its own over the tenants' egress client. Main
	// passes the MCP endpoint's, so both share JWKS and verified-token caches.
	Verifier *tokena.Verifier
	// MCP serves every tenant's MCP endpoint (/t/{tenant}/mcp) and its
	// protected resource metadata; nil leaves both unmounted. These are
	// bearer-auth and public routes, mounted outside the browser session
	// and CSRF middleware.
	MCP http.Handler
	// Consent is the token broker behind the end-user pages (sign-in through
	// the tenant's IdP, consent, My connections, /oauth/callback); nil
	// leaves them unmounted.
	Consent *consent.Broker
	// Policy, Approvals and AuditLog back the console's Policies, Approvals
	// and Audit pages and the /api/v1/audit and /api/v1/approvals routes;
	// nil leaves a page as its placeholder and its API routes answering 503.
	Policy    *policy.Engine
	Approvals *approvals.Service
	AuditLog  *audit.Store
	// ApprovalWebhook sends the approval settings page's "Send a test
	// event" (one signed approval.test delivery, through the same egress
	// client and signing code as the webhook job); nil, or Approvals nil,
	// hides the button and leaves its route unmounted.
	ApprovalWebhook *approvals.Notifier
}

// Server is Locksmith's HTTP handler.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	handler http.Handler
	metrics *httpMetrics
	console consoleState
	eu      enduserState
}

// New builds the server and its route table.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Logger == nil:
		return nil, errors.New("web: logger is required")
	case cfg.BaseURL == nil || cfg.BaseURL.Host == "":
		return nil, errors.New("web: base URL is required")
	case cfg.Ready == nil:
		return nil, errors.New("web: readiness check is required")
	case cfg.Registry == nil:
		return nil, errors.New("web: metrics registry is required")
	case cfg.Tenants == nil:
		return nil, errors.New("web: tenants service is required")
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Verifier == nil {
		v, err := tokena.New(tokena.Config{HTTP: cfg.Tenants.Egress().HTTPClient(), Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("web: token verifier: %w", err)
		}
		cfg.Verifier = v
	}
	m, err := newHTTPMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), metrics: m}
	s.routes()
	s.handler = s.middleware(s.mux)
	return s, nil
}

// ServeHTTP serves a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Handle registers a handler that returns an error, under a Go method
// pattern such as "GET /healthz". Other packages' routes are added through it
// by cmd, so there is still one route table.
func (s *Server) Handle(pattern string, h HandlerFunc) {
	s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	}))
}

// HTTPServer wraps the handler in an http.Server with production timeouts.
func (s *Server) HTTPServer(addr string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn),
	}
}

// HandlerFunc is an HTTP handler that returns an error; the server maps the
// error to a response in one place (writeError).
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) routes() {
	s.Handle("GET /healthz", s.healthz)
	s.Handle("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))
	if s.cfg.MCP != nil {
		for _, m := range []string{"POST", "GET", "DELETE", "OPTIONS"} {
			s.mux.Handle(m+" /t/{tenant}/mcp", s.cfg.MCP)
		}
		s.mux.Handle("GET /.well-known/oauth-protected-resource/t/{tenant}/mcp", s.cfg.MCP)
		s.mux.Handle("OPTIONS /.well-known/oauth-protected-resource/t/{tenant}/mcp", s.cfg.MCP)
	}
	s.apiRoutes()
	s.consoleRoutes()
	s.enduserRoutes()
	s.Handle("GET /", func(w http.ResponseWriter, r *http.Request) error {
		return &statusError{status: http.StatusNotFound, msg: fmt.Sprintf("no page at %s", r.URL.Path)}
	})
}

// NewRegistry returns a Prometheus registry with the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
