package egress

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// testServer is an httptest server on 127.0.0.1 that counts requests.
type testServer struct {
	*httptest.Server
	hits atomic.Int32
}

func newTestServer(t *testing.T, tls bool, h http.HandlerFunc) *testServer {
	t.Helper()
	s := &testServer{}
	wrapped := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		h(w, r)
	})
	if tls {
		s.Server = httptest.NewTLSServer(wrapped)
	} else {
		s.Server = httptest.NewServer(wrapped)
	}
	t.Cleanup(s.Close)
	return s
}

func (s *testServer) port() string {
	_, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	return port
}

func (s *testServer) roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	return pool
}

func ok(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }

func get(ctx context.Context, c *Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestNew(t *testing.T) {
	t.Parallel()

	c, err := New(Options{})
	require.NoError(t, err)
	hc := c.HTTPClient()
	require.Equal(t, DefaultTimeout, hc.Timeout)
	tr := hc.Transport.(*guardTransport).next.(*http.Transport)
	require.Nil(t, tr.Proxy, "a proxy would bypass the dial guard")
	require.Equal(t, DefaultMaxIdleConnsPerHost, tr.MaxIdleConnsPerHost)
	require.Equal(t, DefaultResponseHeaderTimeout, tr.ResponseHeaderTimeout)
	require.Equal(t, int64(DefaultMaxResponseBytes), c.maxBytes)

	for _, bad := range []Options{
		{Timeout: -1},
		{DialTimeout: -1},
		{ResponseHeaderTimeout: -1},
		{MaxResponseBytes: -1},
		{MaxIdleConnsPerHost: -1},
	} {
		_, err := New(bad)
		require.Error(t, err, "%+v", bad)
	}
}

// TestLoopbackServer: a real server on 127.0.0.1 is refused by default,
// before any byte reaches it, and reachable with AllowPrivate.
func TestLoopbackServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	tlsSrv := newTestServer(t, true, ok)
	plainSrv := newTestServer(t, false, ok)

	strict, err := New(Options{RootCAs: tlsSrv.roots()})
	require.NoError(t, err)
	_, err = get(ctx, strict, tlsSrv.URL)
	require.ErrorIs(t, err, ErrForbiddenTarget)
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, "127.0.0.1", e.Addr.String())
	require.Equal(t, "that address is loopback and not allowed (127.0.0.1)", e.Error())

	_, err = get(ctx, strict, plainSrv.URL)
	require.ErrorIs(t, err, ErrInvalidURL, "plain http needs AllowPrivate")

	// localhost through the real system resolver is refused too.
	_, err = get(ctx, strict, "https://localhost:"+tlsSrv.port()+"/")
	require.Error(t, err)
	require.Zero(t, tlsSrv.hits.Load())
	require.Zero(t, plainSrv.hits.Load())

	lax, err := New(Options{RootCAs: tlsSrv.roots(), AllowPrivate: true})
	require.NoError(t, err)
	body, err := get(ctx, lax, tlsSrv.URL)
	require.NoError(t, err)
	require.Equal(t, "ok", body)
	body, err = get(ctx, lax, plainSrv.URL)
	require.NoError(t, err)
	require.Equal(t, "ok", body)
}

// TestDialGuard calls the net.Dialer Control hook directly: it is the last
// check before connect.
func TestDialGuard(t *testing.T) {
	t.Parallel()

	strict, err := New(Options{})
	require.NoError(t, err)
	require.ErrorIs(t, strict.control("tcp4", "127.0.0.1:80", nil), ErrForbiddenTarget)
	require.ErrorIs(t, strict.control("tcp6", "[::ffff:169.254.169.254]:80", nil), ErrForbiddenTarget)
	require.ErrorIs(t, strict.control("tcp6", "[fe80::1%eth0]:80", nil), ErrForbiddenTarget)
	require.NoError(t, strict.control("tcp4", "8.8.8.8:443", nil))

	lax, err := New(Options{AllowPrivate: true})
	require.NoError(t, err)
	require.NoError(t, lax.control("tcp4", "127.0.0.1:80", nil))

	// Inet_aton spellings reaching the dialer are read the same way.
	_, err = strict.dialContext(context.Background(), "tcp", "0x7f.1:80")
	require.ErrorIs(t, err, ErrForbiddenTarget)
	_, err = strict.dialContext(context.Background(), "tcp", "2130706433:80")
	require.ErrorIs(t, err, ErrForbiddenTarget)
}

// TestNameResolvingToPrivate: a DNS name whose only address is private is
// refused at dial time, not just by CheckURL.
func TestNameResolvingToPrivate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	srv := newTestServer(t, true, ok)
	d := &loopbackDialer{}
	c, err := New(Options{
		RootCAs:  srv.roots(),
		Resolver: mapResolver(map[string][]string{"internal.example.com": {"127.0.0.1"}, "lan.example.com": {"8.8.8.8", "192.168.0.10"}}),
		dial:     d.dial,
	})
	require.NoError(t, err)

	for _, host := range []string{"internal.example.com", "lan.example.com"} {
		_, err = get(ctx, c, "https://"+host+":"+srv.port()+"/")
		require.ErrorIs(t, err, ErrForbiddenTarget, host)
		require.ErrorIs(t, c.CheckURL(ctx, "https://"+host+"/"), ErrForbiddenTarget, host)
	}
	require.Empty(t, d.addresses())
	require.Zero(t, srv.hits.Load())
}

// TestDNSRebinding: the name is public when CheckURL looks, private when
// the request dials. The dial-time check refuses it.
func TestDNSRebinding(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	srv := newTestServer(t, true, ok)
	var lookups atomic.Int32
	rebinding := resolverFunc(func(context.Context, string, string) ([]netip.Addr, error) {
		if lookups.Add(1) == 1 {
			return []netip.Addr{netip.MustParseAddr("8.8.8.8")}, nil
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	})
	d := &loopbackDialer{}
	c, err := New(Options{RootCAs: srv.roots(), Resolver: rebinding, dial: d.dial})
	require.NoError(t, err)

	url := "https://rebind.example.com:" + srv.port() + "/"
	require.NoError(t, c.CheckURL(ctx, url))
	_, err = get(ctx, c, url)
	require.ErrorIs(t, err, ErrForbiddenTarget)
	require.Empty(t, d.addresses())
	require.Zero(t, srv.hits.Load())
}

// TestRedirects: a server reachable under a public-looking name redirects
// to private targets; every such hop is refused before it connects.
func TestRedirects(t *testing.T) {
	t.Parallel()

	type testBundle struct {
		public  *testServer // https, reached as idp.example.com → 8.8.8.8
		private *testServer // https on 127.0.0.1
		plain   *testServer // http on 127.0.0.1
		dialer  *loopbackDialer
		hosts   map[string][]string
	}
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		b := &testBundle{dialer: &loopbackDialer{}}
		b.private = newTestServer(t, true, ok)
		b.plain = newTestServer(t, false, ok)
		b.public = newTestServer(t, true, func(w http.ResponseWriter, r *http.Request) {
			port := b.public.port()
			switch r.URL.Path {
			case "/to-private-https":
				http.Redirect(w, r, b.private.URL+"/", http.StatusFound)
			case "/to-private-http":
				http.Redirect(w, r, "http://127.0.0.1:"+b.plain.port()+"/", http.StatusFound)
			case "/to-private-name":
				http.Redirect(w, r, "https://internal.example.com:"+b.private.port()+"/", http.StatusTemporaryRedirect)
			case "/to-metadata":
				http.Redirect(w, r, "https://169.254.169.254/latest/meta-data/", http.StatusMovedPermanently)
			case "/to-decimal":
				http.Redirect(w, r, "https://2130706433:"+b.private.port()+"/", http.StatusFound)
			case "/to-mapped":
				http.Redirect(w, r, "https://[::ffff:127.0.0.1]:"+b.private.port()+"/", http.StatusFound)
			case "/to-http-public":
				http.Redirect(w, r, "http://idp.example.com:"+port+"/ok", http.StatusFound)
			case "/to-userinfo":
				http.Redirect(w, r, "https://user:pw@idp.example.com:"+port+"/ok", http.StatusFound)
			case "/to-public":
				http.Redirect(w, r, "https://api.example.com:"+port+"/ok", http.StatusFound)
			case "/loop":
				http.Redirect(w, r, "/loop", http.StatusFound)
			case "/ok":
				ok(w, r)
			default:
				http.NotFound(w, r)
			}
		})
		b.hosts = map[string][]string{
			"idp.example.com":      {"8.8.8.8"},
			"api.example.com":      {"8.8.4.4"},
			"internal.example.com": {"127.0.0.1"},
		}
		return b
	}
	ctx := context.Background()

	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		pool := b.public.roots() // all httptest TLS servers share one certificate
		c, err := New(Options{RootCAs: pool, Resolver: mapResolver(b.hosts), dial: b.dialer.dial})
		require.NoError(t, err)

		tests := []struct {
			path    string
			wantErr error
		}{
			{"/to-private-https", ErrForbiddenTarget},
			{"/to-private-http", ErrInsecureRedirect},
			{"/to-private-name", ErrForbiddenTarget},
			{"/to-metadata", ErrForbiddenTarget},
			{"/to-decimal", ErrForbiddenTarget},
			{"/to-mapped", ErrForbiddenTarget},
			{"/to-http-public", ErrInsecureRedirect},
			{"/to-userinfo", ErrInvalidURL},
		}
		for _, tt := range tests {
			_, err := get(ctx, c, "https://idp.example.com:"+b.public.port()+tt.path)
			require.ErrorIs(t, err, tt.wantErr, tt.path)
			var e *Error
			require.ErrorAs(t, err, &e, tt.path)
			require.NotEmpty(t, e.Error())
		}
		require.Zero(t, b.private.hits.Load(), "no private server was reached")
		require.Zero(t, b.plain.hits.Load(), "no private server was reached")
		for _, a := range b.dialer.addresses() {
			require.True(t, strings.HasPrefix(a, "8.8.8.8:"), "only the checked public address was dialled, got %s", a)
		}

		body, err := get(ctx, c, "https://idp.example.com:"+b.public.port()+"/to-public")
		require.NoError(t, err, "a redirect between public hosts is followed")
		require.Equal(t, "ok", body)
	})

	t.Run("too many", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c, err := New(Options{RootCAs: b.public.roots(), Resolver: mapResolver(b.hosts), dial: b.dialer.dial, MaxRedirects: 3})
		require.NoError(t, err)
		_, err = get(ctx, c, "https://idp.example.com:"+b.public.port()+"/loop")
		require.ErrorIs(t, err, ErrTooManyRedirects)
		require.EqualValues(t, 4, b.public.hits.Load(), "the first request and 3 redirects")
	})

	t.Run("not followed", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c, err := New(Options{RootCAs: b.public.roots(), Resolver: mapResolver(b.hosts), dial: b.dialer.dial, MaxRedirects: -1})
		require.NoError(t, err)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://idp.example.com:"+b.public.port()+"/to-private-https", nil)
		require.NoError(t, err)
		resp, err := c.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusFound, resp.StatusCode)
		require.Zero(t, b.private.hits.Load())
	})

	t.Run("allow private", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c, err := New(Options{RootCAs: b.public.roots(), Resolver: mapResolver(b.hosts), dial: b.dialer.dial, AllowPrivate: true})
		require.NoError(t, err)
		for _, path := range []string{"/to-private-https", "/to-private-http", "/to-private-name"} {
			body, err := get(ctx, c, "https://idp.example.com:"+b.public.port()+path)
			require.NoError(t, err, path)
			require.Equal(t, "ok", body, path)
		}
	})
}

func TestResponseSizeCap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const limit = 1024

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(make([]byte, 1<<20)) // 1 MiB of zeros, ~1 KiB compressed
	require.NoError(t, zw.Close())

	srv := newTestServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		switch r.URL.Path {
		case "/length":
			w.Header().Set("Content-Length", strconv.Itoa(n))
			_, _ = w.Write(make([]byte, n))
		case "/chunked":
			for i := range n {
				_, _ = w.Write([]byte{'x'})
				if i%100 == 0 {
					w.(http.Flusher).Flush()
				}
			}
			w.(http.Flusher).Flush()
		case "/gzip":
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(gz.Bytes())
		}
	})
	c, err := New(Options{AllowPrivate: true, MaxResponseBytes: limit})
	require.NoError(t, err)

	tests := []struct {
		path    string
		wantLen int
		wantErr bool
	}{
		{"/length?n=0", 0, false},
		{"/length?n=1024", 1024, false},
		{"/length?n=1025", 0, true},
		{"/length?n=1000000", 0, true},
		{"/chunked?n=1024", 1024, false},
		{"/chunked?n=1025", 0, true},
		{"/chunked?n=100000", 0, true},
		{"/gzip", 0, true}, // the cap applies after decompression
	}
	for _, tt := range tests {
		body, err := get(ctx, c, srv.URL+tt.path)
		if tt.wantErr {
			require.ErrorIs(t, err, ErrResponseTooLarge, tt.path)
			require.EqualError(t, errorsAsEgress(t, err), "the response is larger than the limit of 1 KiB")
			continue
		}
		require.NoError(t, err, tt.path)
		require.Len(t, body, tt.wantLen, tt.path)
	}

	// HEAD with a large Content-Length has no body and is fine.
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, srv.URL+"/length?n=5000", nil)
	require.NoError(t, err)
	resp, err := c.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
}

func errorsAsEgress(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	require.ErrorAs(t, err, &e)
	return e
}

func TestUserAgent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	srv := newTestServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.UserAgent())
	})

	def, err := New(Options{AllowPrivate: true})
	require.NoError(t, err)
	body, err := get(ctx, def, srv.URL)
	require.NoError(t, err)
	require.Equal(t, DefaultUserAgent, body)

	custom, err := New(Options{AllowPrivate: true, UserAgent: "Locksmith/1.2 (+https://locksmith.example)"})
	require.NoError(t, err)
	body, err = get(ctx, custom, srv.URL)
	require.NoError(t, err)
	require.Equal(t, "Locksmith/1.2 (+https://locksmith.example)", body)

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	req.Header.Set("User-Agent", "caller")
	resp, err := custom.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "caller", string(b))

	req, err = http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	resp, err = def.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Empty(t, req.Header.Get("User-Agent"), "the caller's request is not modified")
}
