package approvals_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/approvals"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

func TestMain(m *testing.M) { os.Exit(sqltest.Main(m)) }

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type testBundle struct {
	ctx      context.Context
	svc      *approvals.Service
	notifier *approvals.Notifier
	clock    *clock
	tenant   uuid.UUID
	slug     string
}

func newTenant(t *testing.T) (uuid.UUID, string) {
	t.Helper()
	var id uuid.UUID
	slug := "ap-" + uuid.NewString()[:8]
	require.NoError(t, sqltest.DB(t).Pool().QueryRow(context.Background(),
		"INSERT INTO tenants (slug, name) VALUES ($1, 'Approvals test') RETURNING id", slug).Scan(&id))
	return id, slug
}

func newSealer(t *testing.T) *seal.Sealer {
	t.Helper()
	key, err := seal.GenerateMasterKey("test")
	require.NoError(t, err)
	mk, err := seal.ParseMasterKeys(key)
	require.NoError(t, err)
	s, err := seal.New(sqltest.DB(t), mk)
	require.NoError(t, err)
	return s
}

func setupWith(t *testing.T, allowPrivate bool) *testBundle {
	t.Helper()
	return setupEgress(t, egress.Options{AllowPrivate: allowPrivate})
}

// setupEgress is setup with an egress client built from opts, shared by the
// Service (which checks webhook URLs) and the Notifier (which posts).
func setupEgress(t *testing.T, opts egress.Options) *testBundle {
	t.Helper()
	db := sqltest.DB(t)
	sealer := newSealer(t)
	eg, err := egress.New(opts)
	require.NoError(t, err)
	rc, err := river.NewClient(riverpgxv5.New(db.Pool()), &river.Config{Logger: discard})
	require.NoError(t, err)
	clk := &clock{t: time.Now().UTC().Truncate(time.Microsecond)}
	svc, err := approvals.New(approvals.Config{DB: db, Sealer: sealer, Egress: eg, Jobs: rc, Logger: discard,
		BaseURL: "https://locksmith.example.com", Now: clk.Now})
	require.NoError(t, err)
	n, err := approvals.NewNotifier(approvals.NotifierConfig{DB: db, Sealer: sealer, Egress: eg, Logger: discard,
		BaseURL: "https://locksmith.example.com", Now: clk.Now})
	require.NoError(t, err)
	id, slug := newTenant(t)
	return &testBundle{ctx: context.Background(), svc: svc, notifier: n, clock: clk, tenant: id, slug: slug}
}

func setup(t *testing.T) *testBundle { return setupWith(t, true) }

var (
	requester = approvals.Person{Issuer: "https://idp.acme.example", Subject: "u-req", Email: "engineer@acme.example"}
	alice     = approvals.Approver{Person: approvals.Person{Issuer: requester.Issuer, Subject: "u-a1", Email: "lead@acme.example"}, Groups: []string{"approvers", "staff"}}
	bob       = approvals.Approver{Person: approvals.Person{Issuer: requester.Issuer, Subject: "u-a2", Email: "ops@acme.example"}, Groups: []string{"approvers"}}
	outsider  = approvals.Approver{Person: approvals.Person{Issuer: requester.Issuer, Subject: "u-x", Email: "intern@acme.example"}, Groups: []string{"staff"}}
)

func deleteTask(args string) approvals.NewRequest {
	return approvals.NewRequest{
		Tool: "tasks.delete", Upstream: "acme-tasks", Risk: tenants.RiskDestructive, Args: json.RawMessage(args),
		Requester: requester, Agent: "claude-desktop", Rule: "destructive tool", Reason: "needs 2 approvals", RequestID: "req-1",
	}
}

func hashOf(t *testing.T, args string) approvals.Hash {
	t.Helper()
	h, _, err := approvals.Bind("tasks.delete", json.RawMessage(args), requester.Issuer, requester.Subject, "claude-desktop")
	require.NoError(t, err)
	return h
}

func requireKind(t *testing.T, err error, kind error) {
	t.Helper()
	var pe *tenants.Error
	require.ErrorAs(t, err, &pe)
	require.ErrorIs(t, err, kind)
	require.NotEmpty(t, pe.PublicMessage())
}

// approved creates a request for args and has alice and bob approve it.
func (b *testBundle) approved(t *testing.T, args string) approvals.Request {
	t.Helper()
	req, _, err := b.svc.Request(b.ctx, b.tenant, deleteTask(args))
	require.NoError(t, err)
	_, err = b.svc.Vote(b.ctx, b.tenant, req.ID, alice, true, "")
	require.NoError(t, err)
	req, err = b.svc.Vote(b.ctx, b.tenant, req.ID, bob, true, "looks right")
	require.NoError(t, err)
	require.Equal(t, approvals.StatusApproved, req.Status)
	return req
}

func TestTwoPersonRule(t *testing.T) {
	t.Parallel()
	b := setup(t)
	args := `{"id": 42, "project": "apollo"}`

	req, created, err := b.svc.Request(b.ctx, b.tenant, deleteTask(args))
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, approvals.StatusPending, req.Status)
	require.Equal(t, 2, req.ApprovalsRequired)
	require.JSONEq(t, args, string(req.Args))
	require.Equal(t, hashOf(t, args), req.Hash)
	require.Equal(t, b.clock.Now().Add(15*time.Minute), req.ExpiresAt.UTC())
	require.Equal(t, "https://locksmith.example.com/t/"+b.slug+"/approvals/"+req.ID.String(), b.svc.URL(b.slug, req.ID))
	n, err := b.svc.PendingCount(b.ctx, b.tenant)
	require.NoError(t, err)
	require.Equal(t, 1, n)

	// The requester can never approve their own request, even in the group.
	self := approvals.Approver{Person: requester, Groups: []string{"approvers"}}
	_, err = b.svc.Vote(b.ctx, b.tenant, req.ID, self, true, "")
	requireKind(t, err, tenants.ErrForbidden)
	// Outside the approver group: refused.
	_, err = b.svc.Vote(b.ctx, b.tenant, req.ID, outsider, true, "")
	requireKind(t, err, tenants.ErrForbidden)

	// One approval is not enough.
	req, err = b.svc.Vote(b.ctx, b.tenant, req.ID, alice, true, "")
	require.NoError(t, err)
	require.Equal(t, approvals.StatusPending, req.Status)
	require.Equal(t, 1, req.Approvals)
	_, ok, err := b.svc.Consume(b.ctx, b.tenant, hashOf(t, args))
	require.NoError(t, err)
	require.False(t, ok, "one approval of two consumed")
	// The same approver twice doesn't count twice.
	_, err = b.svc.Vote(b.ctx, b.tenant, req.ID, alice, true, "")
	requireKind(t, err, tenants.ErrConflict)

	// The second distinct approver approves.
	req, err = b.svc.Vote(b.ctx, b.tenant, req.ID, bob, true, "checked with the owner")
	require.NoError(t, err)
	require.Equal(t, approvals.StatusApproved, req.Status)
	require.Len(t, req.Votes, 2)
	require.Equal(t, "lead@acme.example", req.Votes[0].Approver.Email)
	require.Equal(t, "checked with the owner", req.Votes[1].Reason)
	n, err = b.svc.PendingCount(b.ctx, b.tenant)
	require.NoError(t, err)
	require.Zero(t, n)
	// Voting after approval: conflict.
	_, err = b.svc.Vote(b.ctx, b.tenant, req.ID, approvals.Approver{Person: approvals.Person{Issuer: "x", Subject: "u-3"}, Groups: []string{"approvers"}}, true, "")
	requireKind(t, err, tenants.ErrConflict)

	// The retry with identical arguments (any key order or spacing) runs once.
	used, ok, err := b.svc.Consume(b.ctx, b.tenant, hashOf(t, `{"project":"apollo","id":42}`))
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, req.ID, used.ID)
	require.Equal(t, approvals.StatusUsed, used.Status)
	_, ok, err = b.svc.Consume(b.ctx, b.tenant, hashOf(t, args))
	require.NoError(t, err)
	require.False(t, ok, "an approval was used twice")

	// Asking again after use starts a new request.
	again, created, err := b.svc.Request(b.ctx, b.tenant, deleteTask(args))
	require.NoError(t, err)
	require.True(t, created)
	require.NotEqual(t, req.ID, again.ID)
}

func TestRequestReturnsActive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first, created, err := b.svc.Request(b.ctx, b.tenant, deleteTask(`{"id": 1}`))
	require.NoError(t, err)
	require.True(t, created)
	second, created, err := b.svc.Request(b.ctx, b.tenant, deleteTask(` { "id" : 1 } `))
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, first.ID, second.ID)

	// Another agent, requester or argument is another request.
	other := deleteTask(`{"id": 1}`)
	other.Agent = "cursor"
	third, created, err := b.svc.Request(b.ctx, b.tenant, other)
	require.NoError(t, err)
	require.True(t, created)
	require.NotEqual(t, first.Hash, third.Hash)

	// Concurrent first requests create one.
	var wg sync.WaitGroup
	ids := make([]uuid.UUID, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _, err := b.svc.Request(b.ctx, b.tenant, deleteTask(`{"id": 2}`))
			if err == nil {
				ids[i] = r.ID
			} else {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		require.Equal(t, ids[0], id)
	}

	_, _, err = b.svc.Request(b.ctx, b.tenant, deleteTask(`{"id": `))
	requireKind(t, err, tenants.ErrInvalid)
	bad := deleteTask(`{}`)
	bad.Requester = approvals.Person{}
	_, _, err = b.svc.Request(b.ctx, b.tenant, bad)
	requireKind(t, err, tenants.ErrInvalid)
}

// TestConsumeConcurrently: two (here 16) concurrent retries of an approved
// call: exactly one gets to run.
func TestConsumeConcurrently(t *testing.T) {
	t.Parallel()
	b := setup(t)
	args := `{"id": 7}`
	b.approved(t, args)
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, ok, err := b.svc.Consume(b.ctx, b.tenant, hashOf(t, args))
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	require.Equal(t, int32(1), wins.Load())
}

func TestChangedArgumentsDontMatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.approved(t, `{"id": 7, "force": false}`)
	for _, other := range []string{
		`{"id": 8, "force": false}`,
		`{"id": 7, "force": true}`,
		`{"id": 7}`,
		`{"id": 7, "force": false, "cascade": true}`,
		`{"id": 7.0, "force": false}`,
		`{"id": "7", "force": false}`,
	} {
		_, ok, err := b.svc.Consume(b.ctx, b.tenant, hashOf(t, other))
		require.NoError(t, err)
		require.False(t, ok, "approval consumed by %s", other)
	}
	// Same arguments, another requester or agent: no match either.
	h, _, err := approvals.Bind("tasks.delete", json.RawMessage(`{"id": 7, "force": false}`), requester.Issuer, "u-other", "claude-desktop")
	require.NoError(t, err)
	_, ok, err := b.svc.Consume(b.ctx, b.tenant, h)
	require.NoError(t, err)
	require.False(t, ok)
	h, _, err = approvals.Bind("tasks.delete", json.RawMessage(`{"id": 7, "force": false}`), requester.Issuer, requester.Subject, "cursor")
	require.NoError(t, err)
	_, ok, err = b.svc.Consume(b.ctx, b.tenant, h)
	require.NoError(t, err)
	require.False(t, ok)
	_, ok, err = b.svc.Consume(b.ctx, b.tenant, hashOf(t, `{"force": false, "id": 7}`))
	require.NoError(t, err)
	require.True(t, ok)
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	args := `{"id": 9}`
	req := b.approved(t, args)
	b.clock.Add(15*time.Minute + time.Second)
	_, ok, err := b.svc.Consume(b.ctx, b.tenant, hashOf(t, args))
	require.NoError(t, err)
	require.False(t, ok, "an expired approval was used")
	got, err := b.svc.Get(b.ctx, b.tenant, req.ID)
	require.NoError(t, err)
	require.Equal(t, approvals.StatusExpired, got.Status)

	pending, _, err := b.svc.Request(b.ctx, b.tenant, deleteTask(`{"id": 10}`))
	require.NoError(t, err)
	b.clock.Add(16 * time.Minute)
	_, err = b.svc.Vote(b.ctx, b.tenant, pending.ID, alice, true, "")
	requireKind(t, err, tenants.ErrConflict)
	n, err := b.svc.ExpireStale(b.ctx, b.tenant)
	require.NoError(t, err)
	require.Equal(t, int64(2), n)
	list, _, err := b.svc.List(b.ctx, b.tenant, approvals.ListFilter{Status: approvals.StatusExpired})
	require.NoError(t, err)
	require.Len(t, list, 2)
	n, err = b.svc.PurgeFinished(b.ctx, b.tenant, time.Minute)
	require.NoError(t, err)
	require.Equal(t, int64(2), n)
	_, err = b.svc.Get(b.ctx, b.tenant, req.ID)
	require.ErrorIs(t, err, tenants.ErrNotFound)

	// A shorter tenant TTL applies to new requests.
	_, err = b.svc.SaveSettings(b.ctx, b.tenant, approvals.SettingsInput{ApproverGroup: "approvers", TTL: 2 * time.Minute})
	require.NoError(t, err)
	short, _, err := b.svc.Request(b.ctx, b.tenant, deleteTask(`{"id": 11}`))
	require.NoError(t, err)
	require.Equal(t, b.clock.Now().Add(2*time.Minute), short.ExpiresAt.UTC())
}

func TestRejection(t *testing.T) {
	t.Parallel()
	b := setup(t)
	args := `{"id": 3}`
	req, _, err := b.svc.Request(b.ctx, b.tenant, deleteTask(args))
	require.NoError(t, err)
	_, err = b.svc.Vote(b.ctx, b.tenant, req.ID, alice, true, "")
	require.NoError(t, err)
	_, err = b.svc.Vote(b.ctx, b.tenant, req.ID, bob, false, "  ")
	requireKind(t, err, tenants.ErrInvalid)
	req, err = b.svc.Vote(b.ctx, b.tenant, req.ID, bob, false, "wrong project")
	require.NoError(t, err)
	require.Equal(t, approvals.StatusRejected, req.Status)
	require.Equal(t, "wrong project", req.RejectionReason)
	_, err = b.svc.Vote(b.ctx, b.tenant, req.ID, approvals.Approver{Person: approvals.Person{Issuer: "i", Subject: "u-9"}, Groups: []string{"approvers"}}, true, "")
	requireKind(t, err, tenants.ErrConflict)
	_, ok, err := b.svc.Consume(b.ctx, b.tenant, hashOf(t, args))
	require.NoError(t, err)
	require.False(t, ok)
}

func TestApproverGroupSetting(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.svc.SaveSettings(b.ctx, b.tenant, approvals.SettingsInput{ApproverGroup: "change-board"})
	require.NoError(t, err)
	req, _, err := b.svc.Request(b.ctx, b.tenant, deleteTask(`{}`))
	require.NoError(t, err)
	_, err = b.svc.Vote(b.ctx, b.tenant, req.ID, alice, true, "")
	requireKind(t, err, tenants.ErrForbidden)
	board := approvals.Approver{Person: alice.Person, Groups: []string{"change-board"}}
	_, err = b.svc.Vote(b.ctx, b.tenant, req.ID, board, true, "")
	require.NoError(t, err)
	_, err = b.svc.Vote(b.ctx, b.tenant, uuid.New(), board, true, "")
	require.ErrorIs(t, err, tenants.ErrNotFound)
}

func TestListPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := range 7 {
		b.clock.Add(time.Second)
		_, _, err := b.svc.Request(b.ctx, b.tenant, deleteTask(`{"id": `+string(rune('0'+i))+`}`))
		require.NoError(t, err)
	}
	var all []uuid.UUID
	f := approvals.ListFilter{Status: approvals.StatusPending, Limit: 3}
	for range 5 {
		page, next, err := b.svc.List(b.ctx, b.tenant, f)
		require.NoError(t, err)
		for _, r := range page {
			all = append(all, r.ID)
		}
		if next == "" {
			break
		}
		f.Cursor = next
	}
	require.Len(t, all, 7)
	_, _, err := b.svc.List(b.ctx, b.tenant, approvals.ListFilter{Cursor: "garbage"})
	requireKind(t, err, tenants.ErrInvalid)
	_, _, err = b.svc.List(b.ctx, b.tenant, approvals.ListFilter{Status: "maybe"})
	requireKind(t, err, tenants.ErrInvalid)
}

// TestTwoTenantIsolation: tenant B can't see, vote on or consume tenant A's
// requests, and A's settings don't apply to B.
func TestTwoTenantIsolation(t *testing.T) {
	t.Parallel()
	a := setup(t)
	args := `{"id": 1}`
	req := a.approved(t, args)
	_, err := a.svc.SaveSettings(a.ctx, a.tenant, approvals.SettingsInput{ApproverGroup: "a-board", TTL: time.Hour})
	require.NoError(t, err)
	pending, _, err := a.svc.Request(a.ctx, a.tenant, deleteTask(`{"id": 2}`))
	require.NoError(t, err)
	bID, _ := newTenant(t)
	ctx := a.ctx

	_, err = a.svc.Get(ctx, bID, req.ID)
	require.ErrorIs(t, err, tenants.ErrNotFound)
	_, err = a.svc.Vote(ctx, bID, pending.ID, bob, true, "")
	require.ErrorIs(t, err, tenants.ErrNotFound)
	_, ok, err := a.svc.Consume(ctx, bID, hashOf(t, args))
	require.NoError(t, err)
	require.False(t, ok)
	n, err := a.svc.PendingCount(ctx, bID)
	require.NoError(t, err)
	require.Zero(t, n)
	list, _, err := a.svc.List(ctx, bID, approvals.ListFilter{})
	require.NoError(t, err)
	require.Empty(t, list)
	set, err := a.svc.Settings(ctx, bID)
	require.NoError(t, err)
	require.Equal(t, approvals.DefaultSettings(), set)
	exp, err := a.svc.ExpireStale(ctx, bID)
	require.NoError(t, err)
	require.Zero(t, exp)
	purged, err := a.svc.PurgeFinished(ctx, bID, 0)
	require.NoError(t, err)
	require.Zero(t, purged)

	// B's identical request is its own.
	breq, created, err := a.svc.Request(ctx, bID, deleteTask(args))
	require.NoError(t, err)
	require.True(t, created)
	require.NotEqual(t, req.ID, breq.ID)
	// A's request is untouched.
	_, ok, err = a.svc.Consume(ctx, a.tenant, hashOf(t, args))
	require.NoError(t, err)
	require.True(t, ok)
	n, err = a.svc.PendingCount(ctx, a.tenant)
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

func TestSettingsValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	secret := "0123456789abcdef-secret"
	short := "short"
	empty := ""
	for _, tc := range []struct {
		in    approvals.SettingsInput
		field string
	}{
		{approvals.SettingsInput{ApproverGroup: " "}, "approver_group"},
		{approvals.SettingsInput{ApproverGroup: "a", TTL: time.Second}, "ttl"},
		{approvals.SettingsInput{ApproverGroup: "a", TTL: 48 * time.Hour}, "ttl"},
		{approvals.SettingsInput{ApproverGroup: "a", WebhookURL: "https://192.0.2.10/x"}, "webhook_secret"},
		{approvals.SettingsInput{ApproverGroup: "a", WebhookURL: "https://192.0.2.10/x", WebhookSecret: &short}, "webhook_secret"},
		{approvals.SettingsInput{ApproverGroup: "a", WebhookURL: "not a url", WebhookSecret: &secret}, "webhook_url"},
	} {
		_, err := b.svc.SaveSettings(b.ctx, b.tenant, tc.in)
		var pe *tenants.Error
		require.ErrorAs(t, err, &pe, "%+v", tc.in)
		require.Equal(t, tc.field, pe.Field)
	}
	// Without private targets allowed, a loopback webhook is refused.
	strict := setupWith(t, false)
	_, err := strict.svc.SaveSettings(strict.ctx, strict.tenant, approvals.SettingsInput{ApproverGroup: "a", WebhookURL: "https://127.0.0.1/hook", WebhookSecret: &secret})
	var pe *tenants.Error
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "webhook_url", pe.Field)

	set, err := b.svc.SaveSettings(b.ctx, b.tenant, approvals.SettingsInput{ApproverGroup: "a", WebhookURL: "https://192.0.2.10/x", WebhookSecret: &secret})
	require.NoError(t, err)
	require.True(t, set.HasWebhookSecret)
	// nil keeps the secret; "" removes it (and then the URL must go too).
	set, err = b.svc.SaveSettings(b.ctx, b.tenant, approvals.SettingsInput{ApproverGroup: "a", WebhookURL: "https://192.0.2.10/y"})
	require.NoError(t, err)
	require.True(t, set.HasWebhookSecret)
	_, err = b.svc.SaveSettings(b.ctx, b.tenant, approvals.SettingsInput{ApproverGroup: "a", WebhookURL: "https://192.0.2.10/y", WebhookSecret: &empty})
	require.ErrorIs(t, err, tenants.ErrInvalid)
	set, err = b.svc.SaveSettings(b.ctx, b.tenant, approvals.SettingsInput{ApproverGroup: "a", WebhookSecret: &empty})
	require.NoError(t, err)
	require.False(t, set.HasWebhookSecret)
}

// TestWebhook: creating a request enqueues the delivery job in the same
// transaction; delivery posts a signed payload; failures are classified.
func TestWebhook(t *testing.T) {
	t.Parallel()
	b := setup(t)
	secret := "whsec-0123456789abcdef"
	var (
		mu     sync.Mutex
		bodies [][]byte
		sigs   []string
		status = http.StatusNoContent
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		bodies = append(bodies, body)
		sigs = append(sigs, r.Header.Get(approvals.SignatureHeader))
		require.Equal(t, approvals.EventRequested, r.Header.Get(approvals.EventHeader))
		w.WriteHeader(status)
	}))
	defer srv.Close()

	// No webhook configured: no job.
	req0, _, err := b.svc.Request(b.ctx, b.tenant, deleteTask(`{"id": 0}`))
	require.NoError(t, err)
	require.Zero(t, countJobs(t, b.tenant, req0.ID))

	_, err = b.svc.SaveSettings(b.ctx, b.tenant, approvals.SettingsInput{ApproverGroup: "approvers", WebhookURL: srv.URL + "/hook", WebhookSecret: &secret})
	require.NoError(t, err)
	req, _, err := b.svc.Request(b.ctx, b.tenant, deleteTask(`{"id": 1, "note": "<b>&</b>"}`))
	require.NoError(t, err)
	require.Equal(t, 1, countJobs(t, b.tenant, req.ID))
	// Asking again for the same call doesn't notify again.
	_, _, err = b.svc.Request(b.ctx, b.tenant, deleteTask(`{"id": 1, "note": "<b>&</b>"}`))
	require.NoError(t, err)
	require.Equal(t, 1, countJobs(t, b.tenant, req.ID))

	require.NoError(t, b.notifier.Deliver(b.ctx, b.tenant, req.ID))
	mu.Lock()
	require.Len(t, bodies, 1)
	body, sig := bodies[0], sigs[0]
	mu.Unlock()
	require.NoError(t, approvals.VerifySignature([]byte(secret), sig, body, b.clock.Now(), 5*time.Minute))
	require.Error(t, approvals.VerifySignature([]byte(secret), sig, append(body, ' '), b.clock.Now(), 5*time.Minute), "tampered body")
	require.Error(t, approvals.VerifySignature([]byte("another-secret-value"), sig, body, b.clock.Now(), 5*time.Minute))
	require.Error(t, approvals.VerifySignature([]byte(secret), sig, body, b.clock.Now().Add(time.Hour), 5*time.Minute), "replayed later")
	var p approvals.WebhookPayload
	require.NoError(t, json.Unmarshal(body, &p))
	require.Equal(t, approvals.EventRequested, p.Type)
	require.Equal(t, req.ID, p.ID)
	require.Equal(t, b.slug, p.Tenant)
	require.Equal(t, "tasks.delete", p.Tool)
	require.Equal(t, requester, p.Requester)
	require.JSONEq(t, `{"id": 1, "note": "<b>&</b>"}`, string(p.Args))
	require.Equal(t, b.svc.URL(b.slug, req.ID), p.ApprovalURL)

	mu.Lock()
	status = http.StatusServiceUnavailable
	mu.Unlock()
	err = b.notifier.Deliver(b.ctx, b.tenant, req.ID)
	require.Error(t, err)
	require.False(t, errors.Is(err, approvals.ErrPermanent), "a 503 is retried")
	mu.Lock()
	status = http.StatusGone
	mu.Unlock()
	require.ErrorIs(t, b.notifier.Deliver(b.ctx, b.tenant, req.ID), approvals.ErrPermanent)

	// A request that is gone is nothing to deliver.
	require.NoError(t, b.notifier.Deliver(b.ctx, b.tenant, uuid.New()))
}

func countJobs(t *testing.T, tenant, request uuid.UUID) int {
	t.Helper()
	var n int
	require.NoError(t, sqltest.DB(t).InTx(context.Background(), func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT count(*) FROM river_job WHERE kind = 'approval_webhook'
			AND args->>'tenant_id' = $1 AND args->>'request_id' = $2`, tenant.String(), request.String()).Scan(&n)
	}))
	return n
}

func TestCanonicalJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{`{"b": 1, "a": [3, 2, {"z": null, "y": true}]}`, `{"a":[3,2,{"y":true,"z":null}],"b":1}`},
		{` { } `, `{}`},
		{``, `{}`},
		{`{"n": 1.50, "big": 12345678901234567890123}`, `{"big":12345678901234567890123,"n":1.50}`},
		{`{"html": "<a href='x'>&</a>", "uni": "é\u00e9"}`, `{"html":"<a href='x'>&</a>","uni":"éé"}`},
	} {
		got, err := approvals.CanonicalJSON(json.RawMessage(tc.in))
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, string(got), tc.in)
	}
	got, err := approvals.CanonicalJSON(map[string]any{"b": 2, "a": "x"})
	require.NoError(t, err)
	require.Equal(t, `{"a":"x","b":2}`, string(got))
	for _, bad := range []string{`{"a": }`, `{"a": 1} {"b": 2}`, `{"a": 1`} {
		_, err := approvals.CanonicalJSON(json.RawMessage(bad))
		require.Error(t, err, bad)
	}
	// Large integers that differ in the last digit bind differently.
	h1, _, err := approvals.Bind("t", json.RawMessage(`{"id": 12345678901234567}`), "i", "s", "a")
	require.NoError(t, err)
	h2, _, err := approvals.Bind("t", json.RawMessage(`{"id": 12345678901234568}`), "i", "s", "a")
	require.NoError(t, err)
	require.NotEqual(t, h1, h2)
	// Field boundaries are unambiguous.
	h3, _, err := approvals.Bind("t", nil, "ab", "c", "a")
	require.NoError(t, err)
	h4, _, err := approvals.Bind("t", nil, "a", "bc", "a")
	require.NoError(t, err)
	require.NotEqual(t, h3, h4)
	parsed, err := approvals.ParseHash(h1.String())
	require.NoError(t, err)
	require.Equal(t, h1, parsed)
}
