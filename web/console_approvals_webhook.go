package web

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants/approvals"
	"github.com/locksmithhq/locksmith/web/views"
)

// The approval settings page's "Send a test event": one signed
// approval.test delivery to the tenant's saved webhook, its answer shown in
// the page's live-check panel.
//
//	POST /console/t/{tenant}/approvals/settings/test

// At most webhookTestLimit test events per tenant per webhookTestWindow
// (per instance), so the console cannot be used to hammer a URL.
const (
	webhookTestLimit  = 5
	webhookTestWindow = time.Minute
)

// testApprovalWebhook sends the test event and shows the settings page
// again with the result. The form's other fields keep what the admin typed
// (never the secret); the event always goes to the saved URL, signed with
// the saved secret, and the panel warns when the form holds unsaved
// changes to either.
func (s *Server) testApprovalWebhook(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	p, err := s.approvalSettingsModel(r, c)
	if err != nil {
		return err
	}
	savedURL := p.Form.WebhookURL
	for k, v := range map[string]*string{
		"approver_group": &p.Form.ApproverGroup, "ttl_minutes": &p.Form.TTLMinutes,
		"approvals_default": &p.Form.ApprovalsDefault, "webhook_url": &p.Form.WebhookURL,
	} {
		if r.PostForm.Has(k) {
			*v = strings.TrimSpace(r.PostFormValue(k))
		}
	}
	typedSecret := r.PostFormValue("webhook_secret") != ""
	p.SecretRetype = typedSecret

	if wait, ok := s.console.webhookTests.allow(c.Tenant.ID.String()); !ok {
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		p.WebhookTest = views.CheckPanel{TestID: "webhook-test", Ran: true, Title: "Not sent: too many test events",
			Problems: []views.Problem{{
				Message: fmt.Sprintf("This tenant sent %d test events in the last minute, the most Locksmith allows.", webhookTestLimit),
				Fix:     fmt.Sprintf("Wait %d seconds, then send a test event again.", secs),
			}}}
		return s.render(w, r, http.StatusTooManyRequests, views.ApprovalSettings(p))
	}
	res, err := s.cfg.ApprovalWebhook.SendTest(r.Context(), c.Tenant.ID)
	if err != nil {
		return err
	}
	// The host only: the URL's path or query may hold the receiver's token.
	s.cfg.Logger.InfoContext(r.Context(), "approval webhook test sent", "tenant_id", c.Tenant.ID, "outcome", string(res.Outcome),
		"host", res.Host, "status", res.Status, "latency_ms", res.Latency.Milliseconds(), "request_id", RequestID(r.Context()))
	p.WebhookTest = webhookTestPanel(res)
	if p.Form.WebhookURL != savedURL {
		p.WebhookTest.Warnings = append(p.WebhookTest.Warnings,
			"The Webhook URL in the form is not saved: the test event went to the saved URL. Save the settings to test the new one.")
	}
	if typedSecret {
		p.WebhookTest.Warnings = append(p.WebhookTest.Warnings,
			"The signing secret you typed is not saved: the test event was signed with the saved secret.")
	}
	return s.render(w, r, http.StatusOK, views.ApprovalSettings(p))
}

// webhookTestPanel shows a test delivery: a green check with the answer, or
// a red cross with the exact problem and how to fix it.
func webhookTestPanel(res approvals.TestResult) views.CheckPanel {
	p := views.CheckPanel{TestID: "webhook-test", Ran: true, OK: res.OK()}
	sent := res.EventID != uuid.Nil
	if res.OK() {
		p.Title = fmt.Sprintf("Delivered: the webhook answered %s in %s", res.StatusText, latencyLabel(res.Latency))
	} else {
		p.Title = "Not delivered"
		if !sent {
			p.Title = "Not sent"
		}
		p.Problems = []views.Problem{{Message: res.Message, Fix: res.Fix}}
	}
	if res.Host != "" {
		p.Facts = append(p.Facts, views.Fact{Label: "Sent to", Value: res.Host, Mono: true})
	}
	if sent {
		p.Facts = append(p.Facts,
			views.Fact{Label: "Event", Value: approvals.EventTest, Mono: true},
			views.Fact{Label: "Event id", Value: res.EventID.String(), Mono: true})
	}
	if res.Status != 0 {
		p.Facts = append(p.Facts, views.Fact{Label: "HTTP status", Value: res.StatusText})
	}
	if sent {
		p.Facts = append(p.Facts, views.Fact{Label: "Latency", Value: latencyLabel(res.Latency)})
	}
	if res.Body != "" {
		p.Facts = append(p.Facts, views.Fact{Label: "Answer (first 200 bytes)", Value: res.Body, Mono: true})
	}
	if sent {
		p.Note = "Sent " + formatTime(res.SentAt) + ", signed with the saved secret in the Locksmith-Signature header exactly like real deliveries. Your receiver should verify it, answer 2xx, and ignore events of type approval.test."
	}
	return p
}

// latencyLabel prints a latency for people: "<1 ms", "42 ms", "1.3 s".
func latencyLabel(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return "<1 ms"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	default:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
	}
}
