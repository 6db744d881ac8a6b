package consent_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/tasks"
)

func TestSaveGrantMergesScopes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})

	g := e.save(t, acme, up, "engineer", tasks.ScopeRead)
	require.Equal(t, consent.StatusActive, g.Status)
	require.Equal(t, []string{tasks.ScopeRead}, g.Scopes)
	require.True(t, g.HasAccessToken)
	require.True(t, g.HasRefreshToken)
	require.Equal(t, 1, e.jobCount(t, consent.RefreshJobArgs{}.Kind(), g.ID), "a refresh job is scheduled with the grant")

	// Incremental consent: the second authorization adds a scope.
	g2 := e.save(t, acme, up, "engineer", tasks.ScopeWrite)
	require.Equal(t, g.ID, g2.ID)
	require.Equal(t, []string{tasks.ScopeRead, tasks.ScopeWrite}, g2.Scopes)
	require.Greater(t, g2.Version, g.Version)

	got, err := e.vault.GrantFor(ctx, e.tenantID, up.ID, testIssuer, "engineer")
	require.NoError(t, err)
	require.Equal(t, g2.Scopes, got.Scopes)
	got, err = e.vault.Grant(ctx, e.tenantID, g.ID)
	require.NoError(t, err)
	require.Equal(t, "engineer@acme.example", got.Email)

	// Another user's grant is not in the list.
	e.save(t, acme, up, "finance")
	list, err := e.vault.UserGrants(ctx, e.tenantID, testIssuer, "engineer")
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, g.ID, list[0].ID)

	// Bad input is refused with a clear error.
	_, err = e.vault.SaveGrant(ctx, e.tenantID, up.ID, consent.User{Issuer: testIssuer}, consent.Tokens{AccessToken: "x"})
	require.ErrorIs(t, err, consent.ErrInvalid)
	_, err = e.vault.SaveGrant(ctx, e.tenantID, up.ID, testUser("engineer"), consent.Tokens{})
	require.ErrorIs(t, err, consent.ErrInvalid)
	_, err = e.vault.SaveGrant(ctx, e.tenantID, uuid.New(), testUser("engineer"), consent.Tokens{AccessToken: "x"})
	require.ErrorIs(t, err, consent.ErrInvalid)
}

func TestSaveGrantConcurrentFirstConsent(t *testing.T) {
	t.Parallel()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := e.vault.SaveGrant(context.Background(), e.tenantID, up.ID, testUser("approver"), acme.issue(t, "approver"))
			errs <- err
		}()
	}
	for range 8 {
		require.NoError(t, <-errs)
	}
	list, err := e.vault.UserGrants(context.Background(), e.tenantID, testIssuer, "approver")
	require.NoError(t, err)
	require.Len(t, list, 1)
}

func TestRevokeDestroysTokensAndEnqueuesInSameTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})
	g := e.save(t, acme, up, "engineer")

	// Only the grant's user may revoke it.
	require.ErrorIs(t, e.vault.Revoke(ctx, e.tenantID, g.ID, testUser("finance")), consent.ErrNotFound)

	require.NoError(t, e.vault.Revoke(ctx, e.tenantID, g.ID, testUser("engineer")))
	got, err := e.vault.Grant(ctx, e.tenantID, g.ID)
	require.NoError(t, err)
	require.Equal(t, consent.StatusRevoked, got.Status)
	require.False(t, got.HasAccessToken)
	require.False(t, got.HasRefreshToken)
	require.NotNil(t, got.RevokedAt)

	var revID uuid.UUID
	var hint string
	require.NoError(t, e.db.InTenant(ctx, e.tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT id, token_type_hint FROM grant_revocations WHERE grant_id = $1", g.ID).Scan(&revID, &hint)
	}))
	require.Equal(t, "refresh_token", hint)
	require.Equal(t, 1, e.jobCount(t, consent.RevokeJobArgs{}.Kind(), revID))

	// Idempotent.
	require.NoError(t, e.vault.Revoke(ctx, e.tenantID, g.ID, testUser("engineer")))
	n, err := e.vault.PendingRevocations(ctx, e.tenantID)
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

func TestRevokeRollsBackWithTheEnqueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})
	g := e.save(t, acme, up, "engineer")

	failing, err := consent.NewVault(consent.VaultConfig{DB: e.db, Sealer: e.sealer, Inserter: failingInserter{}, Logger: e.logger})
	require.NoError(t, err)
	require.Error(t, failing.Revoke(ctx, e.tenantID, g.ID, testUser("engineer")))
	got, err := e.vault.Grant(ctx, e.tenantID, g.ID)
	require.NoError(t, err)
	require.Equal(t, consent.StatusActive, got.Status, "the revocation and its job commit together or not at all")
	require.True(t, got.HasRefreshToken)
}

func TestMarkNeedsReauth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})
	g := e.save(t, acme, up, "engineer")

	require.NoError(t, e.vault.MarkNeedsReauth(ctx, e.tenantID, g.ID, "upstream_account_disabled"))
	got, err := e.vault.Grant(ctx, e.tenantID, g.ID)
	require.NoError(t, err)
	require.Equal(t, consent.StatusNeedsReauth, got.Status)
	require.Equal(t, "upstream_account_disabled", got.NeedsReauthReason)
	require.False(t, got.HasAccessToken)
	require.False(t, got.HasRefreshToken)
	n, err := e.vault.PendingRevocations(ctx, e.tenantID)
	require.NoError(t, err)
	require.Equal(t, 1, n, "a live refresh token of a dead grant is revoked at the upstream")

	require.ErrorIs(t, e.vault.MarkNeedsReauth(ctx, e.tenantID, uuid.New(), "x"), consent.ErrNotFound)

	// A new consent revives the grant.
	g2 := e.save(t, acme, up, "engineer")
	require.Equal(t, consent.StatusActive, g2.Status)
	require.Empty(t, g2.NeedsReauthReason)
	require.Equal(t, []string{tasks.ScopeRead, tasks.ScopeWrite}, g2.Scopes)
}

func TestPurge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})
	old := e.save(t, acme, up, "engineer")
	recent := e.save(t, acme, up, "finance")
	for _, g := range []consent.Grant{old, recent} {
		require.NoError(t, e.vault.Revoke(ctx, e.tenantID, g.ID, testUser(g.Subject)))
	}
	require.NoError(t, e.db.InTenant(ctx, e.tenantID, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "UPDATE grants SET revoked_at = now() - interval '31 days' WHERE id = $1", old.ID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE grant_revocations SET created_at = now() - interval '8 days' WHERE grant_id = $1", old.ID)
		return err
	}))
	n, err := e.vault.Purge(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, int64(2))
	_, err = e.vault.Grant(ctx, e.tenantID, old.ID)
	require.ErrorIs(t, err, consent.ErrNotFound)
	_, err = e.vault.Grant(ctx, e.tenantID, recent.ID)
	require.NoError(t, err)
	pending, err := e.vault.PendingRevocations(ctx, e.tenantID)
	require.NoError(t, err)
	require.Equal(t, 1, pending)
}

// TestTwoTenantIsolation calls every tenant-scoped method of the vault and
// the broker with tenant B and tenant A's ids: nothing of A is seen or
// changed.
func TestTwoTenantIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := setup(t)
	b := setup(t)
	acme := startAcme(t, 0)
	upA := a.addUpstream(t, acme, upstreamOpts{})
	upB := b.addUpstream(t, acme, upstreamOpts{})
	gA := a.save(t, acme, upA, "engineer")
	gB := b.save(t, acme, upB, "engineer") // same user in both tenants
	broker := a.newBroker(t, brokerOpts{})
	user := testUser("engineer")

	_, err := b.vault.Grant(ctx, b.tenantID, gA.ID)
	require.ErrorIs(t, err, consent.ErrNotFound, "Grant")
	_, err = b.vault.GrantFor(ctx, b.tenantID, upA.ID, testIssuer, "engineer")
	require.ErrorIs(t, err, consent.ErrNotFound, "GrantFor")
	list, err := b.vault.UserGrants(ctx, b.tenantID, testIssuer, "engineer")
	require.NoError(t, err)
	require.Len(t, list, 1, "UserGrants")
	require.Equal(t, gB.ID, list[0].ID)
	_, err = b.vault.SaveGrant(ctx, b.tenantID, upA.ID, user, acme.issue(t, "engineer"))
	require.ErrorIs(t, err, consent.ErrInvalid, "SaveGrant onto another tenant's upstream")
	require.ErrorIs(t, b.vault.Revoke(ctx, b.tenantID, gA.ID, user), consent.ErrNotFound, "Revoke")
	require.ErrorIs(t, b.vault.MarkNeedsReauth(ctx, b.tenantID, gA.ID, "x"), consent.ErrNotFound, "MarkNeedsReauth")

	_, err = broker.Token(ctx, b.tenantID, upA.ID, user, nil)
	require.ErrorIs(t, err, consent.ErrNotFound, "Token with another tenant's upstream")
	a.expire(t, gA.ID)
	require.NoError(t, broker.RefreshGrant(ctx, b.tenantID, gA.ID, gA.Version), "RefreshGrant")
	require.Zero(t, acme.Stats().RefreshGrants, "RefreshGrant across tenants refreshed something")

	require.NoError(t, broker.Revoke(ctx, a.tenantID, gA.ID, user))
	var revA uuid.UUID
	require.NoError(t, a.db.InTenant(ctx, a.tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT id FROM grant_revocations WHERE grant_id = $1", gA.ID).Scan(&revA)
	}))
	require.NoError(t, broker.RevokeAtUpstream(ctx, b.tenantID, revA), "RevokeAtUpstream")
	require.Zero(t, acme.Stats().RevocationCalls)
	n, err := b.vault.PendingRevocations(ctx, b.tenantID)
	require.NoError(t, err)
	require.Zero(t, n, "PendingRevocations")
	n, err = a.vault.PendingRevocations(ctx, a.tenantID)
	require.NoError(t, err)
	require.Equal(t, 1, n)

	// B's own grant is untouched by all of the above.
	got, err := b.vault.Grant(ctx, b.tenantID, gB.ID)
	require.NoError(t, err)
	require.Equal(t, consent.StatusActive, got.Status)
	require.Equal(t, gB.Version, got.Version)
}

type failingInserter struct{}

func (failingInserter) InsertTx(context.Context, pgx.Tx, river.JobArgs, *river.InsertOpts) (*rivertype.JobInsertResult, error) {
	return nil, errors.New("queue unavailable")
}

// TestRefreshDueNowIsAvailable: a grant saved with a token that expires
// within River's scheduler horizon (or already expired) gets a refresh job
// that is available at once (no ScheduledAt, so River doesn't wait up to
// 5 s for its scheduler); a token with an hour left gets a scheduled one.
func TestRefreshDueNowIsAvailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 0)
	up := e.addUpstream(t, acme, upstreamOpts{})
	state := func(g consent.Grant) (string, time.Time) {
		t.Helper()
		var s string
		var at time.Time
		require.NoError(t, e.db.Pool().QueryRow(ctx, `SELECT state::text, scheduled_at FROM river_job
			WHERE kind = $1 AND args->>'grant_id' = $2 AND (args->>'version')::bigint = $3`,
			consent.RefreshJobArgs{}.Kind(), g.ID.String(), g.Version).Scan(&s, &at))
		return s, at
	}
	for _, life := range []time.Duration{3 * time.Second, -time.Minute} {
		tok := acme.issue(t, "engineer")
		tok.ExpiresAt = time.Now().Add(life)
		g, err := e.vault.SaveGrant(ctx, e.tenantID, up.ID, testUser("engineer"), tok)
		require.NoError(t, err)
		s, at := state(g)
		require.Equal(t, "available", s, "life %v", life)
		require.WithinDuration(t, time.Now(), at, 5*time.Second)
	}
	tok := acme.issue(t, "finance")
	tok.ExpiresAt = time.Now().Add(time.Hour)
	g, err := e.vault.SaveGrant(ctx, e.tenantID, up.ID, testUser("finance"), tok)
	require.NoError(t, err)
	s, at := state(g)
	require.Equal(t, "scheduled", s)
	require.True(t, at.After(time.Now().Add(30*time.Minute)), "refreshed ahead of expiry, not now: %v", at)
}
