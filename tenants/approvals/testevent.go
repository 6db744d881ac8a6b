package approvals

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants/egress"
)

// EventTest is the event of a test delivery, sent on demand from the
// console's approval settings ("Send a test event").
const EventTest = "approval.test"

// TestTimeout bounds a test delivery: resolving, connecting, sending and
// waiting for the response headers, 10 seconds in all (less if the
// caller's context ends sooner).
const TestTimeout = 10 * time.Second

// testBodyBytes is how much of a non-2xx answer a TestResult quotes.
const testBodyBytes = 200

// TestPayload is the JSON body of an approval.test webhook. It carries no
// request data: receivers should verify its signature, answer 2xx and
// otherwise ignore it.
type TestPayload struct {
	// Type is always EventTest.
	Type string `json:"type"`
	// ID is random and unique per test event.
	ID uuid.UUID `json:"id"`
	// Tenant is the tenant's slug.
	Tenant string `json:"tenant"`
	// Test is always true.
	Test      bool      `json:"test"`
	Message   string    `json:"message"`
	CreatedAt time.Time `json:"created_at"`
}

// TestOutcome says how a test delivery ended.
type TestOutcome string

// Test outcomes. Only TestDelivered is a success.
const (
	// TestDelivered: the receiver answered 2xx.
	TestDelivered TestOutcome = "delivered"
	// TestNoWebhook: the tenant saved no webhook URL; nothing was sent.
	TestNoWebhook TestOutcome = "no_webhook"
	// TestNoSecret: a URL is saved without a signing secret; nothing was sent.
	TestNoSecret TestOutcome = "no_secret"
	// TestInvalidURL: the egress client refused the URL's form (scheme,
	// user info, an https→http redirect, too many redirects).
	TestInvalidURL TestOutcome = "invalid_url"
	// TestBlocked: the SSRF guard refused the address the host resolved to
	// (loopback, private, link-local, metadata, …).
	TestBlocked TestOutcome = "blocked"
	// TestDNS: the host name could not be resolved.
	TestDNS TestOutcome = "dns"
	// TestRefused: nothing accepted the connection.
	TestRefused TestOutcome = "connection_refused"
	// TestTimedOut: no answer within the time limit.
	TestTimedOut TestOutcome = "timeout"
	// TestTLS: the TLS handshake or the certificate check failed.
	TestTLS TestOutcome = "tls"
	// TestConnection: any other transport failure.
	TestConnection TestOutcome = "connection"
	// TestHTTPStatus: the receiver answered, but not with 2xx.
	TestHTTPStatus TestOutcome = "http_status"
)

// TestResult is what a person needs to see about a test delivery. Every
// string in it is safe to show to the tenant's admins: it never holds the
// signing secret (nor the webhook URL's path or query, which may hold a
// token of the receiver).
type TestResult struct {
	Outcome TestOutcome
	// EventID is the test event's id; zero when nothing was sent.
	EventID uuid.UUID
	// Host is the webhook URL's host (and port, if it names one).
	Host string
	// SentAt is when the event was signed; zero when nothing was sent.
	SentAt time.Time
	// Status is the HTTP status code of the answer; 0 without one.
	Status int
	// StatusText is the status line, such as "500 Internal Server Error".
	StatusText string
	// Latency runs from sending until the response headers arrived or the
	// attempt failed; 0 when nothing was sent.
	Latency time.Duration
	// Body is the start (at most 200 bytes) of a non-2xx answer, with
	// control and formatting characters replaced and any occurrence of the
	// secret redacted.
	Body string
	// Message says what happened; Fix how to fix it ("" on success).
	Message string
	Fix     string
}

// OK reports whether the receiver accepted the test event.
func (r TestResult) OK() bool { return r.Outcome == TestDelivered }

// SendTest sends one approval.test event, now, to the tenant's saved
// webhook: signed with the saved secret and posted through the same egress
// client (SSRF guard included) and the same code as real deliveries, with
// the Locksmith-Event header set to EventTest. It waits at most TestTimeout
// and follows redirects like a real delivery, and it never retries.
//
// Every way the delivery can fail, including no webhook or no secret
// being configured, is a TestResult whose Outcome says which; the error is
// only for failures of Locksmith itself (the database, the sealer) and is
// wrapped with tenants.ErrNotFound when the tenant is gone. Callers rate
// limit it: it contacts a tenant-chosen URL.
func (n *Notifier) SendTest(ctx context.Context, tenantID uuid.UUID) (TestResult, error) {
	var (
		set  storedSettings
		slug string
	)
	err := n.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, "SELECT slug FROM tenants WHERE id = $1", tenantID).Scan(&slug); err != nil {
			return err
		}
		var err error
		set, err = loadSettings(ctx, tx, tenantID)
		return err
	})
	if err != nil {
		return TestResult{}, fmt.Errorf("approvals: test webhook of tenant %s: %w", tenantID, lsql.Translate(err))
	}
	res := TestResult{}
	if u, err := url.Parse(set.WebhookURL); err == nil {
		res.Host = u.Host
	}
	switch {
	case set.WebhookURL == "":
		res.Outcome = TestNoWebhook
		res.Message = "No webhook URL is saved for this tenant, so there is nowhere to send a test event."
		res.Fix = "Enter an https URL under Webhook URL and a signing secret, save the settings, then send a test event."
		return res, nil
	case len(set.sealedSecret) == 0:
		res.Outcome = TestNoSecret
		res.Message = "A webhook URL is saved but no signing secret, so Locksmith cannot sign events for it."
		res.Fix = fmt.Sprintf("Enter a signing secret of at least %d characters, save the settings, then send a test event.", minSecretLen)
		return res, nil
	}
	secret, err := n.sealer.Open(ctx, tenantID, tenantID, webhookSecretField, set.sealedSecret)
	if err != nil {
		return TestResult{}, fmt.Errorf("approvals: test webhook: open secret: %w", err)
	}

	res.EventID, res.SentAt = uuid.New(), n.now()
	body, err := json.Marshal(TestPayload{
		Type: EventTest, ID: res.EventID, Tenant: slug, Test: true, CreatedAt: res.SentAt,
		Message: "A test event sent from Locksmith's console. It carries no approval request; answer 2xx and ignore it.",
	})
	if err != nil {
		return TestResult{}, fmt.Errorf("approvals: test webhook body: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, TestTimeout)
	defer cancel()
	limit := TestTimeout
	if dl, ok := ctx.Deadline(); ok {
		limit = min(limit, time.Until(dl))
	}
	start := time.Now()
	resp, err := n.post(ctx, set.WebhookURL, EventTest, secret, res.SentAt, body)
	res.Latency = time.Since(start)
	if err != nil {
		describeTestFailure(&res, err, limit)
		return res, nil
	}
	defer resp.Body.Close()
	res.Status, res.StatusText = resp.StatusCode, resp.Status
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		res.Outcome = TestDelivered
		res.Message = fmt.Sprintf("The webhook answered %s.", resp.Status)
		return res, nil
	}
	// Read a little more than is quoted, so the secret is redacted whole
	// even where it would straddle the cut.
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	res.Outcome = TestHTTPStatus
	res.Body = sanitizeBody(head, secret, testBodyBytes)
	res.Message = fmt.Sprintf("The webhook answered %s, not a 2xx status.", resp.Status)
	res.Fix = statusFix(resp.StatusCode)
	return res, nil
}

// describeTestFailure fills res for a request that got no answer. The
// messages come from the egress client's admin-safe errors or name only
// the host; the *url.Error around err (which quotes the whole URL) is
// never shown.
func describeTestFailure(res *TestResult, err error, limit time.Duration) {
	var (
		ee   *egress.Error
		ne   net.Error
		cve  *tls.CertificateVerificationError
		uae  x509.UnknownAuthorityError
		he   x509.HostnameError
		cie  x509.CertificateInvalidError
		rhe  tls.RecordHeaderError
		alrt tls.AlertError
	)
	switch {
	case errors.Is(err, egress.ErrForbiddenTarget):
		res.Outcome = TestBlocked
		res.Message = "Locksmith refused to connect: " + egressMessage(err) + "."
		res.Fix = "Webhooks must go to a public address: Locksmith never connects to loopback, private, link-local or cloud metadata addresses (SSRF protection). Use the receiver's public https URL."
	case errors.Is(err, egress.ErrResolve):
		res.Outcome = TestDNS
		res.Message = "DNS lookup failed: " + egressMessage(err) + "."
		res.Fix = "Check the host name for typos and that it has a public DNS record (A or AAAA)."
	case errors.Is(err, egress.ErrInvalidURL), errors.Is(err, egress.ErrInsecureRedirect), errors.Is(err, egress.ErrTooManyRedirects), errors.Is(err, errBuildRequest):
		res.Outcome = TestInvalidURL
		msg := "the URL could not be used"
		if errors.As(err, &ee) {
			msg = ee.Error()
		}
		res.Message = "Locksmith refused the URL: " + msg + "."
		res.Fix = "Use the receiver's final https URL, without a user name or password, that needs no redirect to plain http."
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		res.Outcome = TestTimedOut
		res.Message = fmt.Sprintf("No answer from %s after %s (a test waits at most %s).", res.Host, roundDuration(res.Latency), roundDuration(limit))
		res.Fix = "Check that the receiver is running and reachable from the internet, and that it answers quickly: acknowledge with 2xx first, do slow work afterwards."
	case errors.Is(err, syscall.ECONNREFUSED):
		res.Outcome = TestRefused
		res.Message = fmt.Sprintf("The connection to %s was refused: nothing is listening there.", res.Host)
		res.Fix = "Check that the receiver is running and listening on that port, and that no firewall or security group closes it to Locksmith."
	case errors.As(err, &cve), errors.As(err, &uae), errors.As(err, &he), errors.As(err, &cie), errors.As(err, &rhe), errors.As(err, &alrt):
		res.Outcome = TestTLS
		res.Message = fmt.Sprintf("The TLS connection to %s failed: %s.", res.Host, innerError(err))
		res.Fix = "The receiver needs a certificate from a public certificate authority, valid now and for this host name, served over TLS 1.2 or later."
	default:
		res.Outcome = TestConnection
		res.Message = fmt.Sprintf("The request to %s failed: %s.", res.Host, innerError(err))
		res.Fix = "Check that the receiver is running and reachable from the internet over https."
	}
}

// egressMessage is the admin-safe message of the egress error in err.
func egressMessage(err error) string {
	var ee *egress.Error
	if errors.As(err, &ee) {
		return ee.Error()
	}
	return innerError(err)
}

// innerError is err without the *url.Error wrapper, whose text quotes the
// whole URL (path and query included).
func innerError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		err = ue.Err
	}
	return err.Error()
}

// statusFix is the advice for a non-2xx answer.
func statusFix(code int) string {
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return "The receiver refused the event: check that it verifies Locksmith-Signature with the same secret saved here, and that its clock is right (old signatures are refused as replays)."
	case code == http.StatusNotFound || code == http.StatusMethodNotAllowed:
		return "Check the URL's path: the receiver has no endpoint there that accepts POST."
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return "The receiver failed or is overloaded; look at its logs. Real deliveries are retried after this answer, for hours."
	case code >= 300 && code < 400:
		return "The receiver redirected without a usable Location; use its final URL."
	default:
		return "Look at the receiver's logs and the answer below. Real deliveries are not retried after this answer."
	}
}

// sanitizeBody turns the start of a response body into one line of at most
// limit bytes that is safe to show: invalid UTF-8 is replaced, control and
// formatting characters (bidirectional overrides included) become spaces,
// runs of space collapse, and the secret is redacted.
func sanitizeBody(b, secret []byte, limit int) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if len(secret) > 0 {
		s = strings.ReplaceAll(s, string(secret), "[redacted]")
	}
	var sb strings.Builder
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			space = true
			continue
		}
		if space && sb.Len() > 0 {
			sb.WriteByte(' ')
		}
		space = false
		sb.WriteRune(r)
	}
	out := sb.String()
	if len(out) <= limit {
		return out
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(out[cut]) {
		cut--
	}
	return out[:cut] + "…"
}

// roundDuration prints d for people: "10s", "1.5s", "300ms".
func roundDuration(d time.Duration) string {
	if d >= time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}
