package jobs_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/jobs"
	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

const grantIssuer = "https://idp.example.test"

// grantBundle is one tenant with an upstream on its own Acme Tasks, the
// grant services, and the River client NewClient builds for them.
type grantBundle struct {
	db       *lsql.DB
	sealer   *seal.Sealer
	egress   *egress.Client
	acme     *tasks.Server
	acmeURL  string
	vault    *consent.Vault
	broker   *consent.Broker
	client   *river.Client[pgx.Tx]
	tenantID uuid.UUID
	upstream tenants.Upstream
	logger   *slog.Logger
}

func setupGrants(t *testing.T) *grantBundle {
	t.Helper()
	return setupGrantsWith(t, grantSetup{db: sqltest.DB(t)})
}

// grantSetup varies setupGrantsWith: the database (the package's, or one of
// the test's own), Acme Tasks' configuration (zero: its defaults) and an
// optional wrapper around its handler.
type grantSetup struct {
	db   *lsql.DB
	acme tasks.Config
	wrap func(http.Handler) http.Handler
}

func setupGrantsWith(t *testing.T, gs grantSetup) *grantBundle {
	t.Helper()
	ctx := context.Background()
	db := gs.db
	logger := slog.New(slog.DiscardHandler)
	key, err := seal.GenerateMasterKey("test")
	require.NoError(t, err)
	mk, err := seal.ParseMasterKeys(key)
	require.NoError(t, err)
	sealer, err := seal.New(db, mk)
	require.NoError(t, err)
	eg, err := egress.New(egress.Options{AllowPrivate: true, Timeout: 5 * time.Second})
	require.NoError(t, err)
	svc, err := tenants.New(tenants.Config{DB: db, Sealer: sealer, Egress: eg, Logger: logger, BaseURL: "https://locksmith.example.test"})
	require.NoError(t, err)

	acme, err := tasks.New(gs.acme)
	require.NoError(t, err)
	h := acme.Handler()
	if gs.wrap != nil {
		h = gs.wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() { _ = acme.Close(context.Background()); srv.Close() })

	tb := &grantBundle{db: db, sealer: sealer, egress: eg, acme: acme, acmeURL: srv.URL, tenantID: uuid.New(), logger: logger}
	slug := "j-" + strings.ReplaceAll(tb.tenantID.String(), "-", "")[:12]
	require.NoError(t, db.InTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, 'Jobs test')", tb.tenantID, slug)
		return err
	}))
	upID := uuid.New()
	secret, err := sealer.Seal(ctx, tb.tenantID, upID, "client_secret", []byte(tasks.DefaultClientSecret))
	require.NoError(t, err)
	require.NoError(t, db.InTenant(ctx, tb.tenantID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO upstreams (tenant_id, id, slug, name, base_url, token_url, revocation_url, client_id, client_secret_sealed)
			VALUES ($1, $2, 'acme-tasks', 'Acme Tasks', $3, $4, $5, $6, $7)`,
			tb.tenantID, upID, srv.URL, srv.URL+"/token", srv.URL+"/revoke", tasks.DefaultClientID, secret)
		return err
	}))
	tb.upstream, err = svc.Upstream(ctx, tb.tenantID, upID)
	require.NoError(t, err)

	inserter, err := jobs.NewInserter(db, logger)
	require.NoError(t, err)
	tb.vault, err = consent.NewVault(consent.VaultConfig{DB: db, Sealer: sealer, Inserter: inserter, Logger: logger})
	require.NoError(t, err)
	tb.broker, err = consent.NewBroker(consent.BrokerConfig{
		Vault: tb.vault, Upstreams: svc, Egress: eg, Logger: logger,
		ConsentURL: func(_ context.Context, _ uuid.UUID, up tenants.Upstream, scopes []string) string {
			return consent.ConsentURL("https://locksmith.example.test", slug, up.Slug, scopes)
		},
	})
	require.NoError(t, err)
	// The client the composition root builds: it must know every grant job kind.
	tb.client, err = jobs.NewClient(jobs.Config{DB: db, Sealer: sealer, Logger: logger, Egress: eg, Broker: tb.broker})
	require.NoError(t, err)
	return tb
}

// save creates the user's grant from a fresh Acme authorization; expiresIn
// overrides the access token's expiry as the vault sees it.
func (tb *grantBundle) save(t *testing.T, user string, expiresIn time.Duration) consent.Grant {
	t.Helper()
	resp, err := tb.acme.IssueTokens(user, tasks.DefaultClientID, []string{tasks.ScopeRead, tasks.ScopeWrite})
	require.NoError(t, err)
	g, err := tb.vault.SaveGrant(context.Background(), tb.tenantID, tb.upstream.ID,
		consent.User{Issuer: grantIssuer, Subject: user},
		consent.Tokens{AccessToken: resp.AccessToken, RefreshToken: resp.RefreshToken, ExpiresAt: time.Now().Add(expiresIn), Scopes: strings.Fields(resp.Scope)})
	require.NoError(t, err)
	return g
}

// job returns the River job of kind whose args name id.
func (tb *grantBundle) job(t *testing.T, kind string, id uuid.UUID, version int64) *rivertype.JobRow {
	t.Helper()
	ctx := context.Background()
	rows, err := tb.db.Pool().Query(ctx, "SELECT id, args FROM river_job WHERE kind = $1 AND args::text LIKE '%' || $2 || '%' ORDER BY id", kind, id.String())
	require.NoError(t, err)
	type row struct {
		id   int64
		args []byte
	}
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.id, &x.args)
	})
	require.NoError(t, err)
	for _, f := range found {
		var a consent.RefreshJobArgs
		require.NoError(t, json.Unmarshal(f.args, &a))
		if version < 0 || a.Version == version {
			j, err := tb.client.JobGet(ctx, f.id)
			require.NoError(t, err)
			return j
		}
	}
	t.Fatalf("no %s job for %s (version %d)", kind, id, version)
	return nil
}

// work runs job through worker as River would, in a transaction.
func work[T river.JobArgs](t *testing.T, tb *grantBundle, worker river.Worker[T], job *rivertype.JobRow) *rivertest.WorkResult {
	t.Helper()
	ctx := context.Background()
	tw := rivertest.NewWorker(t, riverpgxv5.New(nil), &river.Config{Logger: tb.logger}, worker)
	tx, err := tb.db.Pool().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	res, err := tw.WorkJob(ctx, t, tx, job)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	return res
}

// workArgs inserts a job with args (uniqueness off) and works it.
func workArgs[T river.JobArgs](t *testing.T, tb *grantBundle, worker river.Worker[T], args T) *rivertest.WorkResult {
	t.Helper()
	ctx := context.Background()
	tw := rivertest.NewWorker(t, riverpgxv5.New(nil), &river.Config{Logger: tb.logger}, worker)
	tx, err := tb.db.Pool().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	res, err := tw.Work(ctx, t, tx, args, nil)
	require.NoError(t, err)
	return res
}

func TestRefreshJobScheduledWithJitterAndIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tb := setupGrants(t)
	g := tb.save(t, "engineer", time.Hour)

	job := tb.job(t, consent.RefreshJobArgs{}.Kind(), g.ID, g.Version)
	require.Equal(t, rivertype.JobStateScheduled, job.State)
	exp := *g.AccessExpiresAt
	require.True(t, !job.ScheduledAt.After(exp.Add(-5*time.Minute)) && job.ScheduledAt.After(exp.Add(-7*time.Minute-30*time.Second)),
		"refresh scheduled 5 to 7.5 minutes before expiry, got %s before", exp.Sub(job.ScheduledAt))

	w := jobs.NewRefreshWorker(tb.broker, 0, tb.logger)
	res := work(t, tb, w, job)
	require.Equal(t, river.EventKindJobCompleted, res.EventKind)
	require.Equal(t, 1, tb.acme.Stats().RefreshGrants)
	got, err := tb.vault.Grant(ctx, tb.tenantID, g.ID)
	require.NoError(t, err)
	require.Equal(t, g.Version+1, got.Version)
	require.True(t, got.AccessExpiresAt.After(exp))
	next := tb.job(t, consent.RefreshJobArgs{}.Kind(), g.ID, got.Version)
	require.Equal(t, rivertype.JobStateScheduled, next.State, "the refresh scheduled the next one")

	// Run twice, or retried after partial success: nothing happens.
	res = workArgs(t, tb, w, consent.RefreshJobArgs{TenantID: tb.tenantID, GrantID: g.ID, UpstreamID: g.UpstreamID, Version: g.Version})
	require.Equal(t, river.EventKindJobCompleted, res.EventKind)
	require.Equal(t, 1, tb.acme.Stats().RefreshGrants)
	require.Zero(t, tb.acme.Stats().FamiliesRevoked)
}

func TestRefreshJobInvalidGrantEndsWithoutRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tb := setupGrants(t)
	g, err := tb.vault.SaveGrant(ctx, tb.tenantID, tb.upstream.ID, consent.User{Issuer: grantIssuer, Subject: "engineer"},
		consent.Tokens{AccessToken: "at-not-issued", RefreshToken: "rt-not-issued", ExpiresAt: time.Now().Add(time.Hour), Scopes: []string{tasks.ScopeRead}})
	require.NoError(t, err)

	w := jobs.NewRefreshWorker(tb.broker, 0, tb.logger)
	res := work(t, tb, w, tb.job(t, consent.RefreshJobArgs{}.Kind(), g.ID, g.Version))
	require.Equal(t, river.EventKindJobCompleted, res.EventKind, "a dead grant is not retried")
	got, err := tb.vault.Grant(ctx, tb.tenantID, g.ID)
	require.NoError(t, err)
	require.Equal(t, consent.StatusNeedsReauth, got.Status)
	require.Equal(t, 1, tb.acme.Stats().TokenEndpointCalls)
}

func TestRefreshJobSnoozesOnRetryAfter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tb := setupGrants(t)
	g := tb.save(t, "engineer", time.Hour)
	tb.acme.FailTokenEndpoint(http.StatusTooManyRequests, 1, 30*time.Second)

	w := jobs.NewRefreshWorker(tb.broker, 0, tb.logger)
	job := tb.job(t, consent.RefreshJobArgs{}.Kind(), g.ID, g.Version)
	res := work(t, tb, w, job)
	require.Equal(t, river.EventKindJobSnoozed, res.EventKind)
	require.True(t, res.Job.ScheduledAt.After(time.Now().Add(29*time.Second)), "Retry-After honoured")
	got, err := tb.vault.Grant(ctx, tb.tenantID, g.ID)
	require.NoError(t, err)
	require.Equal(t, consent.StatusActive, got.Status)

	// Other grants of the upstream wait too, without calling it.
	g2 := tb.save(t, "finance", time.Hour)
	res = work(t, tb, w, tb.job(t, consent.RefreshJobArgs{}.Kind(), g2.ID, g2.Version))
	require.Equal(t, river.EventKindJobSnoozed, res.EventKind)
	require.Equal(t, 1, tb.acme.Stats().TokenEndpointCalls)
}

func TestRefreshJobRateLimitedPerUpstream(t *testing.T) {
	t.Parallel()
	tb := setupGrants(t)
	g1 := tb.save(t, "engineer", time.Hour)
	g2 := tb.save(t, "finance", time.Hour)
	w := jobs.NewRefreshWorker(tb.broker, 1, tb.logger) // one per second, burst one

	res := work(t, tb, w, tb.job(t, consent.RefreshJobArgs{}.Kind(), g1.ID, g1.Version))
	require.Equal(t, river.EventKindJobCompleted, res.EventKind)
	res = work(t, tb, w, tb.job(t, consent.RefreshJobArgs{}.Kind(), g2.ID, g2.Version))
	require.Equal(t, river.EventKindJobSnoozed, res.EventKind)
	require.Equal(t, 1, tb.acme.Stats().RefreshGrants)
}

func TestRevokeJobRevokesAtTheUpstream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tb := setupGrants(t)
	g := tb.save(t, "engineer", time.Hour)
	require.NoError(t, tb.broker.Revoke(ctx, tb.tenantID, g.ID, consent.User{Issuer: grantIssuer, Subject: "engineer"}))

	var revID uuid.UUID
	require.NoError(t, tb.db.InTenant(ctx, tb.tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT id FROM grant_revocations WHERE grant_id = $1", g.ID).Scan(&revID)
	}))
	job := tb.job(t, consent.RevokeJobArgs{}.Kind(), revID, -1)
	require.Equal(t, consent.QueueGrants, job.Queue)

	// TestGrantQueueEndToEnd's client may take the enqueued job first; the
	// worker is idempotent, so run it (again) on a copy of the job.
	w := jobs.NewRevokeWorker(tb.broker)
	res := workArgs(t, tb, w, consent.RevokeJobArgs{TenantID: tb.tenantID, RevocationID: revID})
	require.Equal(t, river.EventKindJobCompleted, res.EventKind)
	res = workArgs(t, tb, w, consent.RevokeJobArgs{TenantID: tb.tenantID, RevocationID: revID})
	require.Equal(t, river.EventKindJobCompleted, res.EventKind)
	st := tb.acme.Stats()
	require.GreaterOrEqual(t, st.RevocationCalls, 1, "RFC 7009 revocation is idempotent; a racing second call is harmless")
	require.Equal(t, tasks.KindRefreshToken, st.Revocations[0].Kind)
	require.True(t, st.Revocations[0].Revoked)
	n, err := tb.vault.PendingRevocations(ctx, tb.tenantID)
	require.NoError(t, err)
	require.Zero(t, n)
}

// TestGrantQueueEndToEnd runs the grant workers on a started River client
// that fetches only the grants queue (so it can't take other tests' jobs):
// a revocation and an overdue refresh are done by the jobs alone.
func TestGrantQueueEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tb := setupGrants(t)
	workers := river.NewWorkers()
	river.AddWorker(workers, jobs.NewRefreshWorker(tb.broker, 0, tb.logger))
	river.AddWorker(workers, jobs.NewRevokeWorker(tb.broker))
	client, err := river.NewClient(riverpgxv5.New(tb.db.Pool()), &river.Config{
		Logger: tb.logger, Workers: workers, FetchCooldown: 5 * time.Millisecond,
		Queues: map[string]river.QueueConfig{consent.QueueGrants: {MaxWorkers: 4}},
	})
	require.NoError(t, err)
	require.NoError(t, client.Start(ctx))
	t.Cleanup(func() { _ = client.Stop(context.Background()) })

	revoked := tb.save(t, "engineer", time.Hour)
	require.NoError(t, tb.broker.Revoke(ctx, tb.tenantID, revoked.ID, consent.User{Issuer: grantIssuer, Subject: "engineer"}))
	overdue := tb.save(t, "finance", -time.Second) // its refresh job is due at once

	require.Eventually(t, func() bool { return tb.acme.Stats().RevocationCalls == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		g, err := tb.vault.Grant(ctx, tb.tenantID, overdue.ID)
		return err == nil && g.Version > overdue.Version && g.AccessExpiresAt.After(time.Now())
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, tb.acme.Stats().RefreshGrants)
	require.Equal(t, 1, tb.acme.Stats().FamiliesRevoked, "only the revoked grant's family is revoked")
}

// TestNewClientRegistersGrantWork builds the working client with a broker
// (not started: it would take other tests' jobs): it validates, with the
// grants queue and the purge schedule.
func TestNewClientRegistersGrantWork(t *testing.T) {
	t.Parallel()
	tb := setupGrants(t)
	_, err := jobs.NewClient(jobs.Config{DB: tb.db, Sealer: tb.sealer, Logger: tb.logger, Egress: tb.egress, Broker: tb.broker, Work: true})
	require.NoError(t, err)
}

func TestPurgeGrantsJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tb := setupGrants(t)
	g := tb.save(t, "engineer", time.Hour)
	require.NoError(t, tb.vault.Revoke(ctx, tb.tenantID, g.ID, consent.User{Issuer: grantIssuer, Subject: "engineer"}))
	require.NoError(t, tb.db.InTenant(ctx, tb.tenantID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE grants SET revoked_at = now() - interval '40 days' WHERE id = $1", g.ID)
		return err
	}))
	res, err := tb.client.Insert(ctx, jobs.PurgeGrantsArgs{}, nil)
	require.NoError(t, err)
	work(t, tb, jobs.NewPurgeGrantsWorker(tb.vault, tb.logger), res.Job)
	_, err = tb.vault.Grant(ctx, tb.tenantID, g.ID)
	require.ErrorIs(t, err, consent.ErrNotFound)
}
