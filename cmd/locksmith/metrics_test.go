package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/jobs"
	"github.com/locksmithhq/locksmith/tenants/audit"
)

// scrape returns /metrics.
func scrape(t *testing.T, st *stack) string {
	t.Helper()
	resp, err := http.Get(st.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(body)
}

// metric reads one unlabelled sample (or one with exactly the given label
// text, e.g. `{le="0.005"}`) from a scrape.
func metric(t *testing.T, body, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	require.NotNil(t, m, "%s is not in /metrics", name)
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

// TestMetricsCountRevocationsAfterUse: the broker's counters of revocations
// after use, and the count of upstream circuits opened, are on /metrics.
func TestMetricsCountRevocationsAfterUse(t *testing.T) {
	t.Parallel()
	body := scrape(t, startStack(t))
	require.Contains(t, body, `locksmith_token_revoke_after_use_total{result="failed"} 0`)
	require.Contains(t, body, `locksmith_token_revoke_after_use_total{result="revoked"} 0`)
	require.Contains(t, body, "locksmith_upstream_circuit_opens_total 0")
}

// TestMetricsAudit: the audit writer's events, batches, failures, queue
// and commit waits are on /metrics, and move with what it writes.
func TestMetricsAudit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := startStack(t)
	before := scrape(t, st)
	events0 := metric(t, before, "locksmith_audit_events_total")
	waits0 := metric(t, before, "locksmith_audit_commit_wait_seconds_count")

	svc := st.Main.Tenants
	owner, err := svc.SignUp(ctx, "metrics-"+uuid.NewString()[:8]+"@example.com", "a long enough password")
	require.NoError(t, err)
	tn, err := svc.CreateTenant(ctx, owner.ID, "metrics-"+uuid.NewString()[:8], "Metrics Corp")
	require.NoError(t, err)
	const n = 20
	for i := range n {
		_, err := st.Main.Audit.Intent(ctx, tn.ID, audit.Call{RequestID: "metrics-" + strconv.Itoa(i), Tool: "list_tasks",
			Decision: audit.DecisionDeny, Rule: "test"})
		require.NoError(t, err)
	}

	after := scrape(t, st)
	require.Equal(t, events0+n, metric(t, after, "locksmith_audit_events_total"), "the stack is this test's own: exactly our events")
	require.GreaterOrEqual(t, metric(t, after, "locksmith_audit_batches_total"), 1.0)
	require.Equal(t, 0.0, metric(t, after, "locksmith_audit_events_failed_total"))
	require.Equal(t, 0.0, metric(t, after, "locksmith_audit_queued_events"))
	require.Equal(t, waits0+n, metric(t, after, "locksmith_audit_commit_wait_seconds_count"))
	require.Greater(t, metric(t, after, "locksmith_audit_commit_wait_seconds_sum"), 0.0, "each event waited for its commit")
	require.Equal(t, waits0+n, metric(t, after, `locksmith_audit_commit_wait_seconds_bucket{le="+Inf"}`))
}

// TestMetricsJobs: the job queues' health is on /metrics: a job scheduled
// for later is counted under its queue and state.
func TestMetricsJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := startStack(t)
	ins, err := jobs.NewInserter(st.Main.DB, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	_, err = ins.Insert(ctx, consent.RevokeJobArgs{TenantID: uuid.New(), RevocationID: uuid.New()},
		&river.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
	require.NoError(t, err)

	body := scrape(t, st)
	require.Equal(t, 1.0, metric(t, body, "locksmith_jobs_health_up"))
	require.GreaterOrEqual(t, metric(t, body, `locksmith_jobs{queue="grants",state="scheduled"}`), 1.0)
	require.Contains(t, body, `locksmith_jobs_oldest_due_seconds{queue="grants"}`)
}
