package audit_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/audit"
)

func TestMain(m *testing.M) { os.Exit(sqltest.Main(m)) }

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

type testBundle struct {
	ctx    context.Context
	writer *audit.Writer
	store  *audit.Store
	tenant uuid.UUID
	slug   string
}

func newTenant(t testing.TB) (uuid.UUID, string) {
	t.Helper()
	var id uuid.UUID
	slug := "a-" + uuid.NewString()[:8]
	require.NoError(t, sqltest.DB(t).Pool().QueryRow(context.Background(),
		"INSERT INTO tenants (slug, name) VALUES ($1, 'Audit test') RETURNING id", slug).Scan(&id))
	return id, slug
}

func newWriter(t testing.TB, now func() time.Time) *audit.Writer {
	t.Helper()
	w, err := audit.NewWriter(audit.WriterConfig{DB: sqltest.DB(t), Logger: discard, Now: now})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Close(context.Background())) })
	return w
}

func setup(t testing.TB) *testBundle {
	t.Helper()
	store, err := audit.New(audit.Config{DB: sqltest.DB(t), Logger: discard, SealBatch: 4})
	require.NoError(t, err)
	id, slug := newTenant(t)
	return &testBundle{ctx: context.Background(), writer: newWriter(t, nil), store: store, tenant: id, slug: slug}
}

func owner(t testing.TB) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), sqltest.OwnerURL(t))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func call(n int) audit.Call {
	return audit.Call{
		RequestID: fmt.Sprintf("req-%d", n),
		User:      audit.User{Issuer: "https://idp.acme.example", Subject: "u-1", Email: "engineer@acme.example"},
		Agent:     "claude-desktop", Act: []string{"claude-desktop"},
		Tool: "tasks.list", Upstream: "acme-tasks", UpstreamName: "Acme Tasks",
		Method: "GET", PathTemplate: "/tasks", Scopes: []string{"tasks:read"}, Narrowed: true,
		Decision: audit.DecisionAllow, Rule: "default", Reason: "allowed",
	}
}

// writeCalls records n allowed calls, each with an outcome.
func (b *testBundle) writeCalls(t testing.TB, n int) []int64 {
	t.Helper()
	var seqs []int64
	for i := range n {
		seq, err := b.writer.Intent(b.ctx, b.tenant, call(i))
		require.NoError(t, err)
		_, err = b.writer.Outcome(b.ctx, b.tenant, seq, audit.Outcome{Status: 200, Latency: 12 * time.Millisecond})
		require.NoError(t, err)
		seqs = append(seqs, seq)
	}
	return seqs
}

func (b *testBundle) sealAll(t testing.TB) {
	t.Helper()
	for {
		res, err := b.store.Seal(b.ctx, b.tenant)
		require.NoError(t, err)
		if res.Events == 0 {
			return
		}
	}
}

func TestIntentOutcomeAndQuery(t *testing.T) {
	t.Parallel()
	b := setup(t)

	ok, err := b.writer.Intent(b.ctx, b.tenant, call(1))
	require.NoError(t, err)
	require.Equal(t, int64(1), ok)
	_, err = b.writer.Outcome(b.ctx, b.tenant, ok, audit.Outcome{Status: 204, Latency: 35 * time.Millisecond})
	require.NoError(t, err)

	unknown, err := b.writer.Intent(b.ctx, b.tenant, call(2)) // crashed before the outcome
	require.NoError(t, err)

	denied := call(3)
	denied.Tool, denied.Decision, denied.Rule, denied.Reason = "tasks.delete", audit.DecisionApproval, "destructive tool", "needs 2 approvals"
	denied.ApprovalID = uuid.New()
	deniedSeq, err := b.writer.Intent(b.ctx, b.tenant, denied)
	require.NoError(t, err)

	failed, err := b.writer.Intent(b.ctx, b.tenant, call(4))
	require.NoError(t, err)
	_, err = b.writer.Outcome(b.ctx, b.tenant, failed, audit.Outcome{Status: 502, Latency: 2 * time.Second, Error: "upstream timed out"})
	require.NoError(t, err)

	page, err := b.store.Query(b.ctx, b.tenant, audit.Filter{})
	require.NoError(t, err)
	require.Len(t, page.Events, 4)
	require.Empty(t, page.Next)
	bySeq := map[int64]audit.Event{}
	for _, e := range page.Events {
		bySeq[e.Seq] = e
	}
	require.Equal(t, audit.ResultOK, bySeq[ok].Result)
	require.Equal(t, 204, bySeq[ok].Outcome.Status)
	require.Equal(t, audit.ResultUnknown, bySeq[unknown].Result)
	require.Nil(t, bySeq[unknown].Outcome)
	require.Equal(t, audit.ResultNotCalled, bySeq[deniedSeq].Result)
	require.Equal(t, denied.ApprovalID, *bySeq[deniedSeq].ApprovalID)
	require.Equal(t, audit.ResultFailed, bySeq[failed].Result)

	e := bySeq[ok]
	require.Equal(t, "engineer@acme.example", e.User.Email)
	require.Equal(t, []string{"claude-desktop"}, e.Act)
	require.Equal(t, []string{"tasks:read"}, e.Scopes)
	require.True(t, e.Narrowed)
	require.Equal(t, "/tasks", e.PathTemplate)

	require.Equal(t, "engineer@acme.example via claude-desktop called tasks.delete on Acme Tasks — denied: needs 2 approvals", audit.Sentence(bySeq[deniedSeq]))
	require.Equal(t, "engineer@acme.example via claude-desktop called tasks.list on Acme Tasks — allowed, 204 in 35 ms", audit.Sentence(bySeq[ok]))
	require.Equal(t, "engineer@acme.example via claude-desktop called tasks.list on Acme Tasks — allowed, outcome unknown", audit.Sentence(bySeq[unknown]))
	require.Equal(t, "engineer@acme.example via claude-desktop called tasks.list on Acme Tasks — allowed, failed after 2s: upstream timed out", audit.Sentence(bySeq[failed]))

	got, err := b.store.Event(b.ctx, b.tenant, deniedSeq)
	require.NoError(t, err)
	require.Equal(t, "tasks.delete", got.Tool)
	_, err = b.store.Event(b.ctx, b.tenant, 9999)
	require.ErrorIs(t, err, tenants.ErrNotFound)
	// An outcome row is not a call.
	_, err = b.store.Event(b.ctx, b.tenant, ok+1)
	require.ErrorIs(t, err, tenants.ErrNotFound)
}

func TestWriterRefusesBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.writer.Intent(b.ctx, uuid.Nil, call(1))
	require.Error(t, err)
	c := call(1)
	c.Decision = "maybe"
	_, err = b.writer.Intent(b.ctx, b.tenant, c)
	require.ErrorContains(t, err, "decision")
	_, err = b.writer.Outcome(b.ctx, b.tenant, 0, audit.Outcome{})
	require.Error(t, err)

	// Hostile text is stored, not refused: invalid UTF-8, NUL, huge values, bad JSON.
	c = call(1)
	c.Reason = "bad \xff byte and \x00 NUL " + strings.Repeat("x", 10000)
	c.Detail = json.RawMessage(`{"note": "nul \u0000 here"}`)
	seq, err := b.writer.Intent(b.ctx, b.tenant, c)
	require.NoError(t, err)
	e, err := b.store.Event(b.ctx, b.tenant, seq)
	require.NoError(t, err)
	require.LessOrEqual(t, len(e.Reason), 2048)
	require.NotContains(t, e.Reason, "\x00")
	require.JSONEq(t, `{"note": "nul \ufffd here"}`, string(e.Detail))

	c.Detail = json.RawMessage(`{not json`)
	seq, err = b.writer.Intent(b.ctx, b.tenant, c)
	require.NoError(t, err)
	e, err = b.store.Event(b.ctx, b.tenant, seq)
	require.NoError(t, err)
	require.Nil(t, e.Detail)

	w, err := audit.NewWriter(audit.WriterConfig{DB: sqltest.DB(t), Logger: discard})
	require.NoError(t, err)
	require.NoError(t, w.Close(b.ctx))
	_, err = w.Intent(b.ctx, b.tenant, call(1))
	require.ErrorIs(t, err, audit.ErrClosed)
}

// TestAppRoleCannotUpdateOrDelete: the database refuses UPDATE and DELETE of
// audit rows by the application role.
func TestAppRoleCannotUpdateOrDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.writeCalls(t, 2)
	b.sealAll(t)
	for _, stmt := range []string{
		"UPDATE audit_events SET reason = 'nothing to see' WHERE tenant_id = $1",
		"DELETE FROM audit_events WHERE tenant_id = $1",
		"UPDATE audit_seals SET hash = prev_hash WHERE tenant_id = $1",
		"DELETE FROM audit_seals WHERE tenant_id = $1",
		"TRUNCATE audit_events",
	} {
		err := sqltest.DB(t).InTenant(b.ctx, b.tenant, func(tx pgx.Tx) error {
			if strings.HasPrefix(stmt, "TRUNCATE") {
				_, err := tx.Exec(b.ctx, stmt)
				return err
			}
			_, err := tx.Exec(b.ctx, stmt, b.tenant)
			return err
		})
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), "%s: want a refusal, got %v", stmt, err)
		require.Equal(t, "42501", pgErr.Code, stmt)
	}
	// The purge function only works on the transaction's own tenant.
	other, _ := newTenant(t)
	err := sqltest.DB(t).InTenant(b.ctx, other, func(tx pgx.Tx) error {
		_, err := tx.Exec(b.ctx, "SELECT audit_purge($1)", b.tenant)
		return err
	})
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr))
	require.Equal(t, "42501", pgErr.Code)
	rep, err := b.store.Verify(b.ctx, b.tenant)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
}

// TestVerify: Verify passes on an intact trail, then names the event after
// one row is edited, deleted or inserted with SQL as the owner.
func TestVerify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tamper func(t *testing.T, o *pgx.Conn, tenant uuid.UUID)
		want   audit.Problem
	}{
		{"edited", func(t *testing.T, o *pgx.Conn, tenant uuid.UUID) {
			_, err := o.Exec(context.Background(), "UPDATE audit_events SET tool = 'tasks.read' WHERE tenant_id = $1 AND seq = 5", tenant)
			require.NoError(t, err)
		}, audit.Problem{Seq: 5, Kind: audit.ProblemEdited}},
		{"edited to the same text in another column", func(t *testing.T, o *pgx.Conn, tenant uuid.UUID) {
			_, err := o.Exec(context.Background(), "UPDATE audit_events SET at = at + interval '1 microsecond' WHERE tenant_id = $1 AND seq = 2", tenant)
			require.NoError(t, err)
		}, audit.Problem{Seq: 2, Kind: audit.ProblemEdited}},
		{"deleted", func(t *testing.T, o *pgx.Conn, tenant uuid.UUID) {
			_, err := o.Exec(context.Background(), "DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 7", tenant)
			require.NoError(t, err)
		}, audit.Problem{Seq: 7, Kind: audit.ProblemDeleted}},
		{"deleted unsealed", func(t *testing.T, o *pgx.Conn, tenant uuid.UUID) {
			_, err := o.Exec(context.Background(), "DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 12", tenant)
			require.NoError(t, err)
		}, audit.Problem{Seq: 12, Kind: audit.ProblemDeleted}},
		{"inserted", func(t *testing.T, o *pgx.Conn, tenant uuid.UUID) {
			_, err := o.Exec(context.Background(), `INSERT INTO audit_events (tenant_id, seq, at, kind, tool, decision)
				SELECT tenant_id, next_seq, now(), 'call', 'tasks.delete', 'allow' FROM audit_heads WHERE tenant_id = $1`, tenant)
			require.NoError(t, err)
		}, audit.Problem{Seq: 13, Kind: audit.ProblemInserted}},
		{"seal rewritten", func(t *testing.T, o *pgx.Conn, tenant uuid.UUID) {
			_, err := o.Exec(context.Background(), "UPDATE audit_seals SET digests = set_byte(digests, 0, get_byte(digests, 0) # 1) WHERE tenant_id = $1 AND from_seq = 1", tenant)
			require.NoError(t, err)
		}, audit.Problem{Seq: 1, Kind: audit.ProblemSeal}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.writeCalls(t, 5) // events 1–10
			b.sealAll(t)
			b.writeCalls(t, 1) // events 11–12, unsealed
			rep, err := b.store.Verify(b.ctx, b.tenant)
			require.NoError(t, err)
			require.True(t, rep.OK(), "%v", rep.Problems)
			require.Equal(t, int64(12), rep.Events)
			require.Equal(t, int64(10), rep.Sealed)
			require.Equal(t, 3, rep.Seals)

			tc.tamper(t, owner(t), b.tenant)
			rep, err = b.store.Verify(b.ctx, b.tenant)
			require.NoError(t, err)
			require.False(t, rep.OK())
			require.Len(t, rep.Problems, 1, "%v", rep.Problems)
			require.Equal(t, tc.want.Seq, rep.Problems[0].Seq, "%v", rep.Problems)
			require.Equal(t, tc.want.Kind, rep.Problems[0].Kind, "%v", rep.Problems)
			require.Contains(t, rep.Problems[0].String(), fmt.Sprint(tc.want.Seq))
		})
	}
}

// TestSealStopsAtGap: an event deleted before sealing stops the sealer,
// which names it.
func TestSealStopsAtGap(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.writeCalls(t, 3) // 1–6
	_, err := owner(t).Exec(b.ctx, "DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 3", b.tenant)
	require.NoError(t, err)
	res, err := b.store.Seal(b.ctx, b.tenant)
	require.ErrorIs(t, err, audit.ErrGap)
	require.ErrorContains(t, err, "event 3 is missing")
	require.Equal(t, int64(2), res.Events)
	rep, err := b.store.Verify(b.ctx, b.tenant)
	require.NoError(t, err)
	require.Equal(t, []audit.Problem{{Seq: 3, Kind: audit.ProblemDeleted, Detail: "the event is missing"}}, rep.Problems)
}

func TestConcurrentSealers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.writeCalls(t, 20)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.store.Seal(b.ctx, b.tenant)
			assertNoError(t, err)
		}()
	}
	wg.Wait()
	b.sealAll(t)
	rep, err := b.store.Verify(b.ctx, b.tenant)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	require.Equal(t, int64(40), rep.Sealed)
}

// TestPurgeKeepsChainVerifiable: old sealed batches are purged through the
// database function, the chain still verifies, and sealing continues.
func TestPurgeKeepsChainVerifiable(t *testing.T) {
	t.Parallel()
	store, err := audit.New(audit.Config{DB: sqltest.DB(t), Logger: discard, SealBatch: 4})
	require.NoError(t, err)
	tenant, _ := newTenant(t)
	ctx := context.Background()
	old := time.Now().Add(-30 * 24 * time.Hour)
	b := &testBundle{ctx: ctx, store: store, tenant: tenant, writer: newWriter(t, func() time.Time { return old })}
	b.writeCalls(t, 4) // 1–8, 30 days old
	b.sealAll(t)
	b.writer = newWriter(t, nil)
	b.writeCalls(t, 1) // 9–10, fresh, unsealed

	n, err := store.Purge(ctx, tenant) // default retention 365 days: nothing
	require.NoError(t, err)
	require.Zero(t, n)
	require.ErrorIs(t, store.SetRetention(ctx, tenant, 3), tenants.ErrInvalid)
	require.NoError(t, store.SetRetention(ctx, tenant, 7))
	days, err := store.Retention(ctx, tenant)
	require.NoError(t, err)
	require.Equal(t, 7, days)
	n, err = store.Purge(ctx, tenant)
	require.NoError(t, err)
	require.Equal(t, int64(8), n)

	page, err := store.Query(ctx, tenant, audit.Filter{})
	require.NoError(t, err)
	require.Len(t, page.Events, 1)
	b.sealAll(t)
	rep, err := store.Verify(ctx, tenant)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	require.Equal(t, int64(2), rep.Events)
	require.Equal(t, 3, rep.Seals)

	// Re-inserting a purged event is caught.
	_, err = owner(t).Exec(ctx, `INSERT INTO audit_events (tenant_id, seq, at, kind) VALUES ($1, 3, now(), 'call')`, tenant)
	require.NoError(t, err)
	rep, err = store.Verify(ctx, tenant)
	require.NoError(t, err)
	require.Equal(t, []audit.Problem{{Seq: 3, Kind: audit.ProblemInserted, Detail: "the event lies in a purged batch"}}, rep.Problems)
}

// TestGroupCommit: 50 concurrent writers share transactions, every event
// gets a distinct, gapless number, and all of it verifies.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other, _ := newTenant(t)
	const writers, each = 50, 40
	var mu sync.Mutex
	seen := map[uuid.UUID]map[int64]bool{b.tenant: {}, other: {}}
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tenant := b.tenant
			if i%2 == 1 {
				tenant = other
			}
			for j := range each {
				seq, err := b.writer.Intent(b.ctx, tenant, call(i*1000+j))
				if !assertNoError(t, err) {
					return
				}
				mu.Lock()
				if seen[tenant][seq] {
					t.Errorf("sequence number %d given twice", seq)
				}
				seen[tenant][seq] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, tenant := range []uuid.UUID{b.tenant, other} {
		require.Len(t, seen[tenant], writers/2*each)
		for s := int64(1); s <= writers/2*each; s++ {
			require.True(t, seen[tenant][s], "tenant %s: %d missing", tenant, s)
		}
		for {
			res, err := b.store.Seal(b.ctx, tenant)
			require.NoError(t, err)
			if res.Events == 0 {
				break
			}
		}
		rep, err := b.store.Verify(b.ctx, tenant)
		require.NoError(t, err)
		require.True(t, rep.OK(), "%v", rep.Problems)
	}
	st := b.writer.Stats()
	require.Equal(t, uint64(writers*each), st.Events)
	require.Less(t, st.Batches, uint64(writers*each), "no batching happened")
	var waited uint64
	for _, n := range st.WaitCounts {
		waited += n
	}
	require.Equal(t, st.Events, waited, "every event's commit wait is counted")
	require.Zero(t, st.Queued)
	t.Logf("group commit: %d events in %d transactions", st.Events, st.Batches)
}

func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}

func TestQueryFiltersAndPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	base := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	var clock time.Time
	var cmu sync.Mutex
	w := newWriter(t, func() time.Time { cmu.Lock(); defer cmu.Unlock(); return clock })
	for i := range 30 {
		cmu.Lock()
		clock = base.Add(time.Duration(i) * time.Minute)
		cmu.Unlock()
		c := call(i)
		switch i % 3 {
		case 1:
			c.User = audit.User{Issuer: "https://idp.acme.example", Subject: "u-2", Email: "Analyst@Acme.example"}
			c.Agent = "cursor"
		case 2:
			c.Tool, c.Upstream, c.Decision, c.Reason = "billing.charge", "billing", audit.DecisionDeny, "scope"
		}
		_, err := w.Intent(b.ctx, b.tenant, c)
		require.NoError(t, err)
	}
	count := func(f audit.Filter) int {
		page, err := b.store.Query(b.ctx, b.tenant, f)
		require.NoError(t, err)
		return len(page.Events)
	}
	require.Equal(t, 10, count(audit.Filter{User: "analyst@acme.example"}))
	require.Equal(t, 10, count(audit.Filter{User: "u-2", Issuer: "https://idp.acme.example"}))
	require.Equal(t, 0, count(audit.Filter{User: "u-2", Issuer: "https://other.example"}))
	require.Equal(t, 10, count(audit.Filter{Agent: "cursor"}))
	require.Equal(t, 10, count(audit.Filter{Tool: "billing.charge"}))
	require.Equal(t, 10, count(audit.Filter{Upstream: "billing"}))
	require.Equal(t, 10, count(audit.Filter{Decision: audit.DecisionDeny}))
	require.Equal(t, 5, count(audit.Filter{From: base.Add(10 * time.Minute), To: base.Add(15 * time.Minute)}))
	require.Equal(t, 7, count(audit.Filter{Agent: "cursor", From: base.Add(10 * time.Minute)}))

	// Keyset pages: 7 + 7 + 7 + 7 + 2, newest first, no overlap.
	var all []int64
	f := audit.Filter{Limit: 7}
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		page, err := b.store.Query(b.ctx, b.tenant, f)
		require.NoError(t, err)
		for _, e := range page.Events {
			all = append(all, e.Seq)
		}
		if page.Next == "" {
			break
		}
		f.Cursor = page.Next
	}
	require.Len(t, all, 30)
	for i := 1; i < len(all); i++ {
		require.Greater(t, all[i-1], all[i])
	}

	for _, bad := range []audit.Filter{
		{Cursor: "not-a-cursor"}, {Decision: "maybe"}, {Limit: 5000}, {Limit: -1},
		{From: base, To: base},
	} {
		_, err := b.store.Query(b.ctx, b.tenant, bad)
		require.ErrorIs(t, err, tenants.ErrInvalid, "%+v", bad)
	}
}

func TestExport(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.writeCalls(t, 3)
	c := call(9)
	c.User.Email = "=HYPERLINK(\"http://evil.example\")"
	c.Decision, c.Reason = audit.DecisionDeny, "agent not allowed"
	_, err := b.writer.Intent(b.ctx, b.tenant, c)
	require.NoError(t, err)

	var buf bytes.Buffer
	require.NoError(t, b.store.ExportCSV(b.ctx, b.tenant, audit.Filter{}, &buf))
	recs, err := csv.NewReader(&buf).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 5)
	require.Equal(t, audit.CSVHeader, recs[0])
	require.Equal(t, "'=HYPERLINK(\"http://evil.example\")", recs[1][5], "formula defused")
	require.Equal(t, "deny", recs[1][14])
	require.Equal(t, "ok", recs[2][18])
	require.Equal(t, "200", recs[2][19])

	buf.Reset()
	require.NoError(t, b.store.ExportJSONL(b.ctx, b.tenant, audit.Filter{Decision: audit.DecisionAllow}, &buf))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 3)
	var e audit.Event
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &e))
	require.Equal(t, "tasks.list", e.Tool)
	require.Equal(t, 200, e.Outcome.Status)
}

// TestTwoTenantIsolation runs every store method for tenant B against
// tenant A's trail: B sees, seals, verifies and purges none of it.
func TestTwoTenantIsolation(t *testing.T) {
	t.Parallel()
	a := setup(t)
	seqs := a.writeCalls(t, 3)
	a.sealAll(t)
	bID, bSlug := newTenant(t)
	b := &testBundle{ctx: a.ctx, writer: a.writer, store: a.store, tenant: bID, slug: bSlug}

	page, err := b.store.Query(b.ctx, b.tenant, audit.Filter{})
	require.NoError(t, err)
	require.Empty(t, page.Events)
	page, err = b.store.Query(b.ctx, b.tenant, audit.Filter{User: "u-1"})
	require.NoError(t, err)
	require.Empty(t, page.Events)
	_, err = b.store.Event(b.ctx, b.tenant, seqs[0])
	require.ErrorIs(t, err, tenants.ErrNotFound)
	var buf bytes.Buffer
	require.NoError(t, b.store.ExportCSV(b.ctx, b.tenant, audit.Filter{}, &buf))
	require.Equal(t, 1, strings.Count(buf.String(), "\n"), "header only")
	buf.Reset()
	require.NoError(t, b.store.ExportJSONL(b.ctx, b.tenant, audit.Filter{}, &buf))
	require.Empty(t, buf.String())
	perDay, err := b.store.DecisionsPerDay(b.ctx, b.tenant, audit.Filter{})
	require.NoError(t, err)
	total := func(days []audit.DayDecisions) (n int) {
		for _, d := range days {
			n += d.Total()
		}
		return n
	}
	require.Zero(t, total(perDay))
	perDay, err = a.store.DecisionsPerDay(a.ctx, a.tenant, audit.Filter{})
	require.NoError(t, err)
	require.Equal(t, 3, total(perDay))
	res, err := b.store.Seal(b.ctx, b.tenant)
	require.NoError(t, err)
	require.Zero(t, res.Events)
	rep, err := b.store.Verify(b.ctx, b.tenant)
	require.NoError(t, err)
	require.Zero(t, rep.Events)
	require.Zero(t, rep.Seals)
	require.NoError(t, b.store.SetRetention(b.ctx, b.tenant, 7))
	n, err := b.store.Purge(b.ctx, b.tenant)
	require.NoError(t, err)
	require.Zero(t, n)

	// B's own writes start its own numbering and don't touch A's trail.
	seq, err := b.writer.Intent(b.ctx, b.tenant, call(1))
	require.NoError(t, err)
	require.Equal(t, int64(1), seq)
	days, err := a.store.Retention(a.ctx, a.tenant)
	require.NoError(t, err)
	require.Equal(t, audit.DefaultRetentionDays, days)
	rep, err = a.store.Verify(a.ctx, a.tenant)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	require.Equal(t, int64(6), rep.Events)

	reps, err := a.store.VerifyAll(a.ctx, a.slug, b.slug)
	require.NoError(t, err)
	require.Len(t, reps, 2)
	_, err = a.store.VerifyAll(a.ctx, "no-such-tenant")
	require.ErrorIs(t, err, tenants.ErrNotFound)
}

// TestBadTenantDoesNotFailOthers: an event for a tenant that doesn't exist
// fails alone, not the other tenants' events batched with it.
func TestBadTenantDoesNotFailOthers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var wg sync.WaitGroup
	var good, bad atomic.Int32
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tenant := b.tenant
			if i%4 == 0 {
				tenant = uuid.New() // no such tenant
			}
			_, err := b.writer.Intent(b.ctx, tenant, call(i))
			switch {
			case err == nil && tenant == b.tenant:
				good.Add(1)
			case err != nil && tenant != b.tenant:
				bad.Add(1)
			default:
				t.Errorf("tenant %s: unexpected result %v", tenant, err)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, int32(30), good.Load())
	require.Equal(t, int32(10), bad.Load())
	rep, err := b.store.Verify(b.ctx, b.tenant)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	require.Equal(t, int64(30), rep.Events)
}

// TestHostileTextRoundTrips: every text field survives the writer's
// encoding and PostgreSQL's decoding unchanged: quotes, backslashes, control
// characters, array-literal syntax, non-ASCII.
func TestHostileTextRoundTrips(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const hostile = "a \"quoted\" \\back\\slash\\ {brace,comma} \t tab \n newline \x01 ☃ \u2028 NULL"
	c := audit.Call{
		RequestID: hostile + "1", User: audit.User{Issuer: hostile + "2", Subject: hostile + "3", Email: hostile + "4"},
		Agent: hostile + "5", Act: []string{hostile, "NULL", "", `"`}, Tool: hostile + "6", Upstream: hostile + "7",
		UpstreamName: hostile + "8", Method: "PATCH", PathTemplate: hostile + "9", Scopes: []string{hostile, "x,y", "{}"},
		Narrowed: true, Decision: audit.DecisionAllow, Rule: hostile + "10", Reason: hostile + "11",
		Detail: json.RawMessage(`{"s":"\"\\\u0001","n":[1,2.5,null,true]}`),
	}
	seq, err := b.writer.Intent(b.ctx, b.tenant, c)
	require.NoError(t, err)
	_, err = b.writer.Outcome(b.ctx, b.tenant, seq, audit.Outcome{Status: 500, Latency: time.Millisecond, Error: hostile + "12"})
	require.NoError(t, err)
	e, err := b.store.Event(b.ctx, b.tenant, seq)
	require.NoError(t, err)
	require.Equal(t, c.RequestID, e.RequestID)
	require.Equal(t, c.User, e.User)
	require.Equal(t, c.Agent, e.Agent)
	require.Equal(t, c.Act, e.Act)
	require.Equal(t, c.Tool, e.Tool)
	require.Equal(t, c.Upstream, e.Upstream)
	require.Equal(t, c.UpstreamName, e.UpstreamName)
	require.Equal(t, c.PathTemplate, e.PathTemplate)
	require.Equal(t, c.Scopes, e.Scopes)
	require.Equal(t, c.Rule, e.Rule)
	require.Equal(t, c.Reason, e.Reason)
	require.JSONEq(t, string(c.Detail), string(e.Detail))
	require.NotNil(t, e.Outcome)
	require.Equal(t, hostile+"12", e.Outcome.Error)
	b.sealAll(t)
	rep, err := b.store.Verify(b.ctx, b.tenant)
	require.NoError(t, err)
	require.True(t, rep.OK())
}

// TestTenantDeleteRemovesEvents: audit_events has no foreign key (migration
// 0009); deleting a tenant still deletes its trail, and nobody else's.
func TestTenantDeleteRemovesEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other, _ := newTenant(t)
	b.writeCalls(t, 3)
	_, err := b.writer.Intent(b.ctx, other, call(1))
	require.NoError(t, err)

	owner, err := pgx.Connect(b.ctx, sqltest.OwnerURL(t))
	require.NoError(t, err)
	defer owner.Close(b.ctx)
	count := func(id uuid.UUID) (n int) {
		require.NoError(t, owner.QueryRow(b.ctx, "SELECT count(*) FROM audit_events WHERE tenant_id = $1", id).Scan(&n))
		return n
	}
	require.Equal(t, 6, count(b.tenant))
	_, err = owner.Exec(b.ctx, "DELETE FROM tenants WHERE id = $1", b.tenant)
	require.NoError(t, err)
	require.Zero(t, count(b.tenant))
	require.Equal(t, 1, count(other))
}

// TestDecisionsPerDay counts calls per UTC day and decision: every day of
// the range present (zeros included), day edges exact, outcomes not
// counted, the page's filters honoured, another tenant's calls invisible.
func TestDecisionsPerDay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other, _ := newTenant(t)
	var clock time.Time
	var cmu sync.Mutex
	w := newWriter(t, func() time.Time { cmu.Lock(); defer cmu.Unlock(); return clock })
	n := 0
	record := func(tenant uuid.UUID, at time.Time, decision, agent, upstream string) {
		t.Helper()
		cmu.Lock()
		clock = at
		cmu.Unlock()
		n++
		c := call(n)
		c.Decision, c.Agent, c.Upstream = decision, agent, upstream
		if decision != audit.DecisionAllow {
			c.Reason = "policy"
		}
		seq, err := w.Intent(b.ctx, tenant, c)
		require.NoError(t, err)
		if decision == audit.DecisionAllow { // an outcome row is not a call
			_, err = w.Outcome(b.ctx, tenant, seq, audit.Outcome{Status: 200})
			require.NoError(t, err)
		}
	}
	day := func(d, h, m, s, ns int) time.Time { return time.Date(2026, 3, d, h, m, s, ns, time.UTC) }
	allow, deny, approval := audit.DecisionAllow, audit.DecisionDeny, audit.DecisionApproval

	record(b.tenant, time.Date(2026, 2, 19, 23, 59, 59, 0, time.UTC), allow, "claude-desktop", "acme-tasks") // before the default range
	for range 3 {
		record(b.tenant, day(2, 10, 0, 0, 0), allow, "claude-desktop", "acme-tasks")
	}
	record(b.tenant, day(2, 10, 5, 0, 0), deny, "claude-desktop", "billing")
	record(b.tenant, day(2, 23, 59, 59, 999_999_000), approval, "claude-desktop", "acme-tasks") // last µs of 2 March
	// 3 March: nothing.
	record(b.tenant, day(4, 0, 0, 0, 0), deny, "cursor", "acme-tasks") // first instant of 4 March
	record(b.tenant, day(4, 8, 0, 0, 0), deny, "cursor", "billing")
	record(b.tenant, day(4, 9, 0, 0, 0), allow, "cursor", "acme-tasks")
	for range 5 {
		record(other, day(2, 11, 0, 0, 0), allow, "claude-desktop", "acme-tasks")
	}
	record(other, day(3, 11, 0, 0, 0), deny, "claude-desktop", "acme-tasks")

	now := day(5, 12, 0, 0, 0)
	type dd = audit.DayDecisions
	d := func(m, dayN, a, de, ap int) dd {
		return dd{Day: time.Date(2026, time.Month(m), dayN, 0, 0, 0, 0, time.UTC), Allow: a, Deny: de, Approval: ap}
	}
	get := func(tenant uuid.UUID, f audit.Filter) []dd {
		t.Helper()
		got, err := b.store.DecisionsPerDayAt(b.ctx, tenant, f, now)
		require.NoError(t, err)
		return got
	}
	// nonZero is the days with calls; zeros checks every other day is zero.
	nonZero := func(days []dd) []dd {
		var out []dd
		for _, x := range days {
			if x.Total() > 0 {
				out = append(out, x)
			} else {
				require.Equal(t, dd{Day: x.Day}, x)
			}
		}
		return out
	}

	// Default: the 14 days up to today (20 Feb – 5 Mar), zeros included.
	got := get(b.tenant, audit.Filter{})
	require.Len(t, got, audit.DefaultDecisionDays)
	require.Equal(t, d(2, 20, 0, 0, 0), got[0])
	require.Equal(t, d(3, 3, 0, 0, 0), got[11])
	require.Equal(t, d(3, 5, 0, 0, 0), got[13])
	for i := 1; i < len(got); i++ {
		require.Equal(t, got[i-1].Day.AddDate(0, 0, 1), got[i].Day)
	}
	require.Equal(t, []dd{d(3, 2, 3, 1, 1), d(3, 4, 1, 2, 0)}, nonZero(got))

	// An explicit range: exactly its days, 3 March as zeros.
	got = get(b.tenant, audit.Filter{From: day(2, 0, 0, 0, 0), To: day(5, 0, 0, 0, 0)})
	require.Equal(t, []dd{d(3, 2, 3, 1, 1), d(3, 3, 0, 0, 0), d(3, 4, 1, 2, 0)}, got)
	// Exact times inside the first and last day.
	got = get(b.tenant, audit.Filter{From: day(2, 12, 0, 0, 0), To: day(4, 0, 0, 0, 1000)})
	require.Equal(t, []dd{d(3, 2, 0, 0, 1), d(3, 3, 0, 0, 0), d(3, 4, 0, 1, 0)}, got)
	// Only a start: up to today.
	got = get(b.tenant, audit.Filter{From: time.Date(2026, 2, 19, 0, 0, 0, 0, time.UTC)})
	require.Len(t, got, 15)
	require.Equal(t, []dd{d(2, 19, 1, 0, 0), d(3, 2, 3, 1, 1), d(3, 4, 1, 2, 0)}, nonZero(got))
	// Only an end: the 14 days before it.
	got = get(b.tenant, audit.Filter{To: day(3, 0, 0, 0, 0)})
	require.Len(t, got, 14)
	require.Equal(t, d(2, 17, 0, 0, 0), got[0])
	require.Equal(t, []dd{d(2, 19, 1, 0, 0), d(3, 2, 3, 1, 1)}, nonZero(got))

	// The page's filters.
	require.Equal(t, []dd{d(3, 2, 0, 1, 0), d(3, 4, 0, 2, 0)}, nonZero(get(b.tenant, audit.Filter{Decision: deny})))
	require.Equal(t, []dd{d(3, 4, 1, 2, 0)}, nonZero(get(b.tenant, audit.Filter{Agent: "cursor"})))
	require.Equal(t, []dd{d(3, 2, 0, 1, 0), d(3, 4, 0, 1, 0)}, nonZero(get(b.tenant, audit.Filter{Upstream: "billing"})))
	require.Equal(t, []dd{d(3, 4, 1, 1, 0)}, nonZero(get(b.tenant, audit.Filter{Agent: "cursor", Upstream: "acme-tasks"})))
	require.Empty(t, nonZero(get(b.tenant, audit.Filter{User: "nobody@acme.example"})))
	require.Len(t, get(b.tenant, audit.Filter{Tool: "tasks.list", Limit: 5000, Cursor: "ignored"}), 14, "limit and cursor ignored")

	// The other tenant sees only its own calls, and A none of them.
	require.Equal(t, []dd{d(3, 2, 5, 0, 0), d(3, 3, 0, 1, 0)}, nonZero(get(other, audit.Filter{})))
	a2 := get(b.tenant, audit.Filter{From: day(3, 0, 0, 0, 0), To: day(4, 0, 0, 0, 0)})
	require.Equal(t, []dd{d(3, 3, 0, 0, 0)}, a2)

	// Bad filters and ranges are ErrInvalid.
	for _, bad := range []audit.Filter{
		{Decision: "maybe"},
		{From: day(4, 0, 0, 0, 0), To: day(4, 0, 0, 0, 0)},
		{From: day(4, 12, 0, 0, 0), To: day(4, 11, 0, 0, 0)},
		{From: day(4, 0, 0, 0, 0).AddDate(-1, 0, -2), To: day(4, 0, 0, 0, 0)}, // 367 days
	} {
		_, err := b.store.DecisionsPerDayAt(b.ctx, b.tenant, bad, now)
		require.ErrorIs(t, err, tenants.ErrInvalid, "%+v", bad)
	}
	// 366 days is the most.
	got = get(b.tenant, audit.Filter{From: day(4, 0, 0, 0, 0).AddDate(-1, 0, 0), To: day(5, 0, 0, 0, 0)})
	require.Len(t, got, audit.MaxDecisionDays)

	// Without an injected clock the default range ends today.
	before := time.Now().UTC()
	got, err := b.store.DecisionsPerDay(b.ctx, b.tenant, audit.Filter{})
	require.NoError(t, err)
	require.Len(t, got, audit.DefaultDecisionDays)
	if after := time.Now().UTC(); after.YearDay() == before.YearDay() {
		require.Equal(t, before.Truncate(24*time.Hour), got[len(got)-1].Day)
	}
	_, err = b.store.DecisionsPerDay(b.ctx, uuid.Nil, audit.Filter{})
	require.Error(t, err)
}
