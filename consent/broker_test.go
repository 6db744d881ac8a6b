package consent_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/tasks"
	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
)

// stampede runs 200 concurrent Token calls for 20 users whose access tokens
// have just expired, alternating between two brokers that share the
// database, and returns how many calls got a token Acme Tasks accepts.
func stampede(t *testing.T, noSingleFlight bool) (*acmeServer, int64) {
	t.Helper()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 20)
	up := e.addUpstream(t, acme, upstreamOpts{})
	var grants []consent.Grant
	for i := range 20 {
		grants = append(grants, e.save(t, acme, up, userName(i)))
	}
	acme.ExpireAccessTokens()
	for _, g := range grants {
		e.expire(t, g.ID)
	}
	brokers := []*consent.Broker{
		e.newBroker(t, brokerOpts{instance: "instance-a", noSingleFlight: noSingleFlight}),
		e.newBroker(t, brokerOpts{instance: "instance-b", noSingleFlight: noSingleFlight}),
	}
	var ok atomic.Int64
	var wg sync.WaitGroup
	startGun := make(chan struct{})
	for i := range 200 {
		wg.Go(func() {
			<-startGun
			tok, err := brokers[(i/20)%2].Token(ctx, e.tenantID, up.ID, testUser(userName(i%20)), nil)
			if err != nil {
				return
			}
			if acme.listTasks(t, tok.Value) == http.StatusOK {
				ok.Add(1)
			}
		})
	}
	close(startGun)
	wg.Wait()
	return acme, ok.Load()
}

func TestTokenStampedeOneRefreshPerGrant(t *testing.T) {
	t.Parallel()
	acme, ok := stampede(t, false)
	st := acme.Stats()
	require.Equal(t, 20, st.RefreshGrants, "exactly one refresh per grant at the upstream")
	require.Zero(t, st.RefreshReuseDetections)
	require.Zero(t, st.FamiliesRevoked, "no token family revoked")
	require.EqualValues(t, 200, ok, "every call got a working token")
}

// TestTokenStampedeGuard proves the stampede test can fail: without single
// flight (in process and across instances) the upstream sees reused refresh
// tokens and revokes families.
func TestTokenStampedeGuard(t *testing.T) {
	t.Parallel()
	acme, ok := stampede(t, true)
	st := acme.Stats()
	require.Positive(t, st.FamiliesRevoked, "without single flight families must be revoked")
	require.Positive(t, st.RefreshReuseDetections)
	require.Less(t, ok, int64(200))
}

func TestTokenWarmCacheNeedsNoDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})
	e.save(t, acme, up, "engineer")

	// A broker on its own pool, closed once the cache is warm.
	db, err := lsql.Open(ctx, lsql.Options{URL: sqltest.OwnerURL(t), AssumeRole: true, MaxConns: 2})
	require.NoError(t, err)
	v, err := consent.NewVault(consent.VaultConfig{DB: db, Sealer: e.sealer, Inserter: e.inserter, Logger: e.logger})
	require.NoError(t, err)
	b := e.newBroker(t, brokerOpts{vault: v})
	user := testUser("engineer")
	first, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.False(t, first.Narrowed, "the upstream does not narrow: the grant's token is used")
	require.Equal(t, []string{tasks.ScopeRead, tasks.ScopeWrite}, first.Scopes)
	db.Close()

	for range 100 {
		tok, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
		require.NoError(t, err)
		require.Equal(t, first.Value, tok.Value)
	}
	require.Equal(t, http.StatusOK, acme.listTasks(t, first.Value))
	require.Zero(t, acme.Stats().TokenEndpointCalls)
}

func TestTokenConsentRequired(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})
	b := e.newBroker(t, brokerOpts{})

	_, err := b.Token(ctx, e.tenantID, up.ID, testUser("engineer"), []string{tasks.ScopeRead})
	var cre *consent.ConsentRequiredError
	require.ErrorAs(t, err, &cre)
	require.Equal(t, consent.ReasonNoGrant, cre.Reason)
	require.Equal(t, "https://locksmith.example.test/t/"+e.slug+"/connect/"+up.Slug+"?scope=tasks%3Aread", cre.ConsentURL)

	e.save(t, acme, up, "engineer", tasks.ScopeRead)
	_, err = b.Token(ctx, e.tenantID, up.ID, testUser("engineer"), []string{tasks.ScopeDelete, tasks.ScopeRead})
	require.ErrorAs(t, err, &cre)
	require.Equal(t, consent.ReasonMissingScopes, cre.Reason)
	require.Equal(t, []string{tasks.ScopeDelete}, cre.MissingScopes)
	require.Contains(t, cre.ConsentURL, "scope=tasks%3Adelete+tasks%3Aread", "incremental consent asks for the union")

	_, err = b.Token(ctx, e.tenantID, up.ID, consent.User{Subject: "engineer"}, nil)
	require.ErrorIs(t, err, consent.ErrInvalid)
}

func TestTokenNarrowing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{refreshNarrows: true})
	g := e.save(t, acme, up, "engineer", tasks.ScopeRead, tasks.ScopeWrite, tasks.ScopeDelete)
	b := e.newBroker(t, brokerOpts{})
	user := testUser("engineer")

	read, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.True(t, read.Narrowed)
	require.Equal(t, []string{tasks.ScopeRead}, read.Scopes)
	info, err := acme.Inspect(read.Value)
	require.NoError(t, err)
	require.Equal(t, []string{tasks.ScopeRead}, info.Scopes, "the upstream issued a token with just the requested scope")
	require.Equal(t, http.StatusOK, acme.listTasks(t, read.Value))
	require.Equal(t, 1, acme.Stats().RefreshGrants)

	// Cached per scope set.
	again, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.Equal(t, read.Value, again.Value)
	require.Equal(t, 1, acme.Stats().RefreshGrants)

	rw, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeWrite, tasks.ScopeRead})
	require.NoError(t, err)
	require.True(t, rw.Narrowed)
	info, err = acme.Inspect(rw.Value)
	require.NoError(t, err)
	require.Equal(t, []string{tasks.ScopeRead, tasks.ScopeWrite}, info.Scopes)
	require.Equal(t, 2, acme.Stats().RefreshGrants)

	// All scopes (or none named): the grant's own token, no refresh.
	all, err := b.Token(ctx, e.tenantID, up.ID, user, nil)
	require.NoError(t, err)
	require.False(t, all.Narrowed)
	require.Equal(t, 2, acme.Stats().RefreshGrants)
	require.Zero(t, acme.Stats().FamiliesRevoked)

	// The narrowed refreshes rotated the refresh token each time; the
	// rotated one is in the vault.
	got, err := e.vault.Grant(ctx, e.tenantID, g.ID)
	require.NoError(t, err)
	require.Equal(t, g.Version+2, got.Version)
}

func TestTokenInvalidGrantNeedsReauth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})
	toks := acme.issue(t, "engineer")
	toks.RefreshToken = "not-a-refresh-token-acme-issued"
	g, err := e.vault.SaveGrant(ctx, e.tenantID, up.ID, testUser("engineer"), toks)
	require.NoError(t, err)
	e.expire(t, g.ID)
	b := e.newBroker(t, brokerOpts{})

	_, err = b.Token(ctx, e.tenantID, up.ID, testUser("engineer"), nil)
	var cre *consent.ConsentRequiredError
	require.ErrorAs(t, err, &cre)
	require.Equal(t, consent.ReasonNeedsReauth, cre.Reason)
	require.Equal(t, consent.NeedsReauthInvalidGrant, cre.Detail)
	require.NotEmpty(t, cre.ConsentURL)
	for range 20 {
		_, err = b.Token(ctx, e.tenantID, up.ID, testUser("engineer"), nil)
		require.ErrorAs(t, err, &cre)
	}
	require.Equal(t, 1, acme.Stats().TokenEndpointCalls, "no retry loop")
	got, err := e.vault.Grant(ctx, e.tenantID, g.ID)
	require.NoError(t, err)
	require.Equal(t, consent.StatusNeedsReauth, got.Status)
	require.Equal(t, consent.NeedsReauthInvalidGrant, got.NeedsReauthReason)
}

func TestToken5xxIsRetryableAndHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})
	g := e.save(t, acme, up, "engineer")
	e.expire(t, g.ID)
	b := e.newBroker(t, brokerOpts{})
	user := testUser("engineer")

	acme.FailTokenEndpoint(http.StatusServiceUnavailable, 1, 3*time.Second)
	_, err := b.Token(ctx, e.tenantID, up.ID, user, nil)
	var re *consent.RetryableError
	require.ErrorAs(t, err, &re)
	require.Equal(t, http.StatusServiceUnavailable, re.Status)
	require.Equal(t, "temporarily_unavailable", re.Code)
	require.Equal(t, 3*time.Second, re.RetryAfter)
	require.Equal(t, 3*time.Second, consent.RetryAfter(err))
	require.False(t, re.Uncertain)

	// Retry-After is honoured: no call to the upstream meanwhile.
	_, err = b.Token(ctx, e.tenantID, up.ID, user, nil)
	require.ErrorAs(t, err, &re)
	require.Equal(t, 1, acme.Stats().TokenEndpointCalls)

	got, err := e.vault.Grant(ctx, e.tenantID, g.ID)
	require.NoError(t, err)
	require.Equal(t, consent.StatusActive, got.Status, "5xx never marks needs_reauth")
	require.Zero(t, got.RefreshAttempts)
	require.Contains(t, got.LastRefreshError, "503")

	// A 500 without Retry-After, then recovery on another instance.
	acme.FailTokenEndpoint(http.StatusInternalServerError, 1, 0)
	other := e.newBroker(t, brokerOpts{})
	_, err = other.Token(ctx, e.tenantID, up.ID, user, nil)
	require.ErrorAs(t, err, &re)
	require.Zero(t, re.RetryAfter)
	tok, err := other.Token(ctx, e.tenantID, up.ID, user, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, acme.listTasks(t, tok.Value))
	require.Zero(t, acme.Stats().FamiliesRevoked)
}

// lostResponse runs the lost-response scenario with fault applied to the
// next refresh and checks the outcome.
func lostResponse(t *testing.T, fault func(*acmeServer)) {
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})
	g := e.save(t, acme, up, "engineer")
	acme.ExpireAccessTokens()
	e.expire(t, g.ID)
	b := e.newBroker(t, brokerOpts{lease: 400 * time.Millisecond, timeout: 200 * time.Millisecond, wait: 2 * time.Second})
	user := testUser("engineer")

	fault(acme)
	_, err := b.Token(ctx, e.tenantID, up.ID, user, nil)
	var re *consent.RetryableError
	require.ErrorAs(t, err, &re)
	require.True(t, re.Uncertain)
	require.Equal(t, 1, acme.Stats().RefreshGrants, "the upstream rotated")

	// The next caller waits for the lease to expire, retries once, and the
	// upstream (which saw the reuse) refuses: needs_reauth.
	_, err = b.Token(ctx, e.tenantID, up.ID, user, nil)
	var cre *consent.ConsentRequiredError
	require.ErrorAs(t, err, &cre)
	require.Equal(t, consent.ReasonNeedsReauth, cre.Reason)
	require.NotEmpty(t, cre.ConsentURL)

	for range 100 {
		_, err = b.Token(ctx, e.tenantID, up.ID, user, nil)
		require.ErrorAs(t, err, &cre)
	}
	require.Equal(t, 2, acme.Stats().TokenEndpointCalls, "at most two refresh attempts, none after needs_reauth")
}

func TestTokenLostResponseDropped(t *testing.T) {
	t.Parallel()
	lostResponse(t, func(a *acmeServer) { a.DropNextRefreshResponses(1) })
}

func TestTokenLostResponseHung(t *testing.T) {
	t.Parallel()
	lostResponse(t, func(a *acmeServer) { a.HangNextRefreshResponses(1) })
}

// TestTokenLostResponseTwice uses a token endpoint that never answers: the
// second lost answer ends in needs_reauth without a third presentation.
func TestTokenLostResponseTwice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	var calls atomic.Int64
	quit := make(chan struct{})
	black := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-r.Context().Done():
		case <-quit:
		}
	}))
	t.Cleanup(func() { close(quit); black.Close() })
	up := e.addUpstream(t, acme, upstreamOpts{tokenURL: black.URL + "/token"})
	g := e.save(t, acme, up, "engineer")
	e.expire(t, g.ID)
	b := e.newBroker(t, brokerOpts{lease: 300 * time.Millisecond, timeout: 100 * time.Millisecond, wait: 2 * time.Second})
	user := testUser("engineer")

	_, err := b.Token(ctx, e.tenantID, up.ID, user, nil)
	var re *consent.RetryableError
	require.ErrorAs(t, err, &re)
	require.True(t, re.Uncertain)
	_, err = b.Token(ctx, e.tenantID, up.ID, user, nil)
	var cre *consent.ConsentRequiredError
	require.ErrorAs(t, err, &cre)
	require.Equal(t, consent.NeedsReauthRefreshLost, cre.Detail)
	for range 100 {
		_, err = b.Token(ctx, e.tenantID, up.ID, user, nil)
		require.ErrorAs(t, err, &cre)
	}
	require.EqualValues(t, 2, calls.Load())
	n, err := e.vault.PendingRevocations(ctx, e.tenantID)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the possibly consumed refresh token is revoked upstream, killing any family the lost answer made")
}

var errCrash = errors.New("simulated crash between the upstream's answer and the commit")

// TestTokenCrashBetweenAnswerAndCommit: the process dies after the upstream
// rotated the refresh token and before the vault wrote it. The lease and the
// in-flight marker stay behind; the next caller after the lease expires
// makes the one retry, the upstream refuses the consumed token, and the
// grant is needs_reauth with a consent URL: never a silent forever-failure.
func TestTokenCrashBetweenAnswerAndCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})
	g := e.save(t, acme, up, "engineer")
	acme.ExpireAccessTokens()
	e.expire(t, g.ID)
	user := testUser("engineer")

	dying := e.newBroker(t, brokerOpts{instance: "dying", lease: 400 * time.Millisecond, timeout: 200 * time.Millisecond,
		afterUpstream: func() error { return errCrash }})
	_, err := dying.Token(ctx, e.tenantID, up.ID, user, nil)
	require.ErrorIs(t, err, errCrash)
	require.Equal(t, 1, acme.Stats().RefreshGrants)
	var owner string
	var attempts int
	var pending bool
	require.NoError(t, e.db.InTenant(ctx, e.tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT lease_owner, refresh_attempts, refresh_started_at IS NOT NULL FROM grants WHERE id = $1", g.ID).
			Scan(&owner, &attempts, &pending)
	}))
	require.Equal(t, "dying", owner)
	require.Equal(t, 1, attempts)
	require.True(t, pending, "the in-flight marker survives the crash")

	next := e.newBroker(t, brokerOpts{instance: "next", lease: 400 * time.Millisecond, timeout: 200 * time.Millisecond, wait: 2 * time.Second})
	_, err = next.Token(ctx, e.tenantID, up.ID, user, nil)
	var cre *consent.ConsentRequiredError
	require.ErrorAs(t, err, &cre)
	require.Equal(t, consent.ReasonNeedsReauth, cre.Reason)
	require.Equal(t, consent.NeedsReauthInvalidGrant, cre.Detail)
	require.Equal(t, "https://locksmith.example.test/t/"+e.slug+"/connect/"+up.Slug+"?scope=tasks%3Aread+tasks%3Awrite", cre.ConsentURL)
	require.Equal(t, 2, acme.Stats().TokenEndpointCalls)
	_, err = next.Token(ctx, e.tenantID, up.ID, user, nil)
	require.ErrorAs(t, err, &cre)
	require.Equal(t, 2, acme.Stats().TokenEndpointCalls)
}

// TestTokenCrashBeforeConsumption: the crashed attempt never consumed the
// refresh token (the upstream answered 503), so the retry succeeds.
func TestTokenCrashBeforeConsumption(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})
	g := e.save(t, acme, up, "engineer")
	e.expire(t, g.ID)
	user := testUser("engineer")

	acme.FailTokenEndpoint(http.StatusServiceUnavailable, 1, 0)
	dying := e.newBroker(t, brokerOpts{instance: "dying", lease: 300 * time.Millisecond, timeout: 200 * time.Millisecond,
		afterUpstream: func() error { return errCrash }})
	_, err := dying.Token(ctx, e.tenantID, up.ID, user, nil)
	require.ErrorIs(t, err, errCrash)

	next := e.newBroker(t, brokerOpts{instance: "next", lease: 300 * time.Millisecond, timeout: 200 * time.Millisecond, wait: 2 * time.Second})
	tok, err := next.Token(ctx, e.tenantID, up.ID, user, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, acme.listTasks(t, tok.Value))
	got, err := e.vault.Grant(ctx, e.tenantID, g.ID)
	require.NoError(t, err)
	require.Zero(t, got.RefreshAttempts)
	require.Zero(t, acme.Stats().FamiliesRevoked)
}

// TestTokenLeaseLostFailsLoudly: a refresh whose lease was taken over while
// it talked to the upstream must not overwrite the winner's tokens.
func TestTokenLeaseLostFailsLoudly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})
	g := e.save(t, acme, up, "engineer")
	e.expire(t, g.ID)
	user := testUser("engineer")

	var once sync.Once
	slow := e.newBroker(t, brokerOpts{instance: "slow", lease: 300 * time.Millisecond, timeout: 200 * time.Millisecond,
		afterUpstream: func() error {
			once.Do(func() {
				// Someone else takes the lease meanwhile.
				require.NoError(t, e.db.InTenant(ctx, e.tenantID, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, "UPDATE grants SET lease_owner = 'thief' WHERE id = $1", g.ID)
					return err
				}))
			})
			return nil
		}})
	_, err := slow.Token(ctx, e.tenantID, up.ID, user, nil)
	require.ErrorIs(t, err, consent.ErrLeaseLost)
	var re *consent.RetryableError
	require.ErrorAs(t, err, &re)
	got, err := e.vault.Grant(ctx, e.tenantID, g.ID)
	require.NoError(t, err)
	require.Equal(t, g.Version, got.Version, "nothing overwritten")
}

func TestRevocationReachesEveryInstance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})
	g := e.save(t, acme, up, "engineer")
	user := testUser("engineer")
	b1 := e.newBroker(t, brokerOpts{start: true})
	b2 := e.newBroker(t, brokerOpts{start: true})
	for _, b := range []*consent.Broker{b1, b2} {
		_, err := b.Token(ctx, e.tenantID, up.ID, user, nil)
		require.NoError(t, err)
	}

	require.NoError(t, b1.Revoke(ctx, e.tenantID, g.ID, user))
	revokedAt := time.Now()
	_, err := b1.Token(ctx, e.tenantID, up.ID, user, nil)
	require.ErrorIs(t, err, consent.ErrRevoked, "the revoking instance refuses at once")
	var refusedAfter time.Duration
	for {
		_, err := b2.Token(ctx, e.tenantID, up.ID, user, nil)
		if err != nil {
			require.ErrorIs(t, err, consent.ErrRevoked)
			var cre *consent.ConsentRequiredError
			require.ErrorAs(t, err, &cre)
			require.Equal(t, consent.ReasonRevoked, cre.Reason)
			refusedAfter = time.Since(revokedAt)
			break
		}
		require.Less(t, time.Since(revokedAt), time.Second, "the other instance still serves a revoked grant")
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("other instance refused %s after the revocation", refusedAfter)

	// The revoke job's work: Acme Tasks' RFC 7009 endpoint gets the refresh token.
	var revID uuid.UUID
	require.NoError(t, e.db.InTenant(ctx, e.tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT id FROM grant_revocations WHERE grant_id = $1", g.ID).Scan(&revID)
	}))
	require.NoError(t, b1.RevokeAtUpstream(ctx, e.tenantID, revID))
	require.NoError(t, b1.RevokeAtUpstream(ctx, e.tenantID, revID), "idempotent")
	st := acme.Stats()
	require.Equal(t, 1, st.RevocationCalls)
	require.Equal(t, tasks.KindRefreshToken, st.Revocations[0].Kind)
	require.True(t, st.Revocations[0].Revoked)
	require.Equal(t, 1, st.FamiliesRevoked, "revoking the refresh token revokes the family at Acme")
}

func TestRevocationListenerSurvivesReconnect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})
	g := e.save(t, acme, up, "engineer")
	user := testUser("engineer")
	b := e.newBroker(t, brokerOpts{start: true})
	_, err := b.Token(ctx, e.tenantID, up.ID, user, nil)
	require.NoError(t, err)

	// Kill the listener's connection from the server side.
	owner, err := pgx.Connect(ctx, sqltest.OwnerURL(t))
	require.NoError(t, err)
	defer owner.Close(ctx)
	_, err = owner.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query ILIKE 'LISTEN ' || $1`, consent.NotifyChannel)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return b.CacheLen() == 0 }, 10*time.Second, 20*time.Millisecond,
		"the cache is dropped when notifications may have been missed")

	_, err = b.Token(ctx, e.tenantID, up.ID, user, nil)
	require.NoError(t, err)
	// The reconnected listener still delivers.
	require.Eventually(t, func() bool {
		var n int
		_ = owner.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'").Scan(&n)
		return n > 0
	}, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, e.vault.Revoke(ctx, e.tenantID, g.ID, user))
	require.Eventually(t, func() bool {
		_, err := b.Token(ctx, e.tenantID, up.ID, user, nil)
		return errors.Is(err, consent.ErrRevoked)
	}, time.Second, 5*time.Millisecond)
}

func TestAuthModeNoneIsNotBrokered(t *testing.T) {
	t.Parallel()
	e := setup(t)
	up := e.addUpstream(t, nil, upstreamOpts{authMode: tenants.AuthNone})
	b := e.newBroker(t, brokerOpts{})
	_, err := b.Token(context.Background(), e.tenantID, up.ID, testUser("engineer"), nil)
	require.ErrorIs(t, err, consent.ErrNotBrokered)
}

func TestConsentURL(t *testing.T) {
	t.Parallel()
	require.Equal(t, "https://l.example/t/acme/connect/tasks", consent.ConsentURL("https://l.example/", "acme", "tasks", nil))
	require.Equal(t, "https://l.example/t/acme/connect/tasks?scope=a+b%3Ac", consent.ConsentURL("https://l.example", "acme", "tasks", []string{"a", "b:c"}))
	require.True(t, strings.HasPrefix(consent.ConsentURL("https://l.example", "a/b", "c", nil), "https://l.example/t/a%2Fb/"))
}

func TestLastUsedIsRecordedInBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})
	g := e.save(t, acme, up, "engineer")
	require.Nil(t, g.LastUsedAt)
	b := e.newBroker(t, brokerOpts{start: true, flush: 50 * time.Millisecond})
	for range 10 {
		_, err := b.Token(ctx, e.tenantID, up.ID, testUser("engineer"), nil)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		got, err := e.vault.Grant(ctx, e.tenantID, g.ID)
		return err == nil && got.LastUsedAt != nil && time.Since(*got.LastUsedAt) < time.Minute
	}, 5*time.Second, 20*time.Millisecond)
}

// TestLastUsedSurvivesAFailedFlush: a flush whose write fails (here its
// context is already cancelled, as when the database is away) keeps the
// grant uses, and the next flush records them: last_used_at is not lost.
func TestLastUsedSurvivesAFailedFlush(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})
	g := e.save(t, acme, up, "engineer")
	b := e.newBroker(t, brokerOpts{}) // not started: the test runs the flushes
	_, err := b.Token(ctx, e.tenantID, up.ID, testUser("engineer"), nil)
	require.NoError(t, err)

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	require.Equal(t, 1, b.FlushUsage(cancelled), "the failed write's use is kept")
	got, err := e.vault.Grant(ctx, e.tenantID, g.ID)
	require.NoError(t, err)
	require.Nil(t, got.LastUsedAt, "nothing was written")

	require.Zero(t, b.FlushUsage(ctx), "written, nothing kept")
	got, err = e.vault.Grant(ctx, e.tenantID, g.ID)
	require.NoError(t, err)
	require.NotNil(t, got.LastUsedAt, "the next flush recorded the use")
	require.WithinDuration(t, time.Now(), *got.LastUsedAt, time.Minute)
}
