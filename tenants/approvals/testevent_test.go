package approvals_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants/approvals"
	"github.com/locksmithhq/locksmith/tenants/egress"
)

// receiver is a webhook receiver on a real HTTP server that records every
// request it gets.
type receiver struct {
	srv  *httptest.Server
	hits atomic.Int32

	mu      sync.Mutex
	bodies  [][]byte
	headers []http.Header
}

func newReceiver(t *testing.T, tls bool, answer http.HandlerFunc) *receiver {
	t.Helper()
	rc := &receiver{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.bodies = append(rc.bodies, body)
		rc.headers = append(rc.headers, r.Header.Clone())
		rc.mu.Unlock()
		answer(w, r)
	})
	if tls {
		rc.srv = httptest.NewTLSServer(h)
	} else {
		rc.srv = httptest.NewServer(h)
	}
	t.Cleanup(rc.srv.Close)
	return rc
}

// switchResolver resolves host names from a map the test may change, so a
// name can pass the check at save time and resolve elsewhere at send time
// (DNS rebinding).
type switchResolver struct {
	mu    sync.Mutex
	addrs map[string][]netip.Addr
}

func (r *switchResolver) set(host string, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.addrs == nil {
		r.addrs = map[string][]netip.Addr{}
	}
	r.addrs[host] = nil
	for _, a := range addrs {
		r.addrs[host] = append(r.addrs[host], netip.MustParseAddr(a))
	}
}

func (r *switchResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a := r.addrs[host]; len(a) > 0 {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

const testSecret = "whsec-test-0123456789abcdef"

func (b *testBundle) saveWebhook(t *testing.T, rawURL string) {
	t.Helper()
	secret := testSecret
	_, err := b.svc.SaveSettings(b.ctx, b.tenant, approvals.SettingsInput{ApproverGroup: "approvers", WebhookURL: rawURL, WebhookSecret: &secret})
	require.NoError(t, err)
}

// requireNoSecret fails if the secret shows anywhere in the result.
func requireNoSecret(t *testing.T, res approvals.TestResult) {
	t.Helper()
	require.NotContains(t, fmt.Sprintf("%+v %#v", res, res), testSecret)
}

// TestSendTestDelivered: one signed approval.test event reaches the
// receiver, verifiable with VerifySignature, with no request data in it.
func TestSendTestDelivered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, false, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	b.saveWebhook(t, rc.srv.URL+"/hooks/locksmith?token=receiver-token")

	res, err := b.notifier.SendTest(b.ctx, b.tenant)
	require.NoError(t, err)
	require.True(t, res.OK(), "%+v", res)
	require.Equal(t, approvals.TestDelivered, res.Outcome)
	require.Equal(t, http.StatusAccepted, res.Status)
	require.Equal(t, "202 Accepted", res.StatusText)
	require.Positive(t, res.Latency)
	require.Less(t, res.Latency, approvals.TestTimeout)
	require.Equal(t, rc.srv.Listener.Addr().String(), res.Host)
	require.NotEqual(t, uuid.Nil, res.EventID)
	require.Empty(t, res.Fix)
	require.NotContains(t, fmt.Sprintf("%+v", res), "receiver-token", "the URL's query is not part of the result")
	requireNoSecret(t, res)

	require.EqualValues(t, 1, rc.hits.Load(), "exactly one request, no retry")
	rc.mu.Lock()
	body, hdr := rc.bodies[0], rc.headers[0]
	rc.mu.Unlock()
	require.Equal(t, approvals.EventTest, hdr.Get(approvals.EventHeader))
	require.Equal(t, "application/json", hdr.Get("Content-Type"))
	sig := hdr.Get(approvals.SignatureHeader)
	require.NoError(t, approvals.VerifySignature([]byte(testSecret), sig, body, b.clock.Now(), 5*time.Minute))
	require.Error(t, approvals.VerifySignature([]byte("another-secret-value"), sig, body, b.clock.Now(), 5*time.Minute))
	require.NotContains(t, string(body), testSecret)
	require.NotContains(t, sig, testSecret)

	var p approvals.TestPayload
	require.NoError(t, json.Unmarshal(body, &p))
	require.Equal(t, approvals.EventTest, p.Type)
	require.True(t, p.Test)
	require.Equal(t, res.EventID, p.ID)
	require.Equal(t, b.slug, p.Tenant)
	var keys map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(body, &keys))
	for _, k := range []string{"tool", "args", "requester", "agent", "approval_url", "upstream"} {
		require.NotContains(t, keys, k, "a test event carries no request data")
	}
}

// TestSendTestServerError: a 500 is reported with its status and the start
// of its body, sanitized, with the secret redacted; it is not retried.
func TestSendTestServerError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "boom:\tcannot verify with "+testSecret+"\r\n\x1b[31m\u202eevil\u202c "+strings.Repeat("x", 500))
	})
	b.saveWebhook(t, rc.srv.URL+"/hook")

	res, err := b.notifier.SendTest(b.ctx, b.tenant)
	require.NoError(t, err)
	require.False(t, res.OK())
	require.Equal(t, approvals.TestHTTPStatus, res.Outcome)
	require.Equal(t, http.StatusInternalServerError, res.Status)
	require.Contains(t, res.Message, "500 Internal Server Error")
	require.NotEmpty(t, res.Fix)
	require.True(t, strings.HasPrefix(res.Body, "boom: cannot verify with [redacted] "), res.Body)
	require.LessOrEqual(t, len(strings.TrimSuffix(res.Body, "…")), 200)
	require.True(t, strings.HasSuffix(res.Body, "…"))
	for _, r := range res.Body {
		require.False(t, unicode.IsControl(r) || unicode.Is(unicode.Cf, r), "control or format character %U in %q", r, res.Body)
	}
	requireNoSecret(t, res)
	require.EqualValues(t, 1, rc.hits.Load())
}

// TestSendTestNotConfigured: without a webhook, or without a secret,
// nothing is sent and the result says what to do.
func TestSendTestNotConfigured(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, err := b.notifier.SendTest(b.ctx, b.tenant)
	require.NoError(t, err)
	require.Equal(t, approvals.TestNoWebhook, res.Outcome)
	require.False(t, res.OK())
	require.Contains(t, res.Message, "No webhook URL is saved")
	require.Contains(t, res.Fix, "Webhook URL")
	require.Equal(t, uuid.Nil, res.EventID)

	// A URL without a secret (not possible through SaveSettings, but the
	// column allows it).
	rc := newReceiver(t, false, func(w http.ResponseWriter, r *http.Request) {})
	b.saveWebhook(t, rc.srv.URL+"/hook")
	require.NoError(t, sqltest.DB(t).InTenant(b.ctx, b.tenant, func(tx pgx.Tx) error {
		_, err := tx.Exec(b.ctx, "UPDATE approval_settings SET webhook_secret_sealed = NULL WHERE tenant_id = $1", b.tenant)
		return err
	}))
	res, err = b.notifier.SendTest(b.ctx, b.tenant)
	require.NoError(t, err)
	require.Equal(t, approvals.TestNoSecret, res.Outcome)
	require.Contains(t, res.Message, "no signing secret")
	require.Zero(t, rc.hits.Load())

	// A tenant that does not exist is an error, not a result.
	_, err = b.notifier.SendTest(b.ctx, uuid.New())
	require.Error(t, err)
}

// TestSendTestSSRF: with the production guard, a webhook host that passed
// the check when saved but now resolves to a private address (DNS
// rebinding) is refused before any connection; the receiver, which would
// otherwise accept the request, is never called.
func TestSendTestSSRF(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ addr, reason string }{
		{"127.0.0.1", "loopback"},
		{"10.20.30.40", "private"},
		{"169.254.169.254", "metadata"},
		{"::ffff:127.0.0.1", "loopback"},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			t.Parallel()
			rc := newReceiver(t, true, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
			res := &switchResolver{}
			// httptest's certificate is valid for example.com, so without the
			// guard this request would reach the receiver.
			res.set("example.com", "93.184.215.14")
			pool := x509.NewCertPool()
			pool.AddCert(rc.srv.Certificate())
			b := setupEgress(t, egress.Options{Resolver: res, RootCAs: pool})
			_, port, err := net.SplitHostPort(rc.srv.Listener.Addr().String())
			require.NoError(t, err)
			b.saveWebhook(t, "https://example.com:"+port+"/hook")

			res.set("example.com", tc.addr)
			got, err := b.notifier.SendTest(b.ctx, b.tenant)
			require.NoError(t, err)
			require.Equal(t, approvals.TestBlocked, got.Outcome, "%+v", got)
			require.Contains(t, got.Message, tc.reason)
			require.Contains(t, got.Message, "example.com resolves to")
			require.Contains(t, got.Fix, "SSRF")
			require.Zero(t, got.Status)
			requireNoSecret(t, got)
			require.Zero(t, rc.hits.Load(), "the receiver must not be called")
		})
	}
}

// TestSendTestTransportFailures: DNS failure, connection refused and a
// timeout each get their own outcome and message.
func TestSendTestTransportFailures(t *testing.T) {
	t.Parallel()

	t.Run("dns", func(t *testing.T) {
		t.Parallel()
		res := &switchResolver{}
		res.set("hooks.acme.example", "127.0.0.1")
		b := setupEgress(t, egress.Options{AllowPrivate: true, Resolver: res})
		b.saveWebhook(t, "http://hooks.acme.example/hook")
		res.set("hooks.acme.example") // the record is gone
		got, err := b.notifier.SendTest(b.ctx, b.tenant)
		require.NoError(t, err)
		require.Equal(t, approvals.TestDNS, got.Outcome, "%+v", got)
		require.Contains(t, got.Message, `"hooks.acme.example" could not be resolved`)
		requireNoSecret(t, got)
	})

	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		b := setup(t)
		b.saveWebhook(t, "http://"+addr+"/hook")
		got, err := b.notifier.SendTest(b.ctx, b.tenant)
		require.NoError(t, err)
		require.Equal(t, approvals.TestRefused, got.Outcome, "%+v", got)
		require.Contains(t, got.Message, addr)
		require.Contains(t, got.Message, "refused")
		requireNoSecret(t, got)
	})

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		rc := newReceiver(t, false, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		b := setup(t)
		b.saveWebhook(t, rc.srv.URL+"/slow")
		ctx, cancel := context.WithTimeout(b.ctx, 300*time.Millisecond)
		defer cancel()
		got, err := b.notifier.SendTest(ctx, b.tenant)
		require.NoError(t, err)
		require.Equal(t, approvals.TestTimedOut, got.Outcome, "%+v", got)
		require.Contains(t, got.Message, "No answer from")
		require.Less(t, got.Latency, 5*time.Second)
		requireNoSecret(t, got)
	})
}
