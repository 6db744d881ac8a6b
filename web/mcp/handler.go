package mcp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/tokena"
)

// DefaultMaxBodyBytes caps an MCP request body: 1 MiB. Larger bodies get 413.
const DefaultMaxBodyBytes = 1 << 20

// Route patterns the web server mounts the Handler at. Both are bearer-auth
// or public routes: they must not sit behind the browser session or CSRF
// middleware.
const (
	EndpointPattern = "/t/{tenant}/mcp"
	MetadataPattern = "/.well-known/oauth-protected-resource/t/{tenant}/mcp"
)

// Version is reported as the server version in initialize results.
var Version = "dev"

// Config holds the Handler's dependencies.
type Config struct {
	// BaseURL is LOCKSMITH_BASE_URL: resource URLs are built from it and the
	// Host and Origin of every request are checked against it. Required.
	BaseURL *url.URL
	// Logger receives one line per refused or failed request. Required.
	Logger *slog.Logger
	// Registry resolves tenants and their registrations. Required.
	Registry Registry
	// Verifier checks Token A. Required.
	Verifier Verifier
	// HTTPClient calls upstreams; it must be the SSRF-guarded egress client
	// (timeouts, size cap, connection reuse). Required.
	HTTPClient *http.Client
	// Broker hands out Token B. Nil means no upstream that needs a user
	// credential can be called (tools say so); upstreams with auth mode
	// none still work.
	Broker Broker
	// Policy decides each call; nil means DefaultPolicy.
	Policy Policy
	// Audit records each call; nil means LogAudit on Logger.
	Audit Audit
	// Sealer protects the requestState of input-required results. Nil means
	// an HMAC key made at start-up, which only this instance can check;
	// production passes the tenant-key sealer so any instance can.
	Sealer StateSealer
	// TenantTTL is how long tenant registrations are cached; 0 means
	// DefaultTenantTTL.
	TenantTTL time.Duration
	// MaxBodyBytes caps request bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// BreakerThreshold is how many consecutive failed calls to one upstream
	// of one tenant (connection refused, timeout, DNS or TLS failure, 5xx;
	// never 4xx) open its circuit on this instance. An open circuit refuses
	// calls with a retryable tool error, without contacting the upstream,
	// for BreakerCoolDown, then lets exactly one probe through: success
	// closes it, failure opens it again. A 429 does not count (see doc.go).
	// 0 means egress.DefaultBreakerThreshold (5); negative is an error.
	BreakerThreshold int
	// BreakerCoolDown is how long an open circuit refuses calls before one
	// probe; 0 means egress.DefaultBreakerCoolDown (30 s).
	BreakerCoolDown time.Duration
	// UpstreamMaxInFlight bounds the calls in flight to one upstream of one
	// tenant from this instance; 0 means egress.DefaultMaxInFlight (64).
	UpstreamMaxInFlight int
	// UpstreamSlotWait is how long a call waits for a free slot when
	// UpstreamMaxInFlight calls are in flight (at most until the request
	// ends) before failing with a retryable tool error; 0 means
	// egress.DefaultInFlightWait (2 s).
	UpstreamSlotWait time.Duration
	// UnprefixedSingleUpstream relays the tools of a tenant's only MCP
	// upstream under their own names when the tenant has no catalog tools,
	// instead of "{slug}.{tool}". It exists so the MCP conformance suite
	// (which calls fixed tool names) can run through Locksmith; leave it off
	// in production, where adding a second upstream would rename tools.
	UnprefixedSingleUpstream bool
}

// Handler serves the MCP endpoint and its protected resource metadata for
// every tenant. It is safe for concurrent use and keeps no per-session
// state, so any instance can serve any request.
type Handler struct {
	cfg      Config
	base     string // BASE without trailing slash
	host     string // canonical host[:port] of BASE
	origin   string // scheme://host[:port] of BASE
	versions []string
	cache    *tenantCache
	sdk      *sdk.StreamableHTTPHandler
	caps     *capMemo
	state    *stateCodec
	relay    *relay
	gates    *egress.Breakers[upstreamKey]
	log      *slog.Logger
	fast     atomic.Int64 // tools/calls served by the fast path
}

// New validates cfg and returns a Handler.
func New(cfg Config) (*Handler, error) {
	switch {
	case cfg.BaseURL == nil || cfg.BaseURL.Host == "":
		return nil, errors.New("mcp: base URL is required")
	case cfg.BaseURL.Scheme != "http" && cfg.BaseURL.Scheme != "https":
		return nil, errors.New("mcp: base URL must be http or https")
	case cfg.Logger == nil:
		return nil, errors.New("mcp: logger is required")
	case cfg.Registry == nil:
		return nil, errors.New("mcp: registry is required")
	case cfg.Verifier == nil:
		return nil, errors.New("mcp: token verifier is required")
	case cfg.HTTPClient == nil:
		return nil, errors.New("mcp: upstream HTTP client is required")
	}
	if cfg.Policy == nil {
		cfg.Policy = DefaultPolicy{}
	}
	if cfg.Audit == nil {
		cfg.Audit = LogAudit{Logger: cfg.Logger}
	}
	if cfg.TenantTTL == 0 {
		cfg.TenantTTL = DefaultTenantTTL
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{
		cfg:      cfg,
		host:     canonicalHost(cfg.BaseURL.Scheme, cfg.BaseURL.Host),
		versions: sdk.SupportedProtocolVersions(),
		caps:     newCapMemo(cfg.Now),
		log:      cfg.Logger,
	}
	h.origin = strings.ToLower(cfg.BaseURL.Scheme) + "://" + h.host
	h.base = h.origin
	h.cache = newTenantCache(cfg.Registry, h.base, cfg.TenantTTL, cfg.Now)
	var err error
	if h.state, err = newStateCodec(cfg.Sealer, cfg.Now); err != nil {
		return nil, err
	}
	if h.gates, err = egress.NewBreakers[upstreamKey](egress.BreakerOptions{
		Threshold: cfg.BreakerThreshold, CoolDown: cfg.BreakerCoolDown,
		MaxInFlight: cfg.UpstreamMaxInFlight, InFlightWait: cfg.UpstreamSlotWait, Now: cfg.Now,
	}); err != nil {
		return nil, fmt.Errorf("mcp: upstream gates: %w", err)
	}
	h.relay = newRelay(cfg.HTTPClient, cfg.Logger, cfg.Now, h.gates)
	h.sdk = sdk.NewStreamableHTTPHandler(func(r *http.Request) *sdk.Server {
		rs, _ := r.Context().Value(reqStateKey{}).(*reqState)
		if rs == nil {
			return nil
		}
		return rs.server
	}, &sdk.StreamableHTTPOptions{
		Stateless: true,
		// Host and Origin are checked against the base URL before the SDK
		// runs, which is stricter than its loopback-only check.
		DisableLocalhostProtection:   true,
		MaxRequestBodyBytes:          cfg.MaxBodyBytes,
		PropagateRequestCancellation: true,
		Logger:                       cfg.Logger,
	})
	return h, nil
}

// Invalidate drops a tenant's cached registrations on this instance, so the
// next request reloads them (for LISTEN/NOTIFY-driven invalidation).
func (h *Handler) Invalidate(slug string) { h.cache.invalidate(slug) }

// reqState is what one authenticated MCP request carries through the SDK.
type reqState struct {
	snap      *snapshot
	principal tokena.Principal
	rawToken  string
	tokenKey  [32]byte
	requestID string
	version   string // MCP-Protocol-Version header
	server    *sdk.Server
	method    string
}

type reqStateKey struct{}

// ServeHTTP routes the two paths this handler owns.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if slug, ok := cutPath(r.URL.Path, "/.well-known/oauth-protected-resource/t/", "/mcp"); ok {
		h.serveMetadata(w, r, slug)
		return
	}
	if slug, ok := cutPath(r.URL.Path, "/t/", "/mcp"); ok {
		h.serveMCP(w, r, slug)
		return
	}
	writeOAuthError(w, http.StatusNotFound, "not_found", "there is no MCP endpoint at this URL", "")
}

// cutPath returns the single path segment between prefix and suffix.
func cutPath(p, prefix, suffix string) (string, bool) {
	rest, ok := strings.CutPrefix(p, prefix)
	if !ok {
		return "", false
	}
	slug, ok := strings.CutSuffix(rest, suffix)
	if !ok || slug == "" || strings.Contains(slug, "/") {
		return "", false
	}
	return slug, true
}

func (h *Handler) serveMCP(w http.ResponseWriter, r *http.Request, slug string) {
	ctx := r.Context()
	if !h.checkHost(w, r) || !h.checkOrigin(w, r) {
		return
	}
	snap, err := h.cache.get(ctx, slug)
	if err != nil {
		if errors.Is(err, errNoEndpoint) {
			writeOAuthError(w, http.StatusNotFound, "not_found", "there is no MCP endpoint at this URL", "")
			return
		}
		h.log.ErrorContext(ctx, "mcp tenant lookup failed", "err", err, "request_id", requestID(w))
		writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable",
			"Locksmith can't read this tenant's settings right now; retry in a few seconds (request id "+requestID(w)+")", "")
		return
	}
	if r.Method == http.MethodOptions {
		w.Header().Set("Allow", "POST")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rs, ok := h.authenticate(w, r, snap)
	if !ok {
		return
	}
	if r.Method != http.MethodPost {
		// The endpoint is stateless: no GET stream, no DELETE of a session.
		w.Header().Set("Allow", "POST")
		writeOAuthError(w, http.StatusMethodNotAllowed, "method_not_allowed",
			"this MCP endpoint is stateless and only accepts POST; it has no GET event stream and no sessions to DELETE", "")
		return
	}
	body, err := readBody(r.Body, h.cfg.MaxBodyBytes)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeRPCError(w, http.StatusRequestEntityTooLarge, nil, -32600,
				fmt.Sprintf("the request body is larger than the limit of %d bytes (1 MiB)", h.cfg.MaxBodyBytes), nil)
			return
		}
		writeRPCError(w, http.StatusBadRequest, nil, -32600, "the request body could not be read", nil)
		return
	}
	msgs, perr := parseMessages(body)
	if perr != nil {
		perr.write(w)
		return
	}
	rs.version = r.Header.Get("Mcp-Protocol-Version")
	if rs.version != "" && !contains(h.versions, rs.version) {
		writeUnsupportedVersion(w, firstID(msgs), rs.version, h.versions)
		return
	}
	if len(msgs) == 1 {
		rs.method = msgs[0].method
		if msgs[0].method == "initialize" && msgs[0].urlElicitation {
			h.caps.put(rs.tokenKey, rs.principal.ExpiresAt)
		}
	}
	if h.serveFastCall(w, r, rs, msgs) {
		return
	}
	rs.server = h.buildServer(ctx, rs, msgs)
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	h.sdk.ServeHTTP(w, r.WithContext(context.WithValue(ctx, reqStateKey{}, rs)))
}

// readBody reads at most limit bytes; a longer body is a *http.MaxBytesError.
func readBody(rc io.ReadCloser, limit int64) ([]byte, error) {
	if rc == nil {
		return nil, nil
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	return b, nil
}

// checkHost refuses requests whose Host is not the base URL's (DNS
// rebinding, or a misrouted request): 421 Misdirected Request.
func (h *Handler) checkHost(w http.ResponseWriter, r *http.Request) bool {
	if canonicalHost(h.cfg.BaseURL.Scheme, r.Host) == h.host {
		return true
	}
	writeOAuthError(w, http.StatusMisdirectedRequest, "misdirected_request",
		"this server only answers requests addressed to "+h.host+"; check the MCP URL you were given", "")
	return false
}

// checkOrigin refuses requests from a browser page of another origin: an
// Origin header, when present, must be the base URL's origin.
func (h *Handler) checkOrigin(w http.ResponseWriter, r *http.Request) bool {
	o := r.Header.Values("Origin")
	if len(o) == 0 {
		return true
	}
	if len(o) == 1 {
		if u, err := url.Parse(o[0]); err == nil && u.Path == "" && u.RawQuery == "" && u.User == nil &&
			strings.EqualFold(u.Scheme, h.cfg.BaseURL.Scheme) && canonicalHost(h.cfg.BaseURL.Scheme, u.Host) == h.host {
			return true
		}
	}
	writeOAuthError(w, http.StatusForbidden, "invalid_origin",
		"requests from web pages of other origins are refused (Origin must be "+h.origin+")", "")
	return false
}

// canonicalHost lowercases host and drops the scheme's default port.
func canonicalHost(scheme, host string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	switch {
	case scheme == "https" && strings.HasSuffix(host, ":443"):
		host = strings.TrimSuffix(host, ":443")
	case scheme == "http" && strings.HasSuffix(host, ":80"):
		host = strings.TrimSuffix(host, ":80")
	}
	return host
}

// requestID returns the id web's middleware gave this request (it sets the
// X-Request-Id response header before calling us), or a fresh one.
func requestID(w http.ResponseWriter) string {
	if id := w.Header().Get("X-Request-Id"); id != "" {
		return id
	}
	id := randomID()
	w.Header().Set("X-Request-Id", id)
	return id
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func tokenKey(raw string) [32]byte { return sha256.Sum256([]byte(raw)) }
