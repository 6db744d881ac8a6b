package web

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants/approvals"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

const webhookTestSecret = "whsec-console-0123456789abcdef"

// hookReceiver is a webhook receiver on a real HTTP server.
type hookReceiver struct {
	srv *httptest.Server

	mu     sync.Mutex
	status int
	bodies [][]byte
	sigs   []string
	events []string
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	rc := &hookReceiver{status: http.StatusNoContent}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.bodies = append(rc.bodies, body)
		rc.sigs = append(rc.sigs, r.Header.Get(approvals.SignatureHeader))
		rc.events = append(rc.events, r.Header.Get(approvals.EventHeader))
		w.WriteHeader(rc.status)
		if rc.status >= 300 {
			// A careless receiver that echoes its configuration.
			_, _ = io.WriteString(w, "signature mismatch; expected secret "+webhookTestSecret)
		}
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *hookReceiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.bodies)
}

func (rc *hookReceiver) answer(status int) {
	rc.mu.Lock()
	rc.status = status
	rc.mu.Unlock()
}

// setupWebhookConsole is a console with approvals and the approval webhook
// Notifier, which shares the approvals service's sealer and egress client.
// Private targets are allowed (the receiver is on 127.0.0.1); the SSRF
// guard itself is tested in package approvals.
func setupWebhookConsole(t *testing.T) *consoleBundle {
	t.Helper()
	hs := httptest.NewUnstartedServer(nil)
	base := "https://" + hs.Listener.Addr().String()
	u, err := url.Parse(base)
	require.NoError(t, err)
	logs := &strings.Builder{}
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc := newTenantsService(t, logger, base)

	db := sqltest.DB(t)
	key, err := seal.GenerateMasterKey("webhook")
	require.NoError(t, err)
	mk, err := seal.ParseMasterKeys(key)
	require.NoError(t, err)
	sealer, err := seal.New(db, mk)
	require.NoError(t, err)
	eg, err := egress.New(egress.Options{AllowPrivate: true, Timeout: 5 * time.Second})
	require.NoError(t, err)
	rc, err := river.NewClient(riverpgxv5.New(db.Pool()), &river.Config{Logger: logger})
	require.NoError(t, err)
	ap, err := approvals.New(approvals.Config{DB: db, Sealer: sealer, Egress: eg, Jobs: rc, Logger: logger, BaseURL: base})
	require.NoError(t, err)
	n, err := approvals.NewNotifier(approvals.NotifierConfig{DB: db, Sealer: sealer, Egress: eg, Logger: logger, BaseURL: base})
	require.NoError(t, err)

	s, err := New(Config{Logger: logger, BaseURL: u, Ready: fakeReady{}, Registry: NewRegistry(), Tenants: svc,
		Approvals: ap, ApprovalWebhook: n})
	require.NoError(t, err)
	hs.Config.Handler = s
	hs.StartTLS()
	t.Cleanup(hs.Close)
	return &consoleBundle{srv: s, http: hs, svc: svc, base: base, logs: logs}
}

// webhookPanel is the test event's aria-live region of a settings page.
func webhookPanel(t *testing.T, body string) string {
	t.Helper()
	i := strings.Index(body, `id="webhook-test-region"`)
	require.GreaterOrEqual(t, i, 0, "no webhook test region")
	j := strings.Index(body[i:], `<div class="actions">`)
	require.GreaterOrEqual(t, j, 0)
	return body[i : i+j]
}

// saveWebhookSettings saves the approval settings with a webhook.
func saveWebhookSettings(t *testing.T, br *browser, slug, hookURL string) {
	t.Helper()
	r := br.post("/console/t/"+slug+"/approvals/settings", url.Values{"approver_group": {"approvers"}, "ttl_minutes": {"15"},
		"approvals_default": {"2"}, "webhook_url": {hookURL}, "webhook_secret": {webhookTestSecret}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
}

// TestConsoleWebhookTest: an admin's "Send a test event" delivers one
// signed approval.test event and shows the answer in the live-check panel;
// viewers and cross-site posts are refused and send nothing; the secret is
// never on the page.
func TestConsoleWebhookTest(t *testing.T) {
	t.Parallel()
	b := setupWebhookConsole(t)
	owner, slug, _ := b.newOwner(t, "Webhook Co")
	admin, _ := b.joinAs(t, owner, slug, "admin")
	viewer, _ := b.joinAs(t, owner, slug, "viewer")
	settings := "/console/t/" + slug + "/approvals/settings"
	testPath := settings + "/test"
	rc := newHookReceiver(t)

	// Nothing configured yet: a clear message, nothing sent.
	r := admin.post(testPath, nil)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, `data-testid="webhook-test-problem"`)
	require.Contains(t, r.body, "No webhook URL is saved")
	require.Contains(t, r.body, "How to fix:")

	saveWebhookSettings(t, owner, slug, rc.srv.URL+"/hook?token=receiver-token")

	// The page has the button (for admins) and an empty aria-live region.
	r = admin.get(settings)
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `data-testid="approvals-webhook-test"`)
	require.Contains(t, r.body, `formaction="`+testPath+`"`)
	require.Contains(t, r.body, "Send a test event")
	require.Contains(t, r.body, `<div class="live-region" aria-live="polite" id="webhook-test-region">`)
	require.NotContains(t, r.body, `data-testid="webhook-test-result"`)
	require.NotContains(t, r.body, webhookTestSecret)
	r = viewer.get(settings)
	require.Equal(t, http.StatusOK, r.status)
	require.NotContains(t, r.body, `data-testid="approvals-webhook-test"`, "viewers get no button")

	for _, tc := range []struct {
		name       string
		br         *browser
		hdr        map[string]string
		wantStatus int
	}{
		{"viewer", viewer, nil, http.StatusForbidden},
		{"cross-site", admin, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": ""}, http.StatusForbidden},
		{"foreign origin", admin, map[string]string{"Sec-Fetch-Site": "", "Origin": "https://evil.example"}, http.StatusForbidden},
		{"signed out", b.browser(t), nil, http.StatusSeeOther},
	} {
		r := tc.br.do(http.MethodPost, testPath, "", tc.hdr)
		require.Equal(t, tc.wantStatus, r.status, tc.name)
		require.NotContains(t, r.body, `data-testid="webhook-test-result"`, tc.name)
	}
	require.Zero(t, rc.count(), "refused posts send nothing")

	// An admin sends one; the form keeps what was typed (the secret is
	// never echoed) and warns that the unsaved URL was not the one tested.
	r = admin.post(testPath, url.Values{"approver_group": {"release-approvers"}, "ttl_minutes": {"15"}, "approvals_default": {"2"},
		"webhook_url": {"https://hooks.acme.example/new"}, "webhook_secret": {webhookTestSecret}})
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, `data-testid="webhook-test-result"`)
	require.Contains(t, r.body, `data-testid="webhook-test-ok"`)
	require.Contains(t, r.body, "Delivered: the webhook answered 204 No Content in")
	require.Contains(t, r.body, approvals.EventTest)
	require.Contains(t, r.body, rc.srv.Listener.Addr().String())
	require.Contains(t, r.body, `value="release-approvers"`)
	require.Contains(t, r.body, `value="https://hooks.acme.example/new"`)
	require.Contains(t, r.body, "The Webhook URL in the form is not saved")
	require.Contains(t, r.body, "The signing secret you typed is not saved")
	require.NotContains(t, r.body, webhookTestSecret)
	require.NotContains(t, webhookPanel(t, r.body), "receiver-token", "the result shows only the URL's host")

	require.Equal(t, 1, rc.count())
	rc.mu.Lock()
	body, sig, event := rc.bodies[0], rc.sigs[0], rc.events[0]
	rc.mu.Unlock()
	require.Equal(t, approvals.EventTest, event)
	require.NoError(t, approvals.VerifySignature([]byte(webhookTestSecret), sig, body, time.Now(), time.Minute))
	require.Contains(t, string(body), `"type":"approval.test"`)

	// The receiver fails: a red cross with the status and the start of the
	// answer, the secret it echoed redacted.
	rc.answer(http.StatusInternalServerError)
	r = admin.post(testPath, nil)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, `data-testid="webhook-test-problem"`)
	require.Contains(t, r.body, "500 Internal Server Error")
	require.Contains(t, r.body, "signature mismatch; expected secret [redacted]")
	require.NotContains(t, webhookPanel(t, r.body), "receiver-token")
	require.NotContains(t, r.body, webhookTestSecret)
	require.Equal(t, 2, rc.count())

	// Nor is the secret in the logs.
	require.Contains(t, b.logs.String(), "approval webhook test sent")
	require.NotContains(t, b.logs.String(), webhookTestSecret)
	require.NotContains(t, b.logs.String(), "receiver-token")
}

// TestConsoleWebhookTestRateLimit: at most webhookTestLimit test events per
// tenant per minute; past it the page answers 429 with Retry-After and the
// receiver hears nothing more. Another tenant is not affected.
func TestConsoleWebhookTestRateLimit(t *testing.T) {
	t.Parallel()
	b := setupWebhookConsole(t)
	owner, slug, _ := b.newOwner(t, "Busy Co")
	other, otherSlug, _ := b.newOwner(t, "Quiet Co")
	rc := newHookReceiver(t)
	saveWebhookSettings(t, owner, slug, rc.srv.URL+"/hook")
	saveWebhookSettings(t, other, otherSlug, rc.srv.URL+"/other")

	testPath := "/console/t/" + slug + "/approvals/settings/test"
	for i := range webhookTestLimit {
		r := owner.post(testPath, nil)
		require.Equal(t, http.StatusOK, r.status, "test %d", i+1)
		require.Contains(t, r.body, `data-testid="webhook-test-ok"`)
	}
	r := owner.post(testPath, nil)
	require.Equal(t, http.StatusTooManyRequests, r.status)
	require.NotEmpty(t, r.header.Get("Retry-After"))
	require.Contains(t, r.body, `data-testid="webhook-test-problem"`)
	require.Contains(t, r.body, "too many test events")
	require.Equal(t, webhookTestLimit, rc.count(), "the refused test sent nothing")

	r = other.post("/console/t/"+otherSlug+"/approvals/settings/test", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `data-testid="webhook-test-ok"`)
	require.Equal(t, webhookTestLimit+1, rc.count())
}

// TestWebhookTestRouteNeedsNotifier: without a Notifier there is no button
// and no route.
func TestWebhookTestRouteNeedsNotifier(t *testing.T) {
	t.Parallel()
	b, _ := setupGovern(t)
	owner, slug, _ := b.newOwner(t, "No Hook Co")
	r := owner.get("/console/t/" + slug + "/approvals/settings")
	require.Equal(t, http.StatusOK, r.status)
	require.NotContains(t, r.body, `data-testid="approvals-webhook-test"`)
	r = owner.post("/console/t/"+slug+"/approvals/settings/test", nil)
	require.Equal(t, http.StatusNotFound, r.status)
}
