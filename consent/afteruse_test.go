package consent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
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
	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/jobs"
	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
)

// revocationsOf returns, per token hash, how many times Acme's RFC 7009
// endpoint was asked to revoke it.
func revocationsOf(acme *acmeServer) map[string]int {
	out := map[string]int{}
	for _, r := range acme.Stats().Revocations {
		out[r.TokenHash]++
	}
	return out
}

// TestRevokeAfterUseNarrowed: with RevokeAfterUse on a narrowing upstream,
// every call gets its own narrowed token, which is never cached and is
// revoked exactly once at Acme after its use; the grant (its refresh
// token) keeps working.
func TestRevokeAfterUseNarrowed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{refreshNarrows: true, revokeAfterUse: true})
	g := e.save(t, acme, up, "engineer", tasks.ScopeRead, tasks.ScopeWrite, tasks.ScopeDelete)
	b := e.newBroker(t, brokerOpts{})
	t.Cleanup(b.Close)
	user := testUser("engineer")

	var used []consent.Token
	for range 2 {
		tok, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
		require.NoError(t, err)
		require.True(t, tok.Narrowed)
		require.True(t, tok.RevokeAfterUse, "a narrowed token of this upstream serves one call")
		require.Equal(t, []string{tasks.ScopeRead}, tok.Scopes)
		require.Zero(t, b.CacheLen(), "single-use tokens are never cached")
		require.Equal(t, http.StatusOK, acme.listTasks(t, tok.Value), "the call")
		b.AfterUse(ctx, e.tenantID, up.ID, tok)
		used = append(used, tok)
	}
	require.NotEqual(t, used[0].Value, used[1].Value, "each call minted its own token")

	b.Close() // waits for the revocations in flight
	require.Equal(t, consent.AfterUseStats{Revoked: 2}, b.AfterUseStats())
	st := acme.Stats()
	require.Equal(t, 2, st.RevocationCalls)
	require.Equal(t, map[string]int{tasks.TokenHash(used[0].Value): 1, tasks.TokenHash(used[1].Value): 1}, revocationsOf(acme),
		"each token revoked exactly once")
	for _, r := range st.Revocations {
		require.Equal(t, tasks.KindAccessToken, r.Kind)
		require.Equal(t, "access_token", r.TokenTypeHint)
		require.Equal(t, tasks.DefaultClientID, r.ClientID)
		require.True(t, r.Revoked)
	}
	for _, tok := range used {
		require.Equal(t, http.StatusUnauthorized, acme.listTasks(t, tok.Value), "a revoked token no longer works")
	}

	// The user stays connected: no family revoked, and the grant's refresh
	// token still refreshes.
	require.Zero(t, st.FamiliesRevoked)
	acme.ExpireAccessTokens()
	e.expire(t, g.ID)
	full, err := e.newBroker(t, brokerOpts{}).Token(ctx, e.tenantID, up.ID, user, nil)
	require.NoError(t, err)
	require.False(t, full.RevokeAfterUse, "the grant's own token is never single-use")
	require.Equal(t, http.StatusOK, acme.listTasks(t, full.Value))
	got, err := e.vault.Grant(ctx, e.tenantID, g.ID)
	require.NoError(t, err)
	require.Equal(t, consent.StatusActive, got.Status)
	require.Equal(t, 2, acme.Stats().RevocationCalls, "the refresh revoked nothing")
}

// TestRevokeAfterUseConcurrentCallersDontShare: concurrent calls for the
// same user and scopes don't share a flight's token (one caller's
// revocation would break the other's call); each mints its own.
func TestRevokeAfterUseConcurrentCallersDontShare(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	// A slow token endpoint keeps the callers' requests overlapping.
	acme := startAcmeWrapped(t, tasks.Config{}, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/token" {
				time.Sleep(50 * time.Millisecond)
			}
			next.ServeHTTP(w, r)
		})
	})
	up := e.addUpstream(t, acme, upstreamOpts{refreshNarrows: true, revokeAfterUse: true})
	e.save(t, acme, up, "engineer", tasks.ScopeRead, tasks.ScopeWrite)
	b := e.newBroker(t, brokerOpts{})
	t.Cleanup(b.Close)

	const callers = 4
	values := make([]string, callers)
	var wg sync.WaitGroup
	startGun := make(chan struct{})
	for i := range callers {
		wg.Go(func() {
			<-startGun
			tok, err := b.Token(ctx, e.tenantID, up.ID, testUser("engineer"), []string{tasks.ScopeRead})
			if !assertNoError(t, err) {
				return
			}
			values[i] = tok.Value
			b.AfterUse(ctx, e.tenantID, up.ID, tok)
		})
	}
	close(startGun)
	wg.Wait()
	b.Close()
	slices.Sort(values)
	require.Len(t, slices.Compact(values), callers, "every caller got its own token")
	require.Equal(t, callers, acme.Stats().RevocationCalls)
	require.Zero(t, acme.Stats().FamiliesRevoked, "the refreshes took turns: no refresh token reused")
}

func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

// TestRevokeAfterUseOff: without the flag, narrowed tokens are cached and
// reused, and nothing is revoked.
func TestRevokeAfterUseOff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{refreshNarrows: true})
	e.save(t, acme, up, "engineer", tasks.ScopeRead, tasks.ScopeWrite)
	b := e.newBroker(t, brokerOpts{})
	user := testUser("engineer")

	first, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.True(t, first.Narrowed)
	require.False(t, first.RevokeAfterUse)
	b.AfterUse(ctx, e.tenantID, up.ID, first)
	again, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.Equal(t, first.Value, again.Value, "cached and reused")
	require.Equal(t, 1, b.CacheLen())
	b.Close()
	require.Zero(t, acme.Stats().RevocationCalls)
	require.Equal(t, consent.AfterUseStats{}, b.AfterUseStats())
	require.Equal(t, http.StatusOK, acme.listTasks(t, first.Value))
}

// TestRevokeAfterUseNeverRevokesTheGrantsToken: with the flag on, a call
// that gets the grant's own token (the upstream doesn't narrow, or all
// scopes are asked for) is served as usual: cached, not revoked.
func TestRevokeAfterUseNeverRevokesTheGrantsToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		narrows bool
		scopes  []string
	}{
		{"upstream does not narrow", false, []string{tasks.ScopeRead}},
		{"all scopes asked", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := setup(t)
			acme := startAcme(t, 0)
			up := e.addUpstream(t, acme, upstreamOpts{refreshNarrows: tc.narrows, revokeAfterUse: true})
			grantToken := acme.issue(t, "engineer")
			_, err := e.vault.SaveGrant(ctx, e.tenantID, up.ID, testUser("engineer"), grantToken)
			require.NoError(t, err)
			b := e.newBroker(t, brokerOpts{})

			tok, err := b.Token(ctx, e.tenantID, up.ID, testUser("engineer"), tc.scopes)
			require.NoError(t, err)
			require.False(t, tok.Narrowed)
			require.False(t, tok.RevokeAfterUse)
			require.Equal(t, grantToken.AccessToken, tok.Value, "the grant's own token")
			b.AfterUse(ctx, e.tenantID, up.ID, tok)
			again, err := b.Token(ctx, e.tenantID, up.ID, testUser("engineer"), tc.scopes)
			require.NoError(t, err)
			require.Equal(t, tok.Value, again.Value, "cached")
			b.Close()
			require.Zero(t, acme.Stats().RevocationCalls)
			require.Equal(t, http.StatusOK, acme.listTasks(t, tok.Value))
			require.False(t, acme.FamilyRevoked(grantToken.RefreshToken))
		})
	}
}

// syncBuffer is a log sink safe for the broker's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRevokeAfterUseEndpointFailure: a revocation endpoint that fails or is
// down doesn't affect the call; the failure is logged, without the token,
// and counted.
func TestRevokeAfterUseEndpointFailure(t *testing.T) {
	t.Parallel()
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL + "/revoke"
	down.Close()
	var served atomic.Int64
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)

	for _, tc := range []struct {
		name, url string
		served    int64
	}{
		{"500", failing.URL + "/revoke", 1},
		{"down", downURL, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := setup(t)
			acme := startAcme(t, 0)
			up := e.addUpstream(t, acme, upstreamOpts{refreshNarrows: true, revokeAfterUse: true, revocationURL: tc.url})
			e.save(t, acme, up, "engineer", tasks.ScopeRead, tasks.ScopeWrite)
			logs := &syncBuffer{}
			b := e.newBroker(t, brokerOpts{logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			before := served.Load()

			tok, err := b.Token(ctx, e.tenantID, up.ID, testUser("engineer"), []string{tasks.ScopeRead})
			require.NoError(t, err)
			require.True(t, tok.RevokeAfterUse)
			require.Equal(t, http.StatusOK, acme.listTasks(t, tok.Value))
			b.AfterUse(ctx, e.tenantID, up.ID, tok)
			b.Close()

			require.Equal(t, consent.AfterUseStats{Failed: 1}, b.AfterUseStats())
			require.Equal(t, tc.served, served.Load()-before)
			out := logs.String()
			require.Contains(t, out, "revoke single-use token failed")
			require.Contains(t, out, "upstream_id="+up.ID.String())
			for _, issued := range append(issuedTokens(), tok.Value) {
				require.NotContains(t, out, issued, "a token in the log")
			}
		})
	}
}

// TestRevokeAfterUseIsBackgroundAndCloseWaits: AfterUse returns before the
// upstream has answered, and Close waits for the revocation in flight.
func TestRevokeAfterUseIsBackgroundAndCloseWaits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(free)
	acme := startAcmeWrapped(t, tasks.Config{}, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/revoke" {
				select {
				case <-release:
				case <-time.After(5 * time.Second):
				}
			}
			next.ServeHTTP(w, r)
		})
	})
	up := e.addUpstream(t, acme, upstreamOpts{refreshNarrows: true, revokeAfterUse: true})
	e.save(t, acme, up, "engineer", tasks.ScopeRead, tasks.ScopeWrite)
	b := e.newBroker(t, brokerOpts{})

	tok, err := b.Token(ctx, e.tenantID, up.ID, testUser("engineer"), []string{tasks.ScopeRead})
	require.NoError(t, err)
	callCtx, cancel := context.WithCancel(ctx)
	b.AfterUse(callCtx, e.tenantID, up.ID, tok)
	cancel() // the call's request ends; the revocation goes on
	require.Equal(t, consent.AfterUseStats{}, b.AfterUseStats(), "AfterUse returned before the revocation was answered")
	require.Zero(t, acme.Stats().RevocationCalls)

	go func() {
		time.Sleep(100 * time.Millisecond)
		free()
	}()
	b.Close()
	require.Equal(t, consent.AfterUseStats{Revoked: 1}, b.AfterUseStats(), "Close waited for the revocation")
	require.Equal(t, 1, acme.Stats().RevocationCalls)
	require.Equal(t, http.StatusUnauthorized, acme.listTasks(t, tok.Value))
}

// TestRevokeAfterUseTurnedOnDropsCachedTokens: a narrowed token cached
// before the flag was turned on is not reused once the broker sees the
// flag (after UpstreamTTL): the next call mints a single-use one.
func TestRevokeAfterUseTurnedOnDropsCachedTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{refreshNarrows: true})
	e.save(t, acme, up, "engineer", tasks.ScopeRead, tasks.ScopeWrite)
	now := time.Now()
	var mu sync.Mutex
	cfg := consent.BrokerConfig{
		Vault: e.vault, Upstreams: e.upstreams, Egress: e.egress, ConsentURL: e.consentURL(), Logger: e.logger,
		ExpiryMargin: 5 * time.Second, UpstreamTTL: time.Minute,
		Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now },
	}
	b, err := consent.NewBroker(cfg)
	require.NoError(t, err)
	t.Cleanup(b.Close)
	user := testUser("engineer")

	cached, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.False(t, cached.RevokeAfterUse)
	require.Equal(t, 1, b.CacheLen())

	require.NoError(t, e.db.InTenant(ctx, e.tenantID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE upstreams SET revoke_after_use = true WHERE id = $1", up.ID)
		return err
	}))
	again, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.Equal(t, cached.Value, again.Value, "within UpstreamTTL the old registration holds")

	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	fresh, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.True(t, fresh.RevokeAfterUse)
	require.NotEqual(t, cached.Value, fresh.Value)
	require.Zero(t, b.CacheLen(), "the cached token was dropped")
	b.AfterUse(ctx, e.tenantID, up.ID, fresh)
	b.Close()
	require.Equal(t, map[string]int{tasks.TokenHash(fresh.Value): 1}, revocationsOf(acme), "only the single-use token is revoked")
	require.Equal(t, http.StatusOK, acme.listTasks(t, cached.Value),
		"the dropped token is not revoked (other calls may use it); it expires on its own")
}

// userinfoStatus calls the demo IdP's userinfo endpoint with tok.
func userinfoStatus(t *testing.T, provider *idp.IdP, tok string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, provider.URL()+"/userinfo", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// TestRevokeAfterUseTokenExchange: with the flag on, an exchanged token
// serves one call and is revoked at the IdP's revocation endpoint (the
// upstream's revocation_url), authenticated as Locksmith's exchange client.
func TestRevokeAfterUseTokenExchange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	// Locksmith's secret at the IdP differs from the upstream registration's
	// client secret: the revocation must use the former.
	const idpSecret = "exchange-client-secret"
	provider := idp.NewTestServer(t, func(c *idp.Config) { c.Clients = idp.DefaultClients(idpSecret) })
	up := e.addUpstream(t, nil, upstreamOpts{authMode: tenants.AuthTokenExchange, exchangeAudience: "https://tasks.example.test",
		revocationURL: provider.URL() + "/revoke", revokeAfterUse: true})
	b := e.newBroker(t, brokerOpts{exchange: staticExchange{TokenURL: provider.TokenURL(), ClientID: idp.ClientLocksmith, ClientSecret: idpSecret}})
	t.Cleanup(b.Close)
	tokenA, err := provider.MintAccessToken(idp.MintRequest{User: idp.UsernameEngineer, Scopes: []string{"openid", tasks.ScopeRead}})
	require.NoError(t, err)
	user := consent.User{Issuer: provider.URL(), Subject: idp.UserEngineer, RawTokenA: tokenA}

	tok, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.True(t, tok.RevokeAfterUse)
	require.Zero(t, b.CacheLen())
	require.Equal(t, http.StatusOK, userinfoStatus(t, provider, tok.Value), "the exchanged token works before its call ends")
	b.AfterUse(ctx, e.tenantID, up.ID, tok)
	b.Close()
	require.Equal(t, consent.AfterUseStats{Revoked: 1}, b.AfterUseStats())
	require.NotEqual(t, http.StatusOK, userinfoStatus(t, provider, tok.Value), "revoked at the IdP")
	require.Equal(t, http.StatusOK, userinfoStatus(t, provider, tokenA), "Token A is untouched")

	next, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.NotEqual(t, tok.Value, next.Value, "the next call exchanges its own")
	require.EqualValues(t, 2, provider.TokenExchangeCount())
}

// flakyUpstreams counts registration reads and fails them on demand.
type flakyUpstreams struct {
	consent.Upstreams
	fail  atomic.Bool
	reads atomic.Int64
}

func (f *flakyUpstreams) Upstream(ctx context.Context, tenantID, id uuid.UUID) (tenants.Upstream, error) {
	f.reads.Add(1)
	if f.fail.Load() {
		return tenants.Upstream{}, errors.New("database unavailable")
	}
	return f.Upstreams.Upstream(ctx, tenantID, id)
}

// TestRevokeAfterUseRecheckSurvivesOutage: the warm path's re-check of the
// flag doesn't stop warm calls when the registration can't be read, and
// doesn't ask again on every call.
func TestRevokeAfterUseRecheckSurvivesOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{refreshNarrows: true})
	e.save(t, acme, up, "engineer", tasks.ScopeRead, tasks.ScopeWrite)
	ups := &flakyUpstreams{Upstreams: e.upstreams}
	now := time.Now()
	var mu sync.Mutex
	b, err := consent.NewBroker(consent.BrokerConfig{
		Vault: e.vault, Upstreams: ups, Egress: e.egress, ConsentURL: e.consentURL(), Logger: e.logger,
		ExpiryMargin: 5 * time.Second, UpstreamTTL: time.Minute,
		Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now },
	})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	user := testUser("engineer")
	cached, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.True(t, cached.Narrowed)

	ups.fail.Store(true)
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	reads := ups.reads.Load()
	for range 10 {
		tok, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
		require.NoError(t, err)
		require.Equal(t, cached.Value, tok.Value)
	}
	require.Equal(t, reads+1, ups.reads.Load(), "one failed read, then the last known registration for UpstreamTTL")
}

// revocationRow is a grant_revocations row as stored.
type revocationRow struct {
	id, grantID, upstreamID uuid.UUID
	sealed                  []byte
	hint                    string
	attempts                int
}

// revocationRows returns the tenant's grant_revocations rows.
func (e *env) revocationRows(t testing.TB) []revocationRow {
	t.Helper()
	ctx := context.Background()
	var out []revocationRow
	require.NoError(t, e.db.InTenant(ctx, e.tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT id, grant_id, upstream_id, token_sealed, token_type_hint, attempts FROM grant_revocations ORDER BY created_at")
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (revocationRow, error) {
			var x revocationRow
			err := r.Scan(&x.id, &x.grantID, &x.upstreamID, &x.sealed, &x.hint, &x.attempts)
			return x, err
		})
		return err
	}))
	return out
}

// revokeJob returns the River job enqueued for the grant_revocations row id.
func (e *env) revokeJob(t testing.TB, id uuid.UUID) *rivertype.JobRow {
	t.Helper()
	ctx := context.Background()
	var jobID int64
	require.NoError(t, e.db.Pool().QueryRow(ctx, "SELECT id FROM river_job WHERE kind = $1 AND args->>'revocation_id' = $2",
		consent.RevokeJobArgs{}.Kind(), id.String()).Scan(&jobID))
	job, err := e.inserter.JobGet(ctx, jobID)
	require.NoError(t, err)
	var args consent.RevokeJobArgs
	require.NoError(t, json.Unmarshal(job.EncodedArgs, &args))
	require.Equal(t, consent.RevokeJobArgs{TenantID: e.tenantID, RevocationID: id}, args)
	return job
}

// workRevokeJob works job as River would, with the production revoke
// worker over b, and returns the updated job and the worker's error.
// requireJobRevokes works job with broker b and requires that it completes
// having revoked token at Acme exactly once, leaving no grant_revocations
// row.
func (e *env) requireJobRevokes(t *testing.T, acme *acmeServer, b *consent.Broker, job *rivertype.JobRow, token string) {
	t.Helper()
	res, err := e.workRevokeJob(t, b, job)
	require.NoError(t, err)
	require.Equal(t, river.EventKindJobCompleted, res.EventKind)
	require.Equal(t, http.StatusUnauthorized, acme.listTasks(t, token), "revoked by the job")
	require.Equal(t, map[string]int{tasks.TokenHash(token): 1}, revocationsOf(acme))
	require.Empty(t, e.revocationRows(t))
}

func (e *env) workRevokeJob(t *testing.T, b *consent.Broker, job *rivertype.JobRow) (*rivertest.WorkResult, error) {
	t.Helper()
	ctx := context.Background()
	tw := rivertest.NewWorker(t, riverpgxv5.New(nil), &river.Config{Logger: e.logger}, jobs.NewRevokeWorker(b))
	tx, err := e.db.Pool().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	res, werr := tw.WorkJob(ctx, t, tx, job)
	require.NotNil(t, res, "work job: %v", werr)
	require.NoError(t, tx.Commit(ctx))
	return res, werr
}

// TestRevokeAfterUseIsDurable: before a single-use token is handed out, it
// is kept sealed in a grant_revocations row (the grant, the upstream, the
// access_token hint; never the token's bytes) with a revoke job scheduled
// RevokeAfterUseBackstop later. AfterUse revokes it at Acme and deletes the
// row, so the job, when it runs, revokes nothing.
func TestRevokeAfterUseIsDurable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{refreshNarrows: true, revokeAfterUse: true})
	g := e.save(t, acme, up, "engineer", tasks.ScopeRead, tasks.ScopeWrite)
	b := e.newBroker(t, brokerOpts{})
	t.Cleanup(b.Close)

	before := time.Now()
	tok, err := b.Token(ctx, e.tenantID, up.ID, testUser("engineer"), []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.True(t, tok.RevokeAfterUse)
	rows := e.revocationRows(t)
	require.Len(t, rows, 1, "the row is written before the token is handed out")
	r := rows[0]
	require.Equal(t, g.ID, r.grantID)
	require.Equal(t, up.ID, r.upstreamID)
	require.Equal(t, "access_token", r.hint)
	require.NotEmpty(t, r.sealed)
	require.False(t, bytes.Contains(r.sealed, []byte(tok.Value)), "the token in plaintext in grant_revocations")
	job := e.revokeJob(t, r.id)
	require.Equal(t, consent.QueueGrants, job.Queue)
	require.Equal(t, rivertype.JobStateScheduled, job.State, "a backstop, not an immediate revocation")
	require.WithinDuration(t, before.Add(consent.RevokeAfterUseBackstop), job.ScheduledAt, 10*time.Second)
	n, err := e.vault.PendingRevocations(ctx, e.tenantID)
	require.NoError(t, err)
	require.Equal(t, 1, n)

	require.Equal(t, http.StatusOK, acme.listTasks(t, tok.Value), "the call")
	b.AfterUse(ctx, e.tenantID, up.ID, tok)
	b.Close()
	require.Equal(t, consent.AfterUseStats{Revoked: 1}, b.AfterUseStats())
	require.Equal(t, http.StatusUnauthorized, acme.listTasks(t, tok.Value), "revoked right after use")
	require.Empty(t, e.revocationRows(t), "the row is deleted once the token is revoked")

	res, err := e.workRevokeJob(t, e.newBroker(t, brokerOpts{}), job)
	require.NoError(t, err)
	require.Equal(t, river.EventKindJobCompleted, res.EventKind)
	require.Equal(t, 1, acme.Stats().RevocationCalls, "the backstop job found nothing left to revoke")
}

// TestRevokeAfterUseFailureLeftToJob: when Acme's revocation endpoint fails
// at AfterUse time, the call is unaffected, the failure is counted and the
// row stays; the revoke job fails (retried with backoff by River) while
// Acme is still failing, and revokes the token and deletes the row once
// Acme is back.
func TestRevokeAfterUseFailureLeftToJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	var failing atomic.Bool
	acme := startAcmeWrapped(t, tasks.Config{}, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/revoke" && failing.Load() {
				http.Error(w, `{"error":"temporarily_unavailable"}`, http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	up := e.addUpstream(t, acme, upstreamOpts{refreshNarrows: true, revokeAfterUse: true})
	e.save(t, acme, up, "engineer", tasks.ScopeRead, tasks.ScopeWrite)
	b := e.newBroker(t, brokerOpts{})
	t.Cleanup(b.Close)

	tok, err := b.Token(ctx, e.tenantID, up.ID, testUser("engineer"), []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, acme.listTasks(t, tok.Value))
	failing.Store(true)
	b.AfterUse(ctx, e.tenantID, up.ID, tok)
	b.Close()
	require.Equal(t, consent.AfterUseStats{Failed: 1}, b.AfterUseStats())
	require.Equal(t, http.StatusOK, acme.listTasks(t, tok.Value), "not revoked yet")
	rows := e.revocationRows(t)
	require.Len(t, rows, 1, "the row stays for the revoke job")
	job := e.revokeJob(t, rows[0].id)

	later := e.newBroker(t, brokerOpts{})
	res, err := e.workRevokeJob(t, later, job)
	var re *consent.RetryableError
	require.ErrorAs(t, err, &re, "Acme still failing: the job fails, to be retried")
	require.Equal(t, river.EventKindJobFailed, res.EventKind)
	// River retries it with backoff (a first retry due within seconds is
	// made available at once).
	require.Contains(t, []rivertype.JobState{rivertype.JobStateRetryable, rivertype.JobStateAvailable}, res.Job.State)
	require.Len(t, res.Job.Errors, 1)
	rows = e.revocationRows(t)
	require.Len(t, rows, 1)
	require.Equal(t, 1, rows[0].attempts)

	failing.Store(false)
	e.requireJobRevokes(t, acme, later, res.Job, tok.Value)
}

// TestRevokeAfterUseSurvivesCrash: a process that dies after handing a
// single-use token out and before AfterUse (the broker is dropped, AfterUse
// never runs) leaves the token to its revoke job, which another broker
// (another process) runs to revoke it at Acme.
func TestRevokeAfterUseSurvivesCrash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{refreshNarrows: true, revokeAfterUse: true})
	e.save(t, acme, up, "engineer", tasks.ScopeRead, tasks.ScopeWrite)

	var tok consent.Token
	func() {
		crashed := e.newBroker(t, brokerOpts{})
		var err error
		tok, err = crashed.Token(ctx, e.tenantID, up.ID, testUser("engineer"), []string{tasks.ScopeRead})
		require.NoError(t, err)
		require.True(t, tok.RevokeAfterUse)
		require.Equal(t, http.StatusOK, acme.listTasks(t, tok.Value))
		// The process dies here: no AfterUse, no Close.
	}()
	require.Zero(t, acme.Stats().RevocationCalls)
	rows := e.revocationRows(t)
	require.Len(t, rows, 1)
	job := e.revokeJob(t, rows[0].id)

	restarted := e.newBroker(t, brokerOpts{})
	t.Cleanup(restarted.Close)
	e.requireJobRevokes(t, acme, restarted, job, tok.Value)
}

// TestRevokeAfterUseNotHandedOutUnrecorded: when the grant_revocations row
// can't be written, Token returns a retryable error that says why (without
// any token) and no token; the minted token is revoked at once.
func TestRevokeAfterUseNotHandedOutUnrecorded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := sqltest.NewDatabase(t)
	db, err := lsql.Open(ctx, lsql.Options{URL: dbURL, AssumeRole: true})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	e := setupOn(t, db)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{refreshNarrows: true, revokeAfterUse: true})
	e.save(t, acme, up, "engineer", tasks.ScopeRead, tasks.ScopeWrite)
	b := e.newBroker(t, brokerOpts{})
	t.Cleanup(b.Close)

	owner, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	_, err = owner.Exec(ctx, `CREATE FUNCTION refuse_revocations() RETURNS trigger LANGUAGE plpgsql AS
		$$ BEGIN RAISE EXCEPTION 'grant_revocations unavailable'; END $$;
		CREATE TRIGGER refuse BEFORE INSERT ON grant_revocations FOR EACH ROW EXECUTE FUNCTION refuse_revocations()`)
	require.NoError(t, err)
	require.NoError(t, owner.Close(ctx))

	tok, err := b.Token(ctx, e.tenantID, up.ID, testUser("engineer"), []string{tasks.ScopeRead})
	require.Error(t, err)
	require.Equal(t, consent.Token{}, tok, "no token")
	var re *consent.RetryableError
	require.ErrorAs(t, err, &re, "the agent is told to retry")
	require.Contains(t, err.Error(), "could not be recorded for revocation, so it was not handed out")
	for _, issued := range issuedTokens() {
		require.NotContains(t, err.Error(), issued, "a token in the error")
	}

	b.Close()
	require.Equal(t, consent.AfterUseStats{Revoked: 1}, b.AfterUseStats(), "the token that was not handed out was revoked at once")
	st := acme.Stats()
	require.Equal(t, 1, st.RevocationCalls)
	require.Equal(t, tasks.KindAccessToken, st.Revocations[0].Kind)
	require.True(t, st.Revocations[0].Revoked)
	require.Zero(t, st.FamiliesRevoked, "the user stays connected")
	require.Empty(t, e.revocationRows(t))
}

// TestRevokeAfterUseNotHandedOutDuringOutage: with the database down (a
// PostgreSQL restart), an exchanged single-use token — which needs no
// database until it must be recorded — is not handed out: Token says the
// database is unavailable and the error is retryable; the exchanged token
// is revoked at the IdP at once. Once the database is back, the call works.
func TestRevokeAfterUseNotHandedOutDuringOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := sqltest.NewDatabase(t)
	db, err := lsql.Open(ctx, lsql.Options{URL: dbURL, AssumeRole: true})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	e := setupOn(t, db)
	const idpSecret = "exchange-client-secret"
	provider := idp.NewTestServer(t, func(c *idp.Config) { c.Clients = idp.DefaultClients(idpSecret) })
	up := e.addUpstream(t, nil, upstreamOpts{authMode: tenants.AuthTokenExchange, exchangeAudience: "https://tasks.example.test",
		revocationURL: provider.URL() + "/revoke", revokeAfterUse: true})
	b := e.newBroker(t, brokerOpts{exchange: staticExchange{TokenURL: provider.TokenURL(), ClientID: idp.ClientLocksmith, ClientSecret: idpSecret}})
	t.Cleanup(b.Close)
	tokenA, err := provider.MintAccessToken(idp.MintRequest{User: idp.UsernameEngineer, Scopes: []string{"openid", tasks.ScopeRead}})
	require.NoError(t, err)
	user := consent.User{Issuer: provider.URL(), Subject: idp.UserEngineer, RawTokenA: tokenA}

	warm, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead}) // caches the registration
	require.NoError(t, err)
	rows := e.revocationRows(t)
	require.Len(t, rows, 1)
	require.Equal(t, uuid.Nil, rows[0].grantID, "an exchanged token has no grant")
	require.Equal(t, up.ID, rows[0].upstreamID)
	require.False(t, bytes.Contains(rows[0].sealed, []byte(warm.Value)), "the token in plaintext in grant_revocations")
	b.AfterUse(ctx, e.tenantID, up.ID, warm)
	require.Eventually(t, func() bool {
		n, err := e.vault.PendingRevocations(ctx, e.tenantID)
		return err == nil && n == 0
	}, 10*time.Second, 10*time.Millisecond, "revoked after use and its row deleted")

	end := sqltest.Outage(t, dbURL)
	exchanges := provider.TokenExchangeCount()
	tok, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
	require.Error(t, err)
	require.Equal(t, consent.Token{}, tok, "no token")
	require.Equal(t, exchanges+1, provider.TokenExchangeCount(), "the token was minted, then withheld")
	require.ErrorIs(t, err, lsql.ErrUnavailable)
	var re *consent.RetryableError
	require.ErrorAs(t, err, &re)
	require.NotContains(t, err.Error(), tokenA)
	b.Close()
	require.Equal(t, consent.AfterUseStats{Revoked: 2}, b.AfterUseStats(), "the warm call's token and the withheld one")
	end()

	b2 := e.newBroker(t, brokerOpts{exchange: staticExchange{TokenURL: provider.TokenURL(), ClientID: idp.ClientLocksmith, ClientSecret: idpSecret}})
	t.Cleanup(b2.Close)
	require.Eventually(t, func() bool {
		tok, err = b2.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "the database is back")
	require.True(t, tok.RevokeAfterUse)
	require.Len(t, e.revocationRows(t), 1, "the new token's row")
}
