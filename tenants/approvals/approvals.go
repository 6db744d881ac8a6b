package approvals

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

// Request statuses.
const (
	StatusPending  = "pending"
	StatusApproved = "approved"
	StatusRejected = "rejected"
	StatusExpired  = "expired"
	StatusUsed     = "used"
)

// Defaults and bounds.
const (
	DefaultApproverGroup = "approvers"
	DefaultTTL           = 15 * time.Minute
	MinTTL               = time.Minute
	MaxTTL               = 24 * time.Hour
	DefaultApprovals     = 2
	MaxApprovals         = 10
	minSecretLen         = 16
	maxArgsBytes         = 64 << 10
)

// JobInserter enqueues a River job in the caller's transaction; the River
// client satisfies it.
type JobInserter interface {
	InsertTx(ctx context.Context, tx pgx.Tx, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
}

// Config holds a Service's dependencies.
type Config struct {
	DB     *lsql.DB
	Sealer *seal.Sealer
	// Egress checks webhook URLs when they are saved.
	Egress *egress.Client
	// Jobs enqueues webhook deliveries in the request's transaction.
	Jobs   JobInserter
	Logger *slog.Logger
	// BaseURL is Locksmith's public URL, for approval links.
	BaseURL string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service manages approval requests. It is safe for concurrent use.
type Service struct {
	db      *lsql.DB
	sealer  *seal.Sealer
	egress  *egress.Client
	jobs    JobInserter
	logger  *slog.Logger
	baseURL string
	now     func() time.Time
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.DB == nil:
		return nil, errors.New("approvals: db is required")
	case cfg.Sealer == nil:
		return nil, errors.New("approvals: sealer is required")
	case cfg.Egress == nil:
		return nil, errors.New("approvals: egress client is required")
	case cfg.Jobs == nil:
		return nil, errors.New("approvals: job inserter is required")
	case cfg.Logger == nil:
		return nil, errors.New("approvals: logger is required")
	case cfg.BaseURL == "":
		return nil, errors.New("approvals: base URL is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{db: cfg.DB, sealer: cfg.Sealer, egress: cfg.Egress, jobs: cfg.Jobs, logger: cfg.Logger,
		baseURL: strings.TrimSuffix(cfg.BaseURL, "/"), now: cfg.Now}, nil
}

// ApprovalURL is the approver page of a request: BaseURL/t/{slug}/approvals/{id}.
func ApprovalURL(baseURL, tenantSlug string, id uuid.UUID) string {
	return strings.TrimSuffix(baseURL, "/") + "/t/" + tenantSlug + "/approvals/" + id.String()
}

// URL is ApprovalURL with the Service's base URL.
func (s *Service) URL(tenantSlug string, id uuid.UUID) string {
	return ApprovalURL(s.baseURL, tenantSlug, id)
}

// Person is a user of the tenant's IdP.
type Person struct {
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
	Email   string `json:"email,omitempty"`
}

func (p Person) same(o Person) bool { return p.Issuer == o.Issuer && p.Subject == o.Subject }

// NewRequest describes the call that needs approval.
type NewRequest struct {
	Tool     string
	Upstream string
	Risk     string
	// Args are the call's arguments (JSON); they are stored canonically and
	// shown to approvers exactly.
	Args      any
	Requester Person
	// Agent is the client id; Act the delegation chain.
	Agent string
	Act   []string
	// ApprovalsRequired is N (1–10); 0 means 2.
	ApprovalsRequired int
	// Rule and Reason come from the policy decision that required approval.
	Rule, Reason string
	// RequestID is the MCP request that asked first.
	RequestID string
}

// Request is an approval request with its votes.
type Request struct {
	ID     uuid.UUID
	Hash   Hash
	Status string
	Tool   string
	// Upstream is the upstream's slug.
	Upstream          string
	Risk              string
	Args              json.RawMessage
	Requester         Person
	Agent             string
	Act               []string
	Rule              string
	Reason            string
	RequestID         string
	ApprovalsRequired int
	Approvals         int
	RejectionReason   string
	CreatedAt         time.Time
	ExpiresAt         time.Time
	DecidedAt         *time.Time
	UsedAt            *time.Time
	Votes             []Vote
}

// Vote is one approver's decision.
type Vote struct {
	Approver Person
	Approve  bool
	Reason   string
	At       time.Time
}

// Request returns the active request for this exact call, creating it (and
// enqueueing the webhook notification in the same transaction) if there is
// none; created says which. The binding covers the tool, the canonical
// arguments, the requester and the agent.
func (s *Service) Request(ctx context.Context, tenantID uuid.UUID, in NewRequest) (Request, bool, error) {
	if in.Tool == "" {
		return Request{}, false, tenants.Invalid("tool", "is required")
	}
	if in.Requester.Issuer == "" || in.Requester.Subject == "" {
		return Request{}, false, tenants.Invalid("requester", "the requester's issuer and subject are required")
	}
	if in.ApprovalsRequired == 0 {
		in.ApprovalsRequired = DefaultApprovals
	}
	if in.ApprovalsRequired < 1 || in.ApprovalsRequired > MaxApprovals {
		return Request{}, false, tenants.Invalid("approvals_required", fmt.Sprintf("must be between 1 and %d", MaxApprovals))
	}
	hash, canon, err := Bind(in.Tool, in.Args, in.Requester.Issuer, in.Requester.Subject, in.Agent)
	if err != nil {
		return Request{}, false, &tenants.Error{Kind: tenants.ErrInvalid, Field: "args", Message: "the arguments are not valid JSON", Err: err}
	}
	if len(canon) > maxArgsBytes {
		return Request{}, false, tenants.Invalid("args", "the arguments are too large to hold for approval")
	}
	if in.Act == nil {
		in.Act = []string{}
	}
	var req Request
	created := false
	for attempt := 0; attempt < 3; attempt++ {
		err = s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
			now := s.now()
			if err := expireBinding(ctx, tx, tenantID, hash, now); err != nil {
				return err
			}
			existing, err := getRequest(ctx, tx, tenantID, "binding = $2 AND status IN ('pending', 'approved')", hash[:])
			if err == nil {
				req, created = existing, false
				return nil
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			set, err := loadSettings(ctx, tx, tenantID)
			if err != nil {
				return err
			}
			id := uuid.New()
			_, err = tx.Exec(ctx, `INSERT INTO approval_requests (tenant_id, id, binding, tool, upstream, risk, args,
				requester_issuer, requester_subject, requester_email, agent, act, rule, reason, request_id,
				approvals_required, created_at, expires_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`,
				tenantID, id, hash[:], clean(in.Tool), clean(in.Upstream), clean(in.Risk), string(canon),
				clean(in.Requester.Issuer), clean(in.Requester.Subject), clean(in.Requester.Email), clean(in.Agent),
				cleanList(in.Act), clean(in.Rule), clean(in.Reason), clean(in.RequestID), in.ApprovalsRequired,
				now, now.Add(set.TTL))
			if err != nil {
				return err
			}
			if set.WebhookURL != "" {
				if _, err := s.jobs.InsertTx(ctx, tx, WebhookArgs{TenantID: tenantID, RequestID: id}, nil); err != nil {
					return fmt.Errorf("enqueue webhook: %w", err)
				}
			}
			req, err = getRequest(ctx, tx, tenantID, "id = $2", id)
			created = true
			return err
		})
		if errors.Is(lsql.Translate(err), lsql.ErrConflict) {
			continue // a concurrent caller created it: read theirs
		}
		break
	}
	if err != nil {
		return Request{}, false, fmt.Errorf("approvals: request: %w", lsql.Translate(err))
	}
	return req.effective(s.now()), created, nil
}

// Get returns one request with its votes; ErrNotFound if the tenant has none
// with that id.
func (s *Service) Get(ctx context.Context, tenantID, id uuid.UUID) (Request, error) {
	var req Request
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		req, err = getRequest(ctx, tx, tenantID, "id = $2", id)
		if err != nil {
			return err
		}
		req.Votes, err = votes(ctx, tx, tenantID, id)
		return err
	})
	if err != nil {
		return Request{}, fmt.Errorf("approvals: get %s: %w", id, lsql.Translate(err))
	}
	return req.effective(s.now()), nil
}

// ListFilter selects requests for List.
type ListFilter struct {
	// Status is one of the statuses, or "" for all. "pending" excludes
	// requests past their expiry.
	Status string
	// Limit is 1–200; 0 means 50.
	Limit  int
	Cursor string
}

// List returns requests newest first with a keyset cursor for the next page
// ("" on the last). Votes are not loaded (use Get).
func (s *Service) List(ctx context.Context, tenantID uuid.UUID, f ListFilter) ([]Request, string, error) {
	limit := f.Limit
	switch {
	case limit == 0:
		limit = 50
	case limit < 0 || limit > 200:
		return nil, "", tenants.Invalid("limit", "must be between 1 and 200")
	}
	now := s.now()
	where, args := "true", []any{tenantID}
	switch f.Status {
	case "":
	case StatusPending, StatusApproved:
		args = append(args, f.Status, now)
		where = fmt.Sprintf("status = $%d AND expires_at > $%d", len(args)-1, len(args))
	case StatusExpired:
		args = append(args, now)
		where = fmt.Sprintf("(status = 'expired' OR (status IN ('pending', 'approved') AND expires_at <= $%d))", len(args))
	case StatusRejected, StatusUsed:
		args = append(args, f.Status)
		where = fmt.Sprintf("status = $%d", len(args))
	default:
		return nil, "", tenants.Invalid("status", "unknown status")
	}
	if f.Cursor != "" {
		at, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		args = append(args, at, id)
		where += fmt.Sprintf(" AND (created_at, id) < ($%d, $%d)", len(args)-1, len(args))
	}
	var out []Request
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT "+requestColumns+" FROM approval_requests WHERE tenant_id = $1 AND "+where+
			fmt.Sprintf(" ORDER BY created_at DESC, id DESC LIMIT %d", limit+1), args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanRequest)
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("approvals: list: %w", lsql.Translate(err))
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1]
		next = encodeCursor(last.CreatedAt, last.ID)
	}
	for i := range out {
		out[i] = out[i].effective(now)
	}
	return out, next, nil
}

// PendingCount is the number of requests waiting for approvers (the
// console's badge).
func (s *Service) PendingCount(ctx context.Context, tenantID uuid.UUID) (int, error) {
	var n int
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM approval_requests
			WHERE tenant_id = $1 AND status = 'pending' AND expires_at > $2`, tenantID, s.now()).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("approvals: pending count: %w", lsql.Translate(err))
	}
	return n, nil
}

// Approver is a signed-in approver: who, and their IdP groups (the caller
// takes them from the approver's verified ID token).
type Approver struct {
	Person
	Groups []string
}

// Vote records an approver's decision and returns the request after it.
// Errors, all *tenants.Error: ErrForbidden when the approver is not in the
// tenant's approver group or is the requester; ErrConflict when the request
// is no longer pending (approved, rejected, used or expired) or the approver
// already voted; ErrInvalid when a rejection has no reason; ErrNotFound.
func (s *Service) Vote(ctx context.Context, tenantID, id uuid.UUID, who Approver, approve bool, reason string) (Request, error) {
	reason = strings.TrimSpace(reason)
	if !approve && reason == "" {
		return Request{}, tenants.Invalid("reason", "say why you reject the request")
	}
	if len(reason) > 2000 {
		return Request{}, tenants.Invalid("reason", "must be at most 2000 characters")
	}
	if who.Issuer == "" || who.Subject == "" {
		return Request{}, &tenants.Error{Kind: tenants.ErrForbidden, Message: "sign in to vote"}
	}
	var req Request
	var refusal error
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		now := s.now()
		set, err := loadSettings(ctx, tx, tenantID)
		if err != nil {
			return err
		}
		req, err = getRequest(ctx, tx, tenantID, "id = $2 FOR UPDATE", id)
		if err != nil {
			return err
		}
		switch {
		case !slices.Contains(who.Groups, set.ApproverGroup):
			refusal = &tenants.Error{Kind: tenants.ErrForbidden, Message: fmt.Sprintf("only members of the %q group may approve requests", set.ApproverGroup)}
		case who.same(req.Requester):
			refusal = &tenants.Error{Kind: tenants.ErrForbidden, Message: "you can't vote on your own request"}
		case req.Status != StatusPending:
			refusal = &tenants.Error{Kind: tenants.ErrConflict, Message: "this request is already " + req.Status}
		case !now.Before(req.ExpiresAt):
			refusal = &tenants.Error{Kind: tenants.ErrConflict, Message: "this request has expired"}
		}
		if refusal != nil {
			return nil
		}
		decision := "approve"
		if !approve {
			decision = "reject"
		}
		tag, err := tx.Exec(ctx, `INSERT INTO approval_votes (tenant_id, request_id, approver_issuer, approver_subject,
			approver_email, decision, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT DO NOTHING`, tenantID, id, clean(who.Issuer), clean(who.Subject), clean(who.Email), decision, clean(reason), now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			refusal = &tenants.Error{Kind: tenants.ErrConflict, Message: "you have already voted on this request"}
			return nil
		}
		if approve {
			_, err = tx.Exec(ctx, `UPDATE approval_requests SET approvals = approvals + 1,
				status = CASE WHEN approvals + 1 >= approvals_required THEN 'approved' ELSE status END,
				decided_at = CASE WHEN approvals + 1 >= approvals_required THEN $3 ELSE decided_at END
				WHERE tenant_id = $1 AND id = $2`, tenantID, id, now)
		} else {
			_, err = tx.Exec(ctx, `UPDATE approval_requests SET status = 'rejected', decided_at = $3, rejection_reason = $4
				WHERE tenant_id = $1 AND id = $2`, tenantID, id, now, clean(reason))
		}
		if err != nil {
			return err
		}
		if req, err = getRequest(ctx, tx, tenantID, "id = $2", id); err != nil {
			return err
		}
		req.Votes, err = votes(ctx, tx, tenantID, id)
		return err
	})
	if err != nil {
		return Request{}, fmt.Errorf("approvals: vote on %s: %w", id, lsql.Translate(err))
	}
	if refusal != nil {
		return Request{}, refusal
	}
	return req.effective(s.now()), nil
}

// Consume uses the approved, unexpired request bound to hash, once: it
// flips it to used atomically and returns it with ok true. Of concurrent
// callers exactly one gets ok; every other call (no request, not yet
// approved, expired, already used) gets ok false and no error.
func (s *Service) Consume(ctx context.Context, tenantID uuid.UUID, hash Hash) (Request, bool, error) {
	var req Request
	ok := false
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE approval_requests SET status = 'used', used_at = $3
			WHERE tenant_id = $1 AND binding = $2 AND status = 'approved' AND expires_at > $3
			RETURNING `+requestColumns, tenantID, hash[:], s.now())
		if err != nil {
			return err
		}
		list, err := pgx.CollectRows(rows, scanRequest)
		if err != nil || len(list) == 0 {
			return err
		}
		req, ok = list[0], true
		return nil
	})
	if err != nil {
		return Request{}, false, fmt.Errorf("approvals: consume: %w", lsql.Translate(err))
	}
	return req, ok, nil
}

// ExpireStale marks the tenant's pending and approved requests past their
// expiry as expired and returns how many.
func (s *Service) ExpireStale(ctx context.Context, tenantID uuid.UUID) (int64, error) {
	return expireStale(ctx, s.db, tenantID, s.now())
}

// PurgeFinished deletes the tenant's finished requests (rejected, expired,
// used) created before olderThan ago, with their votes; the audit trail
// keeps the record of the calls.
func (s *Service) PurgeFinished(ctx context.Context, tenantID uuid.UUID, olderThan time.Duration) (int64, error) {
	return purgeFinished(ctx, s.db, tenantID, s.now().Add(-olderThan))
}

func expireStale(ctx context.Context, db *lsql.DB, tenantID uuid.UUID, now time.Time) (int64, error) {
	var n int64
	err := db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE approval_requests SET status = 'expired'
			WHERE tenant_id = $1 AND status IN ('pending', 'approved') AND expires_at <= $2`, tenantID, now)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("approvals: expire: %w", lsql.Translate(err))
	}
	return n, nil
}

func purgeFinished(ctx context.Context, db *lsql.DB, tenantID uuid.UUID, before time.Time) (int64, error) {
	var n int64
	err := db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM approval_requests WHERE tenant_id = $1
			AND status IN ('rejected', 'expired', 'used') AND created_at < $2`, tenantID, before)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("approvals: purge: %w", lsql.Translate(err))
	}
	return n, nil
}

// Maintain expires stale requests and purges finished ones created more
// than olderThan before now, for every tenant (the periodic job). It
// carries on past a failing tenant and returns the errors joined.
func Maintain(ctx context.Context, db *lsql.DB, now time.Time, olderThan time.Duration) (expired, purged int64, err error) {
	ids, err := db.TenantIDs(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("approvals: list tenants: %w", err)
	}
	var errs []error
	for _, id := range ids {
		n, err := expireStale(ctx, db, id, now)
		expired += n
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n, err = purgeFinished(ctx, db, id, now.Add(-olderThan))
		purged += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return expired, purged, errors.Join(errs...)
}

// effective reports a pending or approved request past its expiry as
// expired, whether or not the job has marked it yet.
func (r Request) effective(now time.Time) Request {
	if (r.Status == StatusPending || r.Status == StatusApproved) && !now.Before(r.ExpiresAt) {
		r.Status = StatusExpired
	}
	return r
}

func expireBinding(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, hash Hash, now time.Time) error {
	_, err := tx.Exec(ctx, `UPDATE approval_requests SET status = 'expired'
		WHERE tenant_id = $1 AND binding = $2 AND status IN ('pending', 'approved') AND expires_at <= $3`, tenantID, hash[:], now)
	return err
}

const requestColumns = `id, binding, status, tool, upstream, risk, args, requester_issuer, requester_subject,
	requester_email, agent, act, rule, reason, request_id, approvals_required, approvals, rejection_reason,
	created_at, expires_at, decided_at, used_at`

// getRequest reads one request; where uses $1 = tenant id and $2.
func getRequest(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, where string, arg any) (Request, error) {
	rows, err := tx.Query(ctx, "SELECT "+requestColumns+" FROM approval_requests WHERE tenant_id = $1 AND "+where, tenantID, arg)
	if err != nil {
		return Request{}, err
	}
	return pgx.CollectExactlyOneRow(rows, scanRequest)
}

func scanRequest(row pgx.CollectableRow) (Request, error) {
	var r Request
	var binding, args []byte
	err := row.Scan(&r.ID, &binding, &r.Status, &r.Tool, &r.Upstream, &r.Risk, &args, &r.Requester.Issuer,
		&r.Requester.Subject, &r.Requester.Email, &r.Agent, &r.Act, &r.Rule, &r.Reason, &r.RequestID,
		&r.ApprovalsRequired, &r.Approvals, &r.RejectionReason, &r.CreatedAt, &r.ExpiresAt, &r.DecidedAt, &r.UsedAt)
	copy(r.Hash[:], binding)
	r.Args = json.RawMessage(args)
	return r, err
}

func votes(ctx context.Context, tx pgx.Tx, tenantID, id uuid.UUID) ([]Vote, error) {
	rows, err := tx.Query(ctx, `SELECT approver_issuer, approver_subject, approver_email, decision, reason, created_at
		FROM approval_votes WHERE tenant_id = $1 AND request_id = $2 ORDER BY created_at, approver_subject`, tenantID, id)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Vote, error) {
		var v Vote
		var decision string
		err := row.Scan(&v.Approver.Issuer, &v.Approver.Subject, &v.Approver.Email, &decision, &v.Reason, &v.At)
		v.Approve = decision == "approve"
		return v, err
	})
}

func encodeCursor(at time.Time, id uuid.UUID) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + "|" + id.String()))
}

func decodeCursor(c string) (time.Time, uuid.UUID, error) {
	bad := tenants.Invalid("cursor", "the page cursor is not valid; start from the first page")
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, uuid.Nil, bad
	}
	ts, idText, ok := strings.Cut(string(b), "|")
	at, err1 := time.Parse(time.RFC3339Nano, ts)
	id, err2 := uuid.Parse(idText)
	if !ok || err1 != nil || err2 != nil {
		return time.Time{}, uuid.Nil, bad
	}
	return at, id, nil
}

// clean makes s storable: valid UTF-8, no NUL, at most 1000 bytes.
func clean(s string) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) > 1000 {
		s = s[:1000]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

func cleanList(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = clean(s)
	}
	return out
}
