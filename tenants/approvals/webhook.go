package approvals

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

// Webhook headers.
const (
	SignatureHeader = "Locksmith-Signature"
	EventHeader     = "Locksmith-Event"
	// EventRequested is the event sent for a new request.
	EventRequested = "approval.requested"
)

// ErrPermanent marks a delivery failure that retrying won't fix (the
// receiver answered 4xx other than 408 and 429, or the URL is refused).
var ErrPermanent = errors.New("approvals: webhook delivery failed permanently")

// WebhookArgs is the River job that notifies the tenant's webhook of a new
// request. It is enqueued in the transaction that creates the request.
type WebhookArgs struct {
	TenantID  uuid.UUID `json:"tenant_id"`
	RequestID uuid.UUID `json:"request_id"`
}

// Kind is River's job kind.
func (WebhookArgs) Kind() string { return "approval_webhook" }

// InsertOpts retries deliveries up to 12 times (River's backoff spreads
// them over hours).
func (WebhookArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 12} }

// Sign returns the Locksmith-Signature header value for body sent at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<unix seconds>." + body)>".
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// VerifySignature checks a Locksmith-Signature header against body: one of
// its v1 signatures must match and its timestamp must be within tolerance
// of now (replay protection). Receivers of the webhook use it.
func VerifySignature(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return errors.New("approvals: malformed signature header")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("approvals: signature timestamp outside the tolerance")
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return errors.New("approvals: signature does not match")
}

// WebhookPayload is the JSON body of an approval.requested webhook.
type WebhookPayload struct {
	Type              string          `json:"type"`
	ID                uuid.UUID       `json:"id"`
	Tenant            string          `json:"tenant"`
	Tool              string          `json:"tool"`
	Upstream          string          `json:"upstream,omitempty"`
	Risk              string          `json:"risk,omitempty"`
	Args              json.RawMessage `json:"args"`
	Requester         Person          `json:"requester"`
	Agent             string          `json:"agent,omitempty"`
	Reason            string          `json:"reason,omitempty"`
	ApprovalsRequired int             `json:"approvals_required"`
	CreatedAt         time.Time       `json:"created_at"`
	ExpiresAt         time.Time       `json:"expires_at"`
	ApprovalURL       string          `json:"approval_url"`
}

// NotifierConfig holds a Notifier's dependencies.
type NotifierConfig struct {
	DB     *lsql.DB
	Sealer *seal.Sealer
	Egress *egress.Client
	Logger *slog.Logger
	// BaseURL is Locksmith's public URL, for approval links.
	BaseURL string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Notifier delivers webhook notifications; the River worker calls Deliver.
type Notifier struct {
	db      *lsql.DB
	sealer  *seal.Sealer
	egress  *egress.Client
	logger  *slog.Logger
	baseURL string
	now     func() time.Time
}

// NewNotifier returns a Notifier.
func NewNotifier(cfg NotifierConfig) (*Notifier, error) {
	switch {
	case cfg.DB == nil:
		return nil, errors.New("approvals: notifier: db is required")
	case cfg.Sealer == nil:
		return nil, errors.New("approvals: notifier: sealer is required")
	case cfg.Egress == nil:
		return nil, errors.New("approvals: notifier: egress client is required")
	case cfg.Logger == nil:
		return nil, errors.New("approvals: notifier: logger is required")
	case cfg.BaseURL == "":
		return nil, errors.New("approvals: notifier: base URL is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Notifier{db: cfg.DB, sealer: cfg.Sealer, egress: cfg.Egress, logger: cfg.Logger,
		baseURL: strings.TrimSuffix(cfg.BaseURL, "/"), now: cfg.Now}, nil
}

// Deliver posts the approval.requested notification of one request to the
// tenant's webhook, signed. It does nothing when the webhook was removed or
// the request is gone. A 2xx answer is success; other answers and transport
// errors are returned for River to retry, wrapped in ErrPermanent when
// retrying is pointless.
func (n *Notifier) Deliver(ctx context.Context, tenantID, requestID uuid.UUID) error {
	var (
		req  Request
		set  storedSettings
		slug string
	)
	err := n.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, "SELECT slug FROM tenants WHERE id = $1", tenantID).Scan(&slug); err != nil {
			return err
		}
		var err error
		if set, err = loadSettings(ctx, tx, tenantID); err != nil {
			return err
		}
		req, err = getRequest(ctx, tx, tenantID, "id = $2", requestID)
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // tenant or request gone: nothing to announce
	}
	if err != nil {
		return fmt.Errorf("approvals: webhook for %s: %w", requestID, lsql.Translate(err))
	}
	if set.WebhookURL == "" || len(set.sealedSecret) == 0 {
		return nil
	}
	secret, err := n.sealer.Open(ctx, tenantID, tenantID, webhookSecretField, set.sealedSecret)
	if err != nil {
		return fmt.Errorf("approvals: webhook secret: %w", err)
	}
	body, err := json.Marshal(WebhookPayload{
		Type: EventRequested, ID: req.ID, Tenant: slug, Tool: req.Tool, Upstream: req.Upstream, Risk: req.Risk,
		Args: req.Args, Requester: req.Requester, Agent: req.Agent, Reason: req.Reason,
		ApprovalsRequired: req.ApprovalsRequired, CreatedAt: req.CreatedAt, ExpiresAt: req.ExpiresAt,
		ApprovalURL: ApprovalURL(n.baseURL, slug, req.ID),
	})
	if err != nil {
		return fmt.Errorf("approvals: webhook body: %w", err)
	}
	resp, err := n.post(ctx, set.WebhookURL, EventRequested, secret, n.now(), body)
	if errors.Is(err, errBuildRequest) {
		return fmt.Errorf("%w: %v", ErrPermanent, err)
	}
	if err != nil {
		var ee *egress.Error
		if errors.As(err, &ee) && (errors.Is(err, egress.ErrForbiddenTarget) || errors.Is(err, egress.ErrInvalidURL)) {
			return fmt.Errorf("%w: %v", ErrPermanent, err)
		}
		return fmt.Errorf("approvals: webhook post: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return fmt.Errorf("%w: the webhook answered %s", ErrPermanent, resp.Status)
	default:
		return fmt.Errorf("approvals: the webhook answered %s", resp.Status)
	}
}

// errBuildRequest marks a webhook URL that net/http cannot make a request of.
var errBuildRequest = errors.New("approvals: webhook request")

// post is the one way a webhook leaves Locksmith, for real deliveries and
// test events alike: a POST of body to rawURL with the event and signature
// headers (signed with secret at t), sent through the SSRF-guarded egress
// client. The caller closes the response body.
func (n *Notifier) post(ctx context.Context, rawURL, event string, secret []byte, t time.Time, body []byte) (*http.Response, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBuildRequest, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set(EventHeader, event)
	hreq.Header.Set(SignatureHeader, Sign(secret, t, body))
	return n.egress.Do(hreq)
}
