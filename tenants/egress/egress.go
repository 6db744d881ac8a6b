package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// Defaults applied by [New] to zero-valued [Options] fields.
const (
	// DefaultTimeout bounds a whole request, body included.
	DefaultTimeout = 10 * time.Second
	// DefaultDialTimeout bounds resolving plus connecting, and the TLS
	// handshake.
	DefaultDialTimeout = 5 * time.Second
	// DefaultResponseHeaderTimeout bounds the wait for response headers.
	DefaultResponseHeaderTimeout = 10 * time.Second
	// DefaultMaxResponseBytes caps a response body: 10 MiB.
	DefaultMaxResponseBytes = 10 << 20
	// DefaultMaxIdleConnsPerHost sizes the idle pool per host.
	DefaultMaxIdleConnsPerHost = 64
	// DefaultMaxRedirects is how many redirects a request may follow.
	DefaultMaxRedirects = 5
	// DefaultUserAgent is sent when a request sets no User-Agent.
	DefaultUserAgent = "Locksmith"
)

// Resolver looks up the IP addresses of a host name. *net.Resolver
// satisfies it; tests inject a map.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options configures a [Client]. The zero value is the production policy:
// private targets refused, https only, and the defaults below.
type Options struct {
	// AllowPrivate turns the SSRF guard off: every address is allowed,
	// plain http is allowed, and https→http redirects are followed. For
	// development and tests only. Default false.
	AllowPrivate bool
	// Timeout bounds a whole request, redirects and body reading included.
	// Zero means DefaultTimeout (10s); negative is an error.
	Timeout time.Duration
	// DialTimeout bounds resolving and connecting for one connection, and
	// separately the TLS handshake. Zero means DefaultDialTimeout (5s).
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for response headers after the
	// request is written. Zero means DefaultResponseHeaderTimeout (10s).
	ResponseHeaderTimeout time.Duration
	// MaxResponseBytes caps each response body, after decompression;
	// reading past it fails with ErrResponseTooLarge. Zero means
	// DefaultMaxResponseBytes (10 MiB).
	MaxResponseBytes int64
	// MaxIdleConnsPerHost is the idle connection pool size per host. Zero
	// means DefaultMaxIdleConnsPerHost (64); Go's own default of 2 churns
	// connections under load.
	MaxIdleConnsPerHost int
	// MaxRedirects is how many redirects one request may follow before
	// failing with ErrTooManyRedirects. Zero means DefaultMaxRedirects (5);
	// negative means redirects are not followed and the 3xx response is
	// returned to the caller.
	MaxRedirects int
	// UserAgent is sent when a request has no User-Agent header. Empty
	// means DefaultUserAgent.
	UserAgent string
	// Resolver resolves host names, both in CheckURL and on every dial. Nil
	// means net.DefaultResolver.
	Resolver Resolver
	// RootCAs are the certificate authorities trusted for https. Nil means
	// the system roots.
	RootCAs *x509.CertPool

	// dial, when set by tests in this package, replaces the network dial
	// of an already checked "ip:port" address. It lets a test pretend a
	// public address is served by a local httptest server.
	dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// Client is Locksmith's outbound HTTP client with the SSRF guard. It is
// safe for concurrent use; build one with [New] and share it.
type Client struct {
	http         *http.Client
	resolver     Resolver
	dial         func(ctx context.Context, network, address string) (net.Conn, error)
	allowPrivate bool
	dialTimeout  time.Duration
	maxBytes     int64
	userAgent    string
}

// New validates opts, applies the defaults and returns a Client. It fails
// only on negative durations or limits.
func New(opts Options) (*Client, error) {
	if opts.Timeout < 0 || opts.DialTimeout < 0 || opts.ResponseHeaderTimeout < 0 {
		return nil, errors.New("egress: new client: timeouts must not be negative")
	}
	if opts.MaxResponseBytes < 0 || opts.MaxIdleConnsPerHost < 0 {
		return nil, errors.New("egress: new client: limits must not be negative")
	}
	c := &Client{
		resolver:     opts.Resolver,
		dial:         opts.dial,
		allowPrivate: opts.AllowPrivate,
		dialTimeout:  orDefault(opts.DialTimeout, DefaultDialTimeout),
		maxBytes:     orDefault(opts.MaxResponseBytes, DefaultMaxResponseBytes),
		userAgent:    orDefault(opts.UserAgent, DefaultUserAgent),
	}
	if c.resolver == nil {
		c.resolver = net.DefaultResolver
	}
	if c.dial == nil {
		d := &net.Dialer{Control: c.control}
		c.dial = d.DialContext
	}
	maxIdle := orDefault(opts.MaxIdleConnsPerHost, DefaultMaxIdleConnsPerHost)
	tr := &http.Transport{
		Proxy:                  nil, // a proxy would make the guard check the proxy, not the target
		DialContext:            c.dialContext,
		ForceAttemptHTTP2:      true,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: opts.RootCAs},
		TLSHandshakeTimeout:    c.dialTimeout,
		ResponseHeaderTimeout:  orDefault(opts.ResponseHeaderTimeout, DefaultResponseHeaderTimeout),
		ExpectContinueTimeout:  time.Second,
		IdleConnTimeout:        90 * time.Second,
		MaxIdleConns:           4 * maxIdle,
		MaxIdleConnsPerHost:    maxIdle,
		MaxResponseHeaderBytes: 1 << 20,
	}
	maxRedirects := orDefault(opts.MaxRedirects, DefaultMaxRedirects)
	c.http = &http.Client{
		Transport: &guardTransport{c: c, next: tr},
		Timeout:   orDefault(opts.Timeout, DefaultTimeout),
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			return c.checkRedirect(req, via, maxRedirects)
		},
	}
	return c, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// HTTPClient returns the guarded *http.Client. Hand it to libraries that
// accept one (OIDC discovery, OAuth2, MCP clients); do not copy its
// Transport into another client without its CheckRedirect.
func (c *Client) HTTPClient() *http.Client { return c.http }

// Do sends req with the guarded client; see [http.Client.Do]. Refusals
// come back wrapped in *url.Error and match the package's sentinels with
// errors.Is.
func (c *Client) Do(req *http.Request) (*http.Response, error) { return c.http.Do(req) }

// checkRedirect re-validates every hop's URL (the dialer re-checks its
// address), refuses https→http unless private targets are allowed, and
// enforces the redirect limit.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request, max int) error {
	if max < 0 {
		return http.ErrUseLastResponse
	}
	if len(via) > max {
		return &Error{
			Err:  ErrTooManyRedirects,
			Host: req.URL.Hostname(),
			msg:  fmt.Sprintf("the URL redirected more than %d times", max),
		}
	}
	prev := via[len(via)-1].URL
	if !c.allowPrivate && prev.Scheme == "https" && req.URL.Scheme != "https" {
		return &Error{
			Err:  ErrInsecureRedirect,
			Host: req.URL.Hostname(),
			msg:  fmt.Sprintf("the URL redirected from https to insecure %s, which is not allowed", req.URL.Scheme),
		}
	}
	return c.checkShape(req.URL)
}

// dialContext is the transport's only way onto the network: it resolves
// host itself, refuses the connection if any address is forbidden, and
// dials the checked addresses in order until one connects.
func (c *Client) dialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, invalidURL("", "the URL's host and port could not be read")
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, invalidURL(host, "the URL's port is not valid")
	}
	ctx, cancel := context.WithTimeout(ctx, c.dialTimeout)
	defer cancel()
	addrs, err := c.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if err := c.checkAddr(host, a); err != nil {
			return nil, err
		}
	}
	var errs []error
	for _, a := range addrs {
		if a.Is4In6() {
			a = a.Unmap()
		}
		conn, err := c.dial(ctx, network, netip.AddrPortFrom(a, uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// control is the last line of defence, run by net.Dialer on the socket
// about to connect: whatever address reached the kernel is checked again.
func (c *Client) control(_, address string, _ syscall.RawConn) error {
	if c.allowPrivate {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return invalidURL("", "the address to connect to could not be read")
	}
	return c.checkAddr("", ap.Addr())
}

// guardTransport checks each request's URL, sets the User-Agent and caps
// the response body.
type guardTransport struct {
	c    *Client
	next http.RoundTripper
}

func (t *guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.c.checkShape(req.URL); err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	if req.Header.Get("User-Agent") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("User-Agent", t.c.userAgent)
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if req.Method != http.MethodHead && resp.ContentLength > t.c.maxBytes {
		_ = resp.Body.Close()
		return nil, tooLarge(t.c.maxBytes)
	}
	if resp.Body != http.NoBody && resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body = &limitedBody{rc: resp.Body, remaining: t.c.maxBytes, limit: t.c.maxBytes}
	}
	return resp, nil
}
