package audit

import (
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants"
)

// Query limits.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// Filter selects calls. Empty fields don't filter.
type Filter struct {
	// User matches the user's subject or email (case-insensitive); Issuer,
	// when set, also the issuer (for "my events" pages use both).
	User   string
	Issuer string
	Agent  string
	Tool   string
	// Upstream is the upstream's slug.
	Upstream string
	// Decision is DecisionAllow, DecisionDeny or DecisionApproval.
	Decision string
	// From (inclusive) and To (exclusive) bound the event time.
	From, To time.Time
	// Limit is the page size: 1–1000, 0 means 50.
	Limit int
	// Cursor continues from a previous Page.Next.
	Cursor string
}

// Page is one page of calls, newest first. Next is "" on the last page.
type Page struct {
	Events []Event
	Next   string
}

const cursorPrefix = "a1."

func encodeCursor(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + strconv.FormatInt(seq, 10)))
}

func decodeCursor(c string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil && strings.HasPrefix(string(b), cursorPrefix) {
		if seq, err := strconv.ParseInt(strings.TrimPrefix(string(b), cursorPrefix), 10, 64); err == nil && seq > 0 {
			return seq, nil
		}
	}
	return 0, tenants.Invalid("cursor", "the page cursor is not valid; start from the first page")
}

const eventColumns = `c.seq, c.at, c.request_id, c.user_issuer, c.user_subject, c.user_email, c.agent, c.act, c.tool,
	c.upstream, c.upstream_name, c.method, c.path_template, c.scopes, c.narrowed, c.decision, c.rule, c.reason,
	c.approval_id, c.detail, c.request_body, o.seq, o.at, o.status, o.latency_us, o.error, o.response_body`

const eventFrom = `audit_events c LEFT JOIN LATERAL (
	SELECT seq, at, status, latency_us, error, response_body FROM audit_events o
	WHERE o.tenant_id = c.tenant_id AND o.kind = 'outcome' AND o.intent_seq = c.seq
	ORDER BY o.seq LIMIT 1) o ON true`

// where builds the filter's conditions; $1 is the tenant id.
func (f Filter) where() (string, []any, error) {
	conds := []string{"c.tenant_id = $1", "c.kind = 'call'"}
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args)+1)))
	}
	if f.User != "" {
		add("(c.user_subject = ? OR lower(c.user_email) = lower(?))", f.User)
	}
	if f.Issuer != "" {
		add("c.user_issuer = ?", f.Issuer)
	}
	if f.Agent != "" {
		add("c.agent = ?", f.Agent)
	}
	if f.Tool != "" {
		add("c.tool = ?", f.Tool)
	}
	if f.Upstream != "" {
		add("c.upstream = ?", f.Upstream)
	}
	switch f.Decision {
	case "":
	case DecisionAllow, DecisionDeny, DecisionApproval:
		add("c.decision = ?", f.Decision)
	default:
		return "", nil, tenants.Invalid("decision", `must be "allow", "deny" or "approval"`)
	}
	if !f.From.IsZero() {
		add("c.at >= ?", f.From)
	}
	if !f.To.IsZero() {
		add("c.at < ?", f.To)
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return "", nil, tenants.Invalid("to", "the end of the time range must be after its start")
	}
	if f.Cursor != "" {
		seq, err := decodeCursor(f.Cursor)
		if err != nil {
			return "", nil, err
		}
		add("c.seq < ?", seq)
	}
	return strings.Join(conds, " AND "), args, nil
}

// Query returns one page of the tenant's calls matching f, newest first,
// each with its outcome.
func (s *Store) Query(ctx context.Context, tenantID uuid.UUID, f Filter) (Page, error) {
	limit := f.Limit
	switch {
	case limit == 0:
		limit = DefaultLimit
	case limit < 0 || limit > MaxLimit:
		return Page{}, tenants.Invalid("limit", fmt.Sprintf("must be between 1 and %d", MaxLimit))
	}
	where, args, err := f.where()
	if err != nil {
		return Page{}, err
	}
	var page Page
	err = s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT "+eventColumns+" FROM "+eventFrom+" WHERE "+where+
			" ORDER BY c.seq DESC LIMIT "+strconv.Itoa(limit+1), append([]any{tenantID}, args...)...)
		if err != nil {
			return err
		}
		page.Events, err = pgx.CollectRows(rows, scanEvent)
		return err
	})
	if err != nil {
		return Page{}, fmt.Errorf("audit: query tenant %s: %w", tenantID, lsql.Translate(err))
	}
	if len(page.Events) > limit {
		page.Events = page.Events[:limit]
		page.Next = encodeCursor(page.Events[limit-1].Seq)
	}
	return page, nil
}

// Event returns one call by sequence number; ErrNotFound if the tenant has
// no call with that number.
func (s *Store) Event(ctx context.Context, tenantID uuid.UUID, seq int64) (Event, error) {
	var e Event
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT "+eventColumns+" FROM "+eventFrom+
			" WHERE c.tenant_id = $1 AND c.kind = 'call' AND c.seq = $2", tenantID, seq)
		if err != nil {
			return err
		}
		e, err = pgx.CollectExactlyOneRow(rows, scanEvent)
		return err
	})
	if err != nil {
		return Event{}, fmt.Errorf("audit: event %d: %w", seq, lsql.Translate(err))
	}
	return e, nil
}

func scanEvent(r pgx.CollectableRow) (Event, error) {
	var (
		e        Event
		approval *uuid.UUID
		detail   []byte
		reqBody  []byte
		respBody []byte
		oSeq     *int64
		oAt      *time.Time
		oStatus  *int32
		oLatency *int64
		oError   *string
	)
	err := r.Scan(&e.Seq, &e.At, &e.RequestID, &e.User.Issuer, &e.User.Subject, &e.User.Email, &e.Agent, &e.Act,
		&e.Tool, &e.Upstream, &e.UpstreamName, &e.Method, &e.PathTemplate, &e.Scopes, &e.Narrowed, &e.Decision,
		&e.Rule, &e.Reason, &approval, &detail, &reqBody, &oSeq, &oAt, &oStatus, &oLatency, &oError, &respBody)
	if err != nil {
		return Event{}, err
	}
	e.ApprovalID = approval
	if len(detail) > 0 {
		e.Detail = json.RawMessage(detail)
	}
	if len(reqBody) > 0 {
		e.RequestBody = json.RawMessage(reqBody)
	}
	if oSeq != nil {
		o := &OutcomeRecord{Seq: *oSeq}
		if oAt != nil {
			o.At = *oAt
		}
		if oStatus != nil {
			o.Status = int(*oStatus)
		}
		if oLatency != nil {
			o.Latency = time.Duration(*oLatency) * time.Microsecond
		}
		if oError != nil {
			o.Error = *oError
		}
		if len(respBody) > 0 {
			o.ResponseBody = json.RawMessage(respBody)
		}
		e.Outcome = o
	}
	e.Result = result(e.Decision, e.Outcome)
	return e, nil
}

// each streams every call matching f (ignoring Limit), newest first, page
// by page (each page its own short transaction).
func (s *Store) each(ctx context.Context, tenantID uuid.UUID, f Filter, fn func(Event) error) error {
	f.Limit = MaxLimit
	for {
		page, err := s.Query(ctx, tenantID, f)
		if err != nil {
			return err
		}
		for _, e := range page.Events {
			if err := fn(e); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		f.Cursor = page.Next
	}
}

// CSVHeader is the header row of ExportCSV.
var CSVHeader = []string{"seq", "time", "request_id", "user_issuer", "user_subject", "user_email", "agent", "act",
	"tool", "upstream", "method", "path_template", "scopes", "narrowed", "decision", "rule", "reason",
	"approval_id", "result", "status", "latency_ms", "error"}

// ExportCSV streams every call matching f to w as CSV (CSVHeader first),
// newest first. Cells that a spreadsheet would read as a formula are
// prefixed with a single quote.
func (s *Store) ExportCSV(ctx context.Context, tenantID uuid.UUID, f Filter, w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return fmt.Errorf("audit: export csv: %w", err)
	}
	err := s.each(ctx, tenantID, f, func(e Event) error {
		approval, status, latency, errText := "", "", "", ""
		if e.ApprovalID != nil {
			approval = e.ApprovalID.String()
		}
		if o := e.Outcome; o != nil {
			status = strconv.Itoa(o.Status)
			latency = strconv.FormatFloat(float64(o.Latency)/float64(time.Millisecond), 'f', 3, 64)
			errText = o.Error
		}
		rec := []string{strconv.FormatInt(e.Seq, 10), e.At.UTC().Format(time.RFC3339Nano), e.RequestID,
			e.User.Issuer, e.User.Subject, e.User.Email, e.Agent, strings.Join(e.Act, " "), e.Tool, e.Upstream,
			e.Method, e.PathTemplate, strings.Join(e.Scopes, " "), strconv.FormatBool(e.Narrowed), e.Decision,
			e.Rule, e.Reason, approval, e.Result, status, latency, errText}
		for i, v := range rec {
			rec[i] = csvSafe(v)
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
		cw.Flush()
		return cw.Error()
	})
	if err != nil {
		return fmt.Errorf("audit: export csv: %w", err)
	}
	cw.Flush()
	return cw.Error()
}

// csvSafe defuses spreadsheet formulas (CSV injection).
func csvSafe(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

// ExportJSONL streams every call matching f to w as JSON Lines (one Event
// per line), newest first.
func (s *Store) ExportJSONL(ctx context.Context, tenantID uuid.UUID, f Filter, w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	err := s.each(ctx, tenantID, f, func(e Event) error { return enc.Encode(e) })
	if err != nil {
		return fmt.Errorf("audit: export jsonl: %w", err)
	}
	return nil
}

// Decision chart ranges, in UTC days.
const (
	// DefaultDecisionDays is how many UTC days DecisionsPerDay covers when
	// the filter has no time range: today and the 13 days before it.
	DefaultDecisionDays = 14
	// MaxDecisionDays is the longest range DecisionsPerDay counts.
	MaxDecisionDays = 366
)

// DayDecisions counts one UTC day's calls by policy decision.
type DayDecisions struct {
	// Day is the day's midnight, UTC.
	Day      time.Time
	Allow    int
	Deny     int
	Approval int
}

// Total is the day's calls, whatever the decision.
func (d DayDecisions) Total() int { return d.Allow + d.Deny + d.Approval }

// DecisionsPerDay counts the tenant's calls matching f per UTC day and
// decision, oldest day first, one entry for every day of the range (days
// without calls are zeros). The range runs from f.From's day to the day
// before f.To (exclusive) and the counts honour the exact times; without
// f.From it starts DefaultDecisionDays-1 days before the last day, and
// without f.To it ends today (or on f.From's day, if later). f.Limit and
// f.Cursor are ignored. A range over MaxDecisionDays, or a bad filter, is
// an ErrInvalid *tenants.Error naming the field. Read-only; runs in the
// tenant's row-level-security transaction.
func (s *Store) DecisionsPerDay(ctx context.Context, tenantID uuid.UUID, f Filter) ([]DayDecisions, error) {
	return s.decisionsPerDay(ctx, tenantID, f, time.Now())
}

func (s *Store) decisionsPerDay(ctx context.Context, tenantID uuid.UUID, f Filter, now time.Time) ([]DayDecisions, error) {
	first, last, err := decisionDays(f, now)
	if err != nil {
		return nil, err
	}
	f.Limit, f.Cursor = 0, ""
	if f.From.IsZero() {
		f.From = first
	}
	if f.To.IsZero() {
		f.To = last.AddDate(0, 0, 1)
	}
	where, args, err := f.where()
	if err != nil {
		return nil, err
	}
	n := int(last.Sub(first)/(24*time.Hour)) + 1
	out := make([]DayDecisions, n)
	for i := range out {
		out[i].Day = first.AddDate(0, 0, i)
	}
	err = s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT (c.at AT TIME ZONE 'UTC')::date AS day,
				count(*) FILTER (WHERE c.decision = 'allow'),
				count(*) FILTER (WHERE c.decision = 'deny'),
				count(*) FILTER (WHERE c.decision = 'approval')
			FROM audit_events c WHERE `+where+` GROUP BY day`, append([]any{tenantID}, args...)...)
		if err != nil {
			return err
		}
		var (
			day                   time.Time
			allow, deny, approval int
		)
		_, err = pgx.ForEachRow(rows, []any{&day, &allow, &deny, &approval}, func() error {
			i := int(time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC).Sub(first) / (24 * time.Hour))
			if i < 0 || i >= n {
				return fmt.Errorf("day %s outside %s–%s", day.Format(time.DateOnly), first.Format(time.DateOnly), last.Format(time.DateOnly))
			}
			out[i].Allow, out[i].Deny, out[i].Approval = allow, deny, approval
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: decisions per day for tenant %s: %w", tenantID, lsql.Translate(err))
	}
	return out, nil
}

// decisionDays is the first and last UTC day (midnights) DecisionsPerDay
// covers for f at now.
func decisionDays(f Filter, now time.Time) (first, last time.Time, err error) {
	day := func(t time.Time) time.Time {
		t = t.UTC()
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
	switch {
	case !f.To.IsZero():
		// To is exclusive: a range ending at midnight ends the day before.
		last = day(f.To.Add(-time.Nanosecond))
	case !f.From.IsZero() && f.From.After(now):
		last = day(f.From)
	default:
		last = day(now)
	}
	first = last.AddDate(0, 0, -(DefaultDecisionDays - 1))
	if !f.From.IsZero() {
		first = day(f.From)
	}
	if first.After(last) {
		return first, last, tenants.Invalid("to", "the end of the time range must be after its start")
	}
	if last.Sub(first) >= MaxDecisionDays*24*time.Hour {
		return first, last, tenants.Invalid("from", fmt.Sprintf("the chart covers at most %d days; narrow the time range", MaxDecisionDays))
	}
	return first, last, nil
}
