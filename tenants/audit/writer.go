package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	lsql "github.com/locksmithhq/locksmith/sql"
)

// ErrClosed is returned by a Writer after Close.
var ErrClosed = errors.New("audit: writer is closed")

// Writer defaults.
const (
	// DefaultMaxBatch is the most events one transaction writes.
	DefaultMaxBatch = 2000
	// DefaultQueueSize bounds the events waiting for a flusher.
	DefaultQueueSize = 16384
	// DefaultFlushers is how many transactions may be in flight at once
	// (each tenant's events always go through the same one).
	DefaultFlushers = 4
	// flushTimeout bounds one batch transaction.
	flushTimeout = 30 * time.Second
	// DefaultRetryFor is how long a batch that certainly did not commit
	// because the database connection was lost or refused is retried.
	DefaultRetryFor = 10 * time.Second
	// retryBackoff and maxRetryBackoff space those retries.
	retryBackoff, maxRetryBackoff = 50 * time.Millisecond, time.Second
)

// WriterConfig configures a Writer.
type WriterConfig struct {
	DB     *lsql.DB
	Logger *slog.Logger
	// MaxBatch, QueueSize and Flushers default to DefaultMaxBatch,
	// DefaultQueueSize and DefaultFlushers.
	MaxBatch  int
	QueueSize int
	Flushers  int
	// Now is the clock events are stamped with; nil means time.Now.
	Now func() time.Time
	// RetryFor is how long a batch whose transaction failed because the
	// database connection was lost or refused (a restart, a failover, a
	// terminated backend), and which therefore did not commit, is written
	// again, with backoff from 50 ms to 1 s, before its callers get the
	// error. 0 means DefaultRetryFor; negative means never. A batch whose
	// COMMIT may have gone through is never written again (its events
	// would be recorded twice): its callers get the error at once.
	RetryFor time.Duration
}

// Writer appends events to the audit trail with group commit. It is safe
// for concurrent use; Close it to drain the queue.
type Writer struct {
	db       *lsql.DB
	logger   *slog.Logger
	now      func() time.Time
	maxBatch int
	retryFor time.Duration

	mu     sync.RWMutex // guards closed and sends on queues
	closed bool
	// queues has one queue per flusher; a tenant always maps to the same
	// one, so flushers never wait on each other's head row locks.
	queues []chan *pending
	wg     sync.WaitGroup

	batches, events, failed atomic.Uint64
	// waits counts events by how long their caller waited, from the event's
	// time stamp (taken as it is queued) to its batch's answer.
	waits [len(WaitBuckets) + 1]atomic.Uint64
	// waitSumMicros is the sum of those waits.
	waitSumMicros atomic.Uint64
}

// WaitBuckets are the upper bounds of the commit-wait histogram (seconds;
// the last bucket, past them, is implicit).
var WaitBuckets = [...]float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, 1}

// WriterStats counts what a Writer committed since it started.
type WriterStats struct {
	// Batches is the number of transactions committed; Events the events
	// they wrote; Failed the events whose batch failed.
	Batches, Events, Failed uint64
	// Queued is the number of events waiting for a flusher now.
	Queued int
	// WaitCounts[i] is the number of events, committed or failed, whose
	// caller waited at most WaitBuckets[i] (and more than the bound before
	// it); the last entry counts the longer waits. WaitSum is the total
	// wait in seconds.
	WaitCounts [len(WaitBuckets) + 1]uint64
	WaitSum    float64
}

// Stats returns the Writer's counters (for metrics and tests).
func (w *Writer) Stats() WriterStats {
	s := WriterStats{Batches: w.batches.Load(), Events: w.events.Load(), Failed: w.failed.Load(),
		WaitSum: float64(w.waitSumMicros.Load()) / 1e6}
	for i := range w.waits {
		s.WaitCounts[i] = w.waits[i].Load()
	}
	for _, q := range w.queues {
		s.Queued += len(q)
	}
	return s
}

// observeWaits records how long batch's callers waited, until now.
func (w *Writer) observeWaits(batch []*pending, now time.Time) {
	var sum uint64
	for _, p := range batch {
		d := max(now.Sub(p.row.at), 0)
		sum += uint64(d.Microseconds())
		secs := d.Seconds()
		i := 0
		for i < len(WaitBuckets) && secs > WaitBuckets[i] {
			i++
		}
		w.waits[i].Add(1)
	}
	w.waitSumMicros.Add(sum)
}

// pending is one event waiting for its batch to commit.
type pending struct {
	tenant uuid.UUID
	row    row
	seq    int64
	done   chan error
}

// row is one audit_events row as written.
type row struct {
	at           time.Time
	kind         string
	requestID    string
	userIssuer   string
	userSubject  string
	userEmail    string
	agent        string
	act          string // text[] literal
	tool         string
	upstream     string
	upstreamName string
	method       string
	pathTemplate string
	scopes       string // text[] literal
	narrowed     bool
	decision     string
	rule         string
	reason       string
	approvalID   string
	intentSeq    *int64
	status       *int32
	latencyUS    *int64
	err          string
	detail       *string
	requestBody  *string
	responseBody *string
}

// NewWriter starts a Writer's flushers.
func NewWriter(cfg WriterConfig) (*Writer, error) {
	switch {
	case cfg.DB == nil:
		return nil, errors.New("audit: writer: db is required")
	case cfg.Logger == nil:
		return nil, errors.New("audit: writer: logger is required")
	case cfg.MaxBatch < 0 || cfg.QueueSize < 0 || cfg.Flushers < 0:
		return nil, errors.New("audit: writer: sizes must not be negative")
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.Flushers == 0 {
		cfg.Flushers = DefaultFlushers
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RetryFor == 0 {
		cfg.RetryFor = DefaultRetryFor
	}
	w := &Writer{db: cfg.DB, logger: cfg.Logger, now: cfg.Now, maxBatch: cfg.MaxBatch, retryFor: max(cfg.RetryFor, 0)}
	for range cfg.Flushers {
		q := make(chan *pending, max(cfg.QueueSize/cfg.Flushers, 1))
		w.queues = append(w.queues, q)
		w.wg.Add(1)
		go w.flusher(q)
	}
	return w, nil
}

// Intent records a call and returns its sequence number once the event is
// committed. For an allowed call, the caller must not act upstream unless
// Intent returned without error. A denied or held call is recorded the same
// way and needs no outcome. If ctx ends while waiting, the event may still
// be committed; the error is ctx's.
func (w *Writer) Intent(ctx context.Context, tenantID uuid.UUID, c Call) (int64, error) {
	if tenantID == uuid.Nil {
		return 0, errors.New("audit: intent: tenant id is required")
	}
	switch c.Decision {
	case DecisionAllow, DecisionDeny, DecisionApproval:
	default:
		return 0, fmt.Errorf("audit: intent: decision %q is not one of allow, deny, approval", c.Decision)
	}
	r := row{
		at:   w.stamp(),
		kind: "call", requestID: clean(c.RequestID, maxShort),
		userIssuer: clean(c.User.Issuer, maxShort), userSubject: clean(c.User.Subject, maxShort), userEmail: clean(c.User.Email, maxShort),
		agent: clean(c.Agent, maxShort), act: arrayLiteral(cleanList(c.Act)),
		tool: clean(c.Tool, maxShort), upstream: clean(c.Upstream, maxShort), upstreamName: clean(c.UpstreamName, maxShort),
		method: clean(c.Method, 16), pathTemplate: clean(c.PathTemplate, maxReason),
		scopes: arrayLiteral(cleanList(c.Scopes)), narrowed: c.Narrowed,
		decision: c.Decision, rule: clean(c.Rule, maxShort), reason: clean(c.Reason, maxReason),
		detail: cleanDetail(c.Detail), requestBody: cleanDetail(c.RequestBody),
	}
	if c.ApprovalID != uuid.Nil {
		r.approvalID = c.ApprovalID.String()
	}
	seq, err := w.append(ctx, tenantID, r)
	if err != nil {
		return 0, fmt.Errorf("audit: intent: %w", err)
	}
	return seq, nil
}

// Outcome records what happened upstream for the call intentSeq (from
// Intent), once committed, and returns the outcome's own sequence number.
func (w *Writer) Outcome(ctx context.Context, tenantID uuid.UUID, intentSeq int64, o Outcome) (int64, error) {
	if tenantID == uuid.Nil {
		return 0, errors.New("audit: outcome: tenant id is required")
	}
	if intentSeq <= 0 {
		return 0, errors.New("audit: outcome: intent sequence number is required")
	}
	status, latency := int32(o.Status), o.Latency.Microseconds()
	r := row{
		at: w.stamp(), kind: "outcome", act: "{}", scopes: "{}",
		intentSeq: &intentSeq, status: &status, latencyUS: &latency,
		err: clean(o.Error, maxReason), detail: cleanDetail(o.Detail),
		responseBody: cleanDetail(o.ResponseBody),
	}
	seq, err := w.append(ctx, tenantID, r)
	if err != nil {
		return 0, fmt.Errorf("audit: outcome: %w", err)
	}
	return seq, nil
}

// stamp is the event time as stored (UTC, microseconds), so what is hashed
// at sealing is what was written.
func (w *Writer) stamp() time.Time { return w.now().UTC().Truncate(time.Microsecond) }

// pendingPool recycles pending events (and their channels): at tens of
// thousands of events a second, garbage is throughput.
var pendingPool = sync.Pool{New: func() any { return &pending{done: make(chan error, 1)} }}

func (w *Writer) append(ctx context.Context, tenantID uuid.UUID, r row) (int64, error) {
	p := pendingPool.Get().(*pending)
	p.tenant, p.row, p.seq = tenantID, r, 0
	if err := w.enqueue(ctx, p); err != nil {
		pendingPool.Put(p)
		return 0, err
	}
	select {
	case err := <-p.done:
		seq := p.seq
		// The flusher is done with p once it has answered.
		p.row = row{}
		pendingPool.Put(p)
		if err != nil {
			return 0, err
		}
		return seq, nil
	case <-ctx.Done():
		// The flusher will still answer p: leave it to the garbage collector.
		return 0, ctx.Err()
	}
}

func (w *Writer) enqueue(ctx context.Context, p *pending) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	q := w.queues[binary.BigEndian.Uint32(p.tenant[12:])%uint32(len(w.queues))]
	select {
	case q <- p:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops accepting events, waits until every queued event is written
// (or ctx ends) and returns.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		for _, q := range w.queues {
			close(q)
		}
	}
	w.mu.Unlock()
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit: close writer: %w", ctx.Err())
	}
}

// flusher writes queue's events: it takes every event queued while its
// previous batch was being written and writes them as one batch.
func (w *Writer) flusher(queue chan *pending) {
	defer w.wg.Done()
	batch := make([]*pending, 0, w.maxBatch)
	cols := &columns{}
	for p := range queue {
		batch = append(batch[:0], p)
	fill:
		for len(batch) < w.maxBatch {
			select {
			case p, ok := <-queue:
				if !ok {
					break fill
				}
				batch = append(batch, p)
			default:
				break fill
			}
		}
		w.write(batch, cols)
		clear(batch)
	}
}

// write flushes batch and answers its callers. When a batch spanning
// several tenants fails (say one tenant was deleted meanwhile), nothing of
// it was committed, and each tenant's events are retried on their own so
// one tenant's failure is not every tenant's. A batch that failed because
// the connection was lost or refused is first retried as a whole (see
// WriterConfig.RetryFor); if the database stays away, its callers get the
// error.
func (w *Writer) write(batch []*pending, cols *columns) {
	state, err := w.flushRetrying(batch, cols)
	if err != nil && state == notCommitted && !lsql.IsConnectionError(err) && len(batch) > 1 && batch[0].tenant != batch[len(batch)-1].tenant {
		// flush sorted the batch by tenant.
		for lo := 0; lo < len(batch); {
			hi := tenantRun(batch, lo)
			w.write(batch[lo:hi], cols)
			lo = hi
		}
		return
	}
	if err != nil {
		w.failed.Add(uint64(len(batch)))
		w.logger.Error("audit batch not written", "events", len(batch), "tenant_id", batch[0].tenant, "err", err)
	} else {
		w.batches.Add(1)
		w.events.Add(uint64(len(batch)))
	}
	w.observeWaits(batch, w.now())
	for _, p := range batch {
		p.done <- err
	}
}

// flushRetrying flushes batch, and again, with backoff, while it fails
// for a lost or refused connection without having committed, for up to
// w.retryFor.
func (w *Writer) flushRetrying(batch []*pending, cols *columns) (commitState, error) {
	deadline := time.Now().Add(w.retryFor)
	backoff := retryBackoff
	for attempt := 1; ; attempt++ {
		state, err := w.flush(batch, cols)
		if err == nil {
			if attempt > 1 {
				w.logger.Info("audit batch written after the database came back", "events", len(batch), "attempts", attempt)
			}
			return state, nil
		}
		if state != notCommitted || !lsql.IsConnectionError(err) || time.Now().Add(backoff).After(deadline) {
			return state, err
		}
		if attempt == 1 {
			w.logger.Warn("audit batch not written: database connection lost; retrying", "events", len(batch),
				"retry_for", w.retryFor, "err", err)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, maxRetryBackoff)
	}
}

// commitState is what a flush knows about its transaction's commit.
type commitState int

const (
	// notCommitted: the transaction certainly did not commit (the batch
	// never reached the server, or the server answered a statement, the
	// COMMIT included, with an error): writing it again is safe.
	notCommitted commitState = iota
	// maybeCommitted: the connection broke after the batch was sent and
	// before the COMMIT's answer arrived; the server may have committed.
	maybeCommitted
	// committed: the transaction committed.
	committed
)

// sentStateOf is the commit state of a batch's implicit transaction that
// failed with err, atCommit telling whether every statement had already
// answered (the error came with the COMMIT at Sync). Nothing was sent (the
// connection could not be had): not committed. The server answered a
// statement with an error (it runs them in order and commits only at
// Sync), or the COMMIT itself with an ERROR: not committed. Otherwise (the
// connection broke, or the server ended the session, after the pipeline
// was sent) the COMMIT may have gone through.
func sentStateOf(err error, atCommit bool) commitState {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.SafeToRetry(err) {
		return notCommitted
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (!atCommit || pgErr.Severity == "ERROR") {
		return notCommitted
	}
	return maybeCommitted
}

// tenantRun returns the end of the run of batch[lo]'s tenant.
func tenantRun(batch []*pending, lo int) int {
	hi := lo + 1
	for hi < len(batch) && batch[hi].tenant == batch[lo].tenant {
		hi++
	}
	return hi
}

// insertSQL sets the tenant for row-level security, allocates n sequence
// numbers from the tenant's head (holding its row lock until COMMIT) and
// inserts the rows with them, in order, as one statement (one fewer per
// batch than a separate set_config).
//
// The order is the executor's: the outer SELECT reads h, whose INSERT reads
// its row from s, so set_config runs before either INSERT checks a row
// against the policies; ins, not read by the outer query, runs after it
// (PostgreSQL completes such data-modifying CTEs after the main query).
// Were that order ever different, the policies would see no tenant and
// refuse the rows: the batch fails, it never lands in another tenant.
const insertSQL = `WITH s AS MATERIALIZED (
    SELECT set_config('app.tenant_id', $1::text, true) AS tenant
), h AS (
    INSERT INTO audit_heads AS h (tenant_id, next_seq)
    SELECT s.tenant::uuid, 1 + $2::bigint FROM s
    ON CONFLICT (tenant_id) DO UPDATE SET next_seq = h.next_seq + $2::bigint
    RETURNING h.next_seq - $2::bigint AS first
), ins AS (
    INSERT INTO audit_events (tenant_id, seq, at, kind, request_id, user_issuer, user_subject, user_email,
        agent, act, tool, upstream, upstream_name, method, path_template, scopes, narrowed, decision, rule,
        reason, approval_id, intent_seq, status, latency_us, error, detail, request_body, response_body)
    SELECT $1::text::uuid, h.first + u.ord - 1, u.at, u.kind, u.request_id, u.user_issuer, u.user_subject, u.user_email,
        u.agent, u.act::text[], u.tool, u.upstream, u.upstream_name, u.method, u.path_template, u.scopes::text[],
        u.narrowed, u.decision, u.rule, u.reason, NULLIF(u.approval_id, '')::uuid, u.intent_seq, u.status,
        u.latency_us, u.error, u.detail::jsonb, u.request_body::jsonb, u.response_body::jsonb
    FROM h, unnest($3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
        $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::boolean[],
        $18::text[], $19::text[], $20::text[], $21::text[], $22::bigint[], $23::integer[], $24::bigint[],
        $25::text[], $26::text[], $27::text[], $28::text[])
        WITH ORDINALITY AS u(at, kind, request_id, user_issuer, user_subject, user_email, agent, act, tool,
            upstream, upstream_name, method, path_template, scopes, narrowed, decision, rule, reason,
            approval_id, intent_seq, status, latency_us, error, detail, request_body, response_body, ord)
)
SELECT first FROM h`

// flush writes batch in one implicit transaction (one pipeline, one Sync):
// per tenant, in tenant id order (so concurrent flushers lock heads in the
// same order), set the tenant and insert its rows. It returns after the
// COMMIT, which waits for the WAL flush (synchronous_commit as configured).
// It sorts batch by tenant, keeping each tenant's events in arrival order.
// state says whether the events were committed: on an error, certainly not
// (the server refused a statement, or nothing was sent), or maybe (the
// connection broke after the pipeline was sent).
func (w *Writer) flush(batch []*pending, cols *columns) (state commitState, err error) {
	slices.SortStableFunc(batch, func(a, b *pending) int { return bytes.Compare(a.tenant[:], b.tenant[:]) })
	cols.fill(batch)
	b := &pgx.Batch{}
	for lo := 0; lo < len(batch); {
		hi := tenantRun(batch, lo)
		b.Queue(insertSQL, cols.args(batch[lo].tenant, lo, hi)...)
		lo = hi
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	br := w.db.Pool().SendBatch(ctx, b)
	cols.release()
	var firstErr error
	for lo := 0; lo < len(batch) && firstErr == nil; {
		hi := tenantRun(batch, lo)
		var first int64
		if err := br.QueryRow().Scan(&first); err != nil {
			firstErr = err
			break
		}
		for i, p := range batch[lo:hi] {
			p.seq = first + int64(i)
		}
		lo = hi
	}
	// Close reads up to ReadyForQuery: the implicit transaction's COMMIT.
	atCommit := firstErr == nil
	if err := br.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr != nil {
		return sentStateOf(firstErr, atCommit), fmt.Errorf("write batch of %d events: %w", len(batch), lsql.Translate(firstErr))
	}
	return committed, nil
}

// columns holds a batch's rows as the column arrays insertSQL takes. A
// flusher reuses one across batches: at tens of thousands of events a
// second, the per-batch arrays were most of the writer's garbage. pgx has
// encoded the arrays by the time SendBatch returns.
type columns struct {
	at                                                                 []time.Time
	kind, reqID, iss, sub, email, agent, act, tool, up, upName, method []string
	path, scopes, decision, rule, reason, approval, errs               []string
	narrowed                                                           []bool
	intent, latency                                                    []*int64
	status                                                             []*int32
	detail, reqBody, respBody                                          []*string
}

// fill lays out batch's rows (the previous batch's are overwritten).
func (c *columns) fill(batch []*pending) {
	n := len(batch)
	c.at = resize(c.at, n)
	for _, s := range []*[]string{&c.kind, &c.reqID, &c.iss, &c.sub, &c.email, &c.agent, &c.act, &c.tool, &c.up,
		&c.upName, &c.method, &c.path, &c.scopes, &c.decision, &c.rule, &c.reason, &c.approval, &c.errs} {
		*s = resize(*s, n)
	}
	c.narrowed = resize(c.narrowed, n)
	c.intent, c.latency = resize(c.intent, n), resize(c.latency, n)
	c.status = resize(c.status, n)
	c.detail, c.reqBody, c.respBody = resize(c.detail, n), resize(c.reqBody, n), resize(c.respBody, n)
	for i, p := range batch {
		r := &p.row
		c.at[i], c.kind[i], c.reqID[i], c.iss[i], c.sub[i], c.email[i] = r.at, r.kind, r.requestID, r.userIssuer, r.userSubject, r.userEmail
		c.agent[i], c.act[i], c.tool[i], c.up[i], c.upName[i], c.method[i] = r.agent, r.act, r.tool, r.upstream, r.upstreamName, r.method
		c.path[i], c.scopes[i], c.narrowed[i], c.decision[i], c.rule[i], c.reason[i] = r.pathTemplate, r.scopes, r.narrowed, r.decision, r.rule, r.reason
		c.approval[i], c.intent[i], c.status[i], c.latency[i], c.errs[i], c.detail[i] = r.approvalID, r.intentSeq, r.status, r.latencyUS, r.err, r.detail
		c.reqBody[i], c.respBody[i] = r.requestBody, r.responseBody
	}
}

// release drops the references to the batch's strings (bodies may be
// large) once pgx has encoded them.
func (c *columns) release() {
	for _, s := range []*[]string{&c.kind, &c.reqID, &c.iss, &c.sub, &c.email, &c.agent, &c.act, &c.tool, &c.up,
		&c.upName, &c.method, &c.path, &c.scopes, &c.decision, &c.rule, &c.reason, &c.approval, &c.errs} {
		clear(*s)
	}
	clear(c.intent)
	clear(c.latency)
	clear(c.status)
	clear(c.detail)
	clear(c.reqBody)
	clear(c.respBody)
}

// args returns insertSQL's arguments for rows lo..hi of the batch, which
// are all tenant's.
func (c *columns) args(tenant uuid.UUID, lo, hi int) []any {
	return []any{tenant.String(), int64(hi - lo), c.at[lo:hi], c.kind[lo:hi], c.reqID[lo:hi], c.iss[lo:hi], c.sub[lo:hi],
		c.email[lo:hi], c.agent[lo:hi], c.act[lo:hi], c.tool[lo:hi], c.up[lo:hi], c.upName[lo:hi], c.method[lo:hi],
		c.path[lo:hi], c.scopes[lo:hi], c.narrowed[lo:hi], c.decision[lo:hi], c.rule[lo:hi], c.reason[lo:hi],
		c.approval[lo:hi], c.intent[lo:hi], c.status[lo:hi], c.latency[lo:hi], c.errs[lo:hi], c.detail[lo:hi],
		c.reqBody[lo:hi], c.respBody[lo:hi]}
}

// resize returns s with length n, reusing its array when it is big enough.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
