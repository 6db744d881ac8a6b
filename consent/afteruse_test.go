package consent_test

import (
	"bytes"
	"context"
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
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
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
