package jobs_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/jobs"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants/approvals"
	"github.com/locksmithhq/locksmith/tenants/audit"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

type testBundle struct {
	ctx    context.Context
	client *river.Client[pgx.Tx]
	sealer *seal.Sealer
	egress *egress.Client
	tenant uuid.UUID
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	db := sqltest.DB(t)
	key, err := seal.GenerateMasterKey("test")
	require.NoError(t, err)
	mk, err := seal.ParseMasterKeys(key)
	require.NoError(t, err)
	sealer, err := seal.New(db, mk)
	require.NoError(t, err)
	eg, err := egress.New(egress.Options{AllowPrivate: true})
	require.NoError(t, err)
	client, err := jobs.NewClient(jobs.Config{DB: db, Sealer: sealer, Logger: discard, Work: true, Egress: eg, BaseURL: "https://locksmith.example.com"})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, client.Start(ctx))
	t.Cleanup(func() {
		stop, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		require.NoError(t, client.Stop(stop))
	})
	var tenant uuid.UUID
	require.NoError(t, db.Pool().QueryRow(ctx, "INSERT INTO tenants (slug, name) VALUES ($1, 'Jobs test') RETURNING id",
		"j-"+uuid.NewString()[:8]).Scan(&tenant))
	return &testBundle{ctx: ctx, client: client, sealer: sealer, egress: eg, tenant: tenant}
}

// TestAuditJobs: the seal job seals what the writer committed, and the
// verify job runs over it.
func TestAuditJobs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	db := sqltest.DB(t)
	w, err := audit.NewWriter(audit.WriterConfig{DB: db, Logger: discard})
	require.NoError(t, err)
	defer w.Close(b.ctx)
	for range 5 {
		_, err := w.Intent(b.ctx, b.tenant, audit.Call{Tool: "tasks.list", Decision: audit.DecisionAllow})
		require.NoError(t, err)
	}
	store, err := audit.New(audit.Config{DB: db, Logger: discard})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, _ = b.client.Insert(b.ctx, jobs.AuditSealArgs{}, nil)
		rep, err := store.Verify(b.ctx, b.tenant)
		return err == nil && rep.OK() && rep.Sealed == 5
	}, 10*time.Second, 50*time.Millisecond)

	for _, args := range []river.JobArgs{jobs.AuditVerifyArgs{}, jobs.AuditPurgeArgs{}, jobs.ApprovalsMaintainArgs{}} {
		require.Eventually(t, func() bool {
			res, err := b.client.Insert(b.ctx, args, nil)
			if err != nil || res.UniqueSkippedAsDuplicate {
				return false
			}
			job, err := b.client.JobGet(b.ctx, res.Job.ID)
			for err == nil && job.FinalizedAt == nil {
				time.Sleep(20 * time.Millisecond)
				job, err = b.client.JobGet(b.ctx, res.Job.ID)
			}
			return err == nil && job.State == "completed"
		}, 10*time.Second, 50*time.Millisecond, args.Kind())
	}
}

// TestApprovalWebhookJob: a new approval request enqueues the webhook job in
// its transaction; the worker delivers it signed; a permanent refusal
// cancels the job instead of retrying it.
func TestApprovalWebhookJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	secret := "whsec-0123456789abcdef"
	var calls atomic.Int32
	var status atomic.Int32
	status.Store(http.StatusOK)
	received := make(chan []byte, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		calls.Add(1)
		if approvals.VerifySignature([]byte(secret), r.Header.Get(approvals.SignatureHeader), body, time.Now(), time.Minute) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(int(status.Load()))
		received <- body
	}))
	defer srv.Close()

	svc, err := approvals.New(approvals.Config{DB: sqltest.DB(t), Sealer: b.sealer, Egress: b.egress, Jobs: b.client,
		Logger: discard, BaseURL: "https://locksmith.example.com"})
	require.NoError(t, err)
	_, err = svc.SaveSettings(b.ctx, b.tenant, approvals.SettingsInput{ApproverGroup: "approvers", WebhookURL: srv.URL, WebhookSecret: &secret})
	require.NoError(t, err)
	req, created, err := svc.Request(b.ctx, b.tenant, approvals.NewRequest{
		Tool: "tasks.delete", Args: json.RawMessage(`{"id": 1}`),
		Requester: approvals.Person{Issuer: "https://idp.acme.example", Subject: "u-1"}, Agent: "claude-desktop",
	})
	require.NoError(t, err)
	require.True(t, created)
	select {
	case body := <-received:
		var p approvals.WebhookPayload
		require.NoError(t, json.Unmarshal(body, &p))
		require.Equal(t, req.ID, p.ID)
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook was not delivered")
	}

	// A 410 is permanent: the job is cancelled after one attempt.
	status.Store(http.StatusGone)
	before := calls.Load()
	res, err := b.client.Insert(b.ctx, approvals.WebhookArgs{TenantID: b.tenant, RequestID: req.ID}, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		job, err := b.client.JobGet(b.ctx, res.Job.ID)
		return err == nil && job.State == "cancelled"
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, before+1, calls.Load())
}
