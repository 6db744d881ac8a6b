package consent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

// Grant statuses.
const (
	StatusActive      = "active"
	StatusNeedsReauth = "needs_reauth"
	StatusRevoked     = "revoked"
)

// Seal field names: each sealed value is bound to its tenant, its row id and
// one of these, so an access token can't be opened as a refresh token, nor a
// ciphertext moved to another grant or tenant.
const (
	fieldAccessToken     = "grants.access_token"
	fieldRefreshToken    = "grants.refresh_token"
	fieldRevocationToken = "grant_revocations.token"
)

// NotifyChannel is the PostgreSQL channel on which a grant that was revoked
// or turned needs_reauth is announced ("tenant_id:grant_id"), in the
// transaction that changed it. Every Broker listens and drops its cache
// entries for the grant.
const NotifyChannel = "locksmith_grants"

// User is the person a Token B acts for, as the tenant's IdP names them.
type User struct {
	// Issuer and Subject identify the user (Token A's iss and sub). Required.
	Issuer  string
	Subject string
	// Email is for display only.
	Email string
	// RawTokenA is the user's Token A, used only as the subject token of a
	// token exchange at the tenant's IdP; it is never sent to an upstream,
	// stored or logged.
	RawTokenA string
}

// Grant is a user's consent to an upstream. It never carries token material.
type Grant struct {
	TenantID   uuid.UUID
	ID         uuid.UUID
	UpstreamID uuid.UUID
	Issuer     string
	Subject    string
	Email      string
	// Status is StatusActive, StatusNeedsReauth or StatusRevoked.
	Status string
	// Scopes are the scopes the user granted, sorted.
	Scopes []string
	// AccessScopes are the scopes of the stored access token.
	AccessScopes    []string
	AccessExpiresAt *time.Time
	HasAccessToken  bool
	HasRefreshToken bool
	// Version is bumped by every write of the grant's tokens or status.
	Version int64
	// RefreshAttempts counts presentations of the current refresh token
	// whose outcome is unknown (lost response, crash).
	RefreshAttempts   int
	LastRefreshError  string
	LastRefreshedAt   *time.Time
	NeedsReauthReason string
	CreatedAt         time.Time
	UpdatedAt         time.Time
	LastUsedAt        *time.Time
	RevokedAt         *time.Time
}

// Tokens is what an upstream's token endpoint issued (RFC 6749 section 5.1).
type Tokens struct {
	AccessToken  string
	RefreshToken string
	// ExpiresAt is when the access token expires; zero means unknown
	// (DefaultTokenLifetime is assumed).
	ExpiresAt time.Time
	// Scopes are the scopes of the access token (the response's scope, or
	// what was asked for when the response omits it).
	Scopes []string
}

// DefaultTokenLifetime is assumed for access tokens whose response has no
// expires_in.
const DefaultTokenLifetime = 10 * time.Minute

// Inserter enqueues River jobs inside a caller's transaction.
// *river.Client[pgx.Tx] (also an insert-only one) satisfies it.
type Inserter interface {
	InsertTx(ctx context.Context, tx pgx.Tx, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
}

// VaultConfig holds the Vault's dependencies.
type VaultConfig struct {
	DB     *lsql.DB
	Sealer *seal.Sealer
	// Inserter enqueues refresh and revoke jobs in the vault's transactions.
	Inserter Inserter
	Logger   *slog.Logger
	// RefreshAhead is how long before expiry a grant's refresh job runs (at
	// most a quarter of the token's lifetime, minus jitter). Zero means 5 minutes.
	RefreshAhead time.Duration
	// RevokedRetention is how long revoked grants stay listed before Purge
	// deletes them. Zero means 30 days.
	RevokedRetention time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Vault stores grants and their sealed tokens. Every method takes the tenant
// id and runs in a tenant-scoped transaction (row-level security). It is
// safe for concurrent use.
type Vault struct {
	db        *lsql.DB
	sealer    *seal.Sealer
	inserter  Inserter
	logger    *slog.Logger
	ahead     time.Duration
	retention time.Duration
	now       func() time.Time
}

// NewVault returns a Vault.
func NewVault(cfg VaultConfig) (*Vault, error) {
	switch {
	case cfg.DB == nil:
		return nil, errors.New("consent: vault: db is required")
	case cfg.Sealer == nil:
		return nil, errors.New("consent: vault: sealer is required")
	case cfg.Inserter == nil:
		return nil, errors.New("consent: vault: job inserter is required")
	case cfg.Logger == nil:
		return nil, errors.New("consent: vault: logger is required")
	case cfg.RefreshAhead < 0 || cfg.RevokedRetention < 0:
		return nil, errors.New("consent: vault: durations must not be negative")
	}
	v := &Vault{db: cfg.DB, sealer: cfg.Sealer, inserter: cfg.Inserter, logger: cfg.Logger,
		ahead: cfg.RefreshAhead, retention: cfg.RevokedRetention, now: cfg.Now}
	if v.ahead == 0 {
		v.ahead = 5 * time.Minute
	}
	if v.retention == 0 {
		v.retention = 30 * 24 * time.Hour
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// inTenant runs fn in a tenant-scoped transaction and translates driver errors.
func (v *Vault) inTenant(ctx context.Context, tenantID uuid.UUID, fn func(pgx.Tx) error) error {
	return lsql.Translate(v.db.InTenant(ctx, tenantID, fn))
}

const grantColumns = `tenant_id, id, upstream_id, idp_issuer, subject, email, status, scopes, access_scopes,
	access_expires_at, access_token_sealed IS NOT NULL, refresh_token_sealed IS NOT NULL, version,
	refresh_attempts, last_refresh_error, last_refreshed_at, needs_reauth_reason, created_at, updated_at,
	last_used_at, revoked_at`

func scanGrant(row pgx.Row, extra ...any) (Grant, error) {
	var g Grant
	dest := append([]any{&g.TenantID, &g.ID, &g.UpstreamID, &g.Issuer, &g.Subject, &g.Email, &g.Status,
		&g.Scopes, &g.AccessScopes, &g.AccessExpiresAt, &g.HasAccessToken, &g.HasRefreshToken, &g.Version,
		&g.RefreshAttempts, &g.LastRefreshError, &g.LastRefreshedAt, &g.NeedsReauthReason, &g.CreatedAt,
		&g.UpdatedAt, &g.LastUsedAt, &g.RevokedAt}, extra...)
	err := row.Scan(dest...)
	return g, err
}

// normScopes returns scopes sorted, deduplicated and without empty entries.
// It returns its argument when that is already normal (no allocation).
func normScopes(scopes []string) []string {
	normal := true
	for i, s := range scopes {
		if s == "" || (i > 0 && scopes[i-1] >= s) {
			normal = false
			break
		}
	}
	if normal {
		return scopes
	}
	out := make([]string, 0, len(scopes))
	for _, s := range scopes {
		if s != "" {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// missingScopes returns the elements of want (normal) not in have (normal).
func missingScopes(want, have []string) []string {
	var out []string
	for _, s := range want {
		if _, ok := slices.BinarySearch(have, s); !ok {
			out = append(out, s)
		}
	}
	return out
}

func unionScopes(a, b []string) []string {
	return normScopes(append(slices.Clone(a), b...))
}

func validUser(u User) error {
	switch {
	case u.Issuer == "" || u.Subject == "":
		return tenants.Invalid("user", "the user's issuer and subject are required")
	case len(u.Issuer) > 2000 || len(u.Subject) > 1000 || len(u.Email) > 320:
		return tenants.Invalid("user", "the user's identity is too long")
	}
	return nil
}

// SaveGrant creates the user's grant for the upstream from a token response
// (the end of a consent flow), or, when the user already has one, replaces
// its tokens and merges the scopes (incremental consent: the result holds
// the scopes of the previous grant, if it was active, and of tok). The grant
// becomes active, its refresh state is reset (a refresh in flight elsewhere
// fails its compare-and-swap) and, when there is a refresh token, a refresh
// job is enqueued in the same transaction. The consent flow should ask the
// upstream for the merged scopes, so that the new refresh token covers them.
// A replaced refresh token is not revoked at the upstream: some upstreams
// tie every token of a user and client to one grant, and revoking the old
// one would revoke the new one too.
func (v *Vault) SaveGrant(ctx context.Context, tenantID, upstreamID uuid.UUID, user User, tok Tokens) (Grant, error) {
	if err := validUser(user); err != nil {
		return Grant{}, err
	}
	if tok.AccessToken == "" {
		return Grant{}, tenants.Invalid("access_token", "the token response has no access token")
	}
	scopes := normScopes(tok.Scopes)
	exp := tok.ExpiresAt
	if exp.IsZero() {
		exp = v.now().Add(DefaultTokenLifetime)
	}
	var g Grant
	for attempt := 0; ; attempt++ {
		err := v.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
			var id uuid.UUID
			var status string
			var old []string
			err := tx.QueryRow(ctx, `SELECT id, status, scopes FROM grants
				WHERE upstream_id = $1 AND idp_issuer = $2 AND subject = $3 FOR UPDATE`,
				upstreamID, user.Issuer, user.Subject).Scan(&id, &status, &old)
			exists := err == nil
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			if !exists {
				id = uuid.New()
			}
			at, rt, err := v.sealTokens(ctx, tenantID, id, tok.AccessToken, tok.RefreshToken)
			if err != nil {
				return err
			}
			merged := scopes
			if exists && status == StatusActive {
				merged = unionScopes(old, scopes)
			}
			if exists {
				g, err = scanGrant(tx.QueryRow(ctx, `UPDATE grants SET email = $2, status = 'active', scopes = $3,
					access_token_sealed = $4, access_expires_at = $5, access_scopes = $6, refresh_token_sealed = $7,
					version = version + 1, lease_owner = NULL, lease_expires_at = NULL, refresh_started_at = NULL,
					refresh_attempts = 0, last_refresh_error = '', needs_reauth_reason = '', revoked_at = NULL,
					updated_at = now()
					WHERE id = $1 RETURNING `+grantColumns, id, user.Email, merged, at, exp, scopes, rt))
			} else {
				g, err = scanGrant(tx.QueryRow(ctx, `INSERT INTO grants (tenant_id, id, upstream_id, idp_issuer, subject,
					email, scopes, access_token_sealed, access_expires_at, access_scopes, refresh_token_sealed)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $7, $10)
					ON CONFLICT (tenant_id, upstream_id, idp_issuer, subject) DO NOTHING
					RETURNING `+grantColumns, tenantID, id, upstreamID, user.Issuer, user.Subject, user.Email, merged, at, exp, rt))
			}
			if err != nil {
				return err
			}
			if rt != nil {
				return v.enqueueRefresh(ctx, tx, g)
			}
			return nil
		})
		if errors.Is(err, ErrNotFound) && attempt == 0 {
			continue // lost an insert race with the same user: update theirs
		}
		if err != nil {
			if errors.Is(err, ErrInvalid) {
				return Grant{}, &tenants.Error{Kind: ErrInvalid, Field: "upstream_id", Message: "the upstream does not exist", Err: err}
			}
			return Grant{}, fmt.Errorf("consent: save grant: %w", err)
		}
		return g, nil
	}
}

func (v *Vault) sealTokens(ctx context.Context, tenantID, grantID uuid.UUID, access, refresh string) (at, rt []byte, err error) {
	if access != "" {
		if at, err = v.sealer.Seal(ctx, tenantID, grantID, fieldAccessToken, []byte(access)); err != nil {
			return nil, nil, err
		}
	}
	if refresh != "" {
		if rt, err = v.sealer.Seal(ctx, tenantID, grantID, fieldRefreshToken, []byte(refresh)); err != nil {
			return nil, nil, err
		}
	}
	return at, rt, nil
}

// enqueueRefresh schedules the next refresh of g's access token.
func (v *Vault) enqueueRefresh(ctx context.Context, tx pgx.Tx, g Grant) error {
	if g.AccessExpiresAt == nil || !g.HasRefreshToken || g.Status != StatusActive {
		return nil
	}
	runAt := refreshRunAt(v.now(), *g.AccessExpiresAt, v.ahead, func(d time.Duration) time.Duration {
		return rand.N(d)
	})
	// River inserts any job with a ScheduledAt, even a past one, as
	// scheduled, for its scheduler (every 5 s) to make available; a refresh
	// due now goes in without one: available at once, announced by NOTIFY.
	var opts *river.InsertOpts
	if runAt.After(v.now()) {
		opts = &river.InsertOpts{ScheduledAt: runAt}
	}
	_, err := v.inserter.InsertTx(ctx, tx, RefreshJobArgs{TenantID: g.TenantID, GrantID: g.ID, UpstreamID: g.UpstreamID, Version: g.Version}, opts)
	if err != nil {
		return fmt.Errorf("enqueue refresh: %w", err)
	}
	return nil
}

// Grant returns one grant of the tenant.
func (v *Vault) Grant(ctx context.Context, tenantID, grantID uuid.UUID) (Grant, error) {
	var g Grant
	err := v.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		g, err = scanGrant(tx.QueryRow(ctx, "SELECT "+grantColumns+" FROM grants WHERE id = $1", grantID))
		return err
	})
	if err != nil {
		return Grant{}, fmt.Errorf("consent: grant %s: %w", grantID, err)
	}
	return g, nil
}

// GrantFor returns the user's grant for the upstream.
func (v *Vault) GrantFor(ctx context.Context, tenantID, upstreamID uuid.UUID, issuer, subject string) (Grant, error) {
	var g Grant
	err := v.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		g, err = scanGrant(tx.QueryRow(ctx, "SELECT "+grantColumns+` FROM grants
			WHERE upstream_id = $1 AND idp_issuer = $2 AND subject = $3`, upstreamID, issuer, subject))
		return err
	})
	if err != nil {
		return Grant{}, fmt.Errorf("consent: grant for upstream %s: %w", upstreamID, err)
	}
	return g, nil
}

// UserGrants lists the user's grants, revoked ones included (until purged),
// oldest first.
func (v *Vault) UserGrants(ctx context.Context, tenantID uuid.UUID, issuer, subject string) ([]Grant, error) {
	var out []Grant
	err := v.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT "+grantColumns+` FROM grants
			WHERE idp_issuer = $1 AND subject = $2 ORDER BY created_at, id`, issuer, subject)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Grant, error) { return scanGrant(r) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("consent: list grants: %w", err)
	}
	return out, nil
}

// Revoke destroys the grant's tokens at once (sealed columns nulled, status
// revoked), and in the same transaction keeps the refresh token (else the
// access token) resealed in grant_revocations, enqueues the job that revokes
// it at the upstream, and notifies every Broker (NotifyChannel). by must be
// the grant's user, else ErrNotFound. Revoking a revoked grant is a no-op.
func (v *Vault) Revoke(ctx context.Context, tenantID, grantID uuid.UUID, by User) error {
	err := v.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var status string
		var at, rt []byte
		var upstreamID uuid.UUID
		err := tx.QueryRow(ctx, `SELECT status, upstream_id, access_token_sealed, refresh_token_sealed FROM grants
			WHERE id = $1 AND idp_issuer = $2 AND subject = $3 FOR UPDATE`, grantID, by.Issuer, by.Subject).
			Scan(&status, &upstreamID, &at, &rt)
		if err != nil {
			return err
		}
		if status == StatusRevoked {
			return nil
		}
		if err := v.destroyTokens(ctx, tx, tenantID, grantID, upstreamID, at, rt); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE grants SET status = 'revoked', access_token_sealed = NULL,
			refresh_token_sealed = NULL, access_expires_at = NULL, revoked_at = now(), updated_at = now(),
			version = version + 1, lease_owner = NULL, lease_expires_at = NULL, refresh_started_at = NULL,
			refresh_attempts = 0 WHERE id = $1`, grantID); err != nil {
			return err
		}
		return notify(ctx, tx, tenantID, grantID)
	})
	if err != nil {
		return fmt.Errorf("consent: revoke grant %s: %w", grantID, err)
	}
	return nil
}

// destroyTokens moves the token worth revoking upstream (the refresh token,
// which revokes the family at most upstreams, else the access token) into a
// grant_revocations row, resealed for that row, and enqueues its job.
func (v *Vault) destroyTokens(ctx context.Context, tx pgx.Tx, tenantID, grantID, upstreamID uuid.UUID, at, rt []byte) error {
	sealed, field, hint := rt, fieldRefreshToken, "refresh_token"
	if sealed == nil {
		sealed, field, hint = at, fieldAccessToken, "access_token"
	}
	if sealed == nil {
		return nil
	}
	plain, err := v.sealer.Open(ctx, tenantID, grantID, field, sealed)
	if err != nil {
		return fmt.Errorf("open token to revoke: %w", err)
	}
	_, err = v.revocationTx(ctx, tx, tenantID, grantID, upstreamID, plain, hint, time.Time{})
	clear(plain)
	return err
}

// revocationTx seals the token plain for a new grant_revocations row
// (bound to the tenant, the row id and fieldRevocationToken), inserts the
// row and enqueues its RevokeJobArgs in tx: to run at once when runAt is
// zero, else at runAt. It returns the row's id. The caller clears plain.
func (v *Vault) revocationTx(ctx context.Context, tx pgx.Tx, tenantID, grantID, upstreamID uuid.UUID, plain []byte, hint string, runAt time.Time) (uuid.UUID, error) {
	revID := uuid.New()
	resealed, err := v.sealer.Seal(ctx, tenantID, revID, fieldRevocationToken, plain)
	if err != nil {
		return uuid.Nil, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO grant_revocations (tenant_id, id, grant_id, upstream_id, token_sealed, token_type_hint)
		VALUES ($1, $2, $3, $4, $5, $6)`, tenantID, revID, grantID, upstreamID, resealed, hint); err != nil {
		return uuid.Nil, err
	}
	var opts *river.InsertOpts
	if !runAt.IsZero() {
		opts = &river.InsertOpts{ScheduledAt: runAt}
	}
	if _, err := v.inserter.InsertTx(ctx, tx, RevokeJobArgs{TenantID: tenantID, RevocationID: revID}, opts); err != nil {
		return uuid.Nil, fmt.Errorf("enqueue revocation: %w", err)
	}
	return revID, nil
}

// holdAfterUse keeps a single-use access token (see Broker.AfterUse) in a
// grant_revocations row, sealed like every other, with its revoke job
// scheduled at runAt, in one transaction, and returns the row's id.
// grantID is uuid.Nil for exchanged tokens. The token is never stored in
// plaintext.
func (v *Vault) holdAfterUse(ctx context.Context, tenantID, grantID, upstreamID uuid.UUID, token string, runAt time.Time) (uuid.UUID, error) {
	var id uuid.UUID
	err := v.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		plain := []byte(token)
		defer clear(plain)
		var err error
		id, err = v.revocationTx(ctx, tx, tenantID, grantID, upstreamID, plain, "access_token", runAt)
		return err
	})
	if err != nil {
		return uuid.Nil, fmt.Errorf("consent: keep single-use token for revocation: %w", err)
	}
	return id, nil
}

func notify(ctx context.Context, tx pgx.Tx, tenantID, grantID uuid.UUID) error {
	_, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", NotifyChannel, tenantID.String()+":"+grantID.String())
	return err
}

// Reasons recorded in Grant.NeedsReauthReason.
const (
	// NeedsReauthInvalidGrant: the upstream refused the refresh token.
	NeedsReauthInvalidGrant = "invalid_grant"
	// NeedsReauthRefreshLost: two refresh attempts with the same refresh
	// token ended without an answer (lost response or crash): the token may
	// have been consumed, and presenting it again risks the token family.
	NeedsReauthRefreshLost = "refresh_lost"
	// NeedsReauthNoRefreshToken: the access token expired and there is no
	// refresh token.
	NeedsReauthNoRefreshToken = "no_refresh_token"
)

// MarkNeedsReauth turns an active grant needs_reauth for reason (a short
// code, shown to the user): its tokens are destroyed, a live refresh token
// is handed to the upstream revocation job (except after invalid_grant, when
// it is dead already), and every Broker is notified. Marking a grant that
// is not active is a no-op; an unknown grant is ErrNotFound.
func (v *Vault) MarkNeedsReauth(ctx context.Context, tenantID, grantID uuid.UUID, reason string) error {
	if reason == "" || len(reason) > 100 {
		return tenants.Invalid("reason", "the reason must be a short code")
	}
	err := v.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT true FROM grants WHERE id = $1", grantID).Scan(&exists); err != nil {
			return err
		}
		_, err := v.markNeedsReauthTx(ctx, tx, tenantID, grantID, -1, reason)
		return err
	})
	if err != nil {
		return fmt.Errorf("consent: mark grant %s needs_reauth: %w", grantID, err)
	}
	return nil
}

// markNeedsReauthTx marks the grant if it is active and, when version >= 0,
// still at that version. It reports whether it changed the grant.
func (v *Vault) markNeedsReauthTx(ctx context.Context, tx pgx.Tx, tenantID, grantID uuid.UUID, version int64, reason string) (bool, error) {
	var upstreamID uuid.UUID
	var at, rt []byte
	err := tx.QueryRow(ctx, `SELECT upstream_id, access_token_sealed, refresh_token_sealed FROM grants
		WHERE id = $1 AND status = 'active' AND ($2 < 0 OR version = $2) FOR UPDATE`, grantID, version).Scan(&upstreamID, &at, &rt)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if rt != nil && reason != NeedsReauthInvalidGrant {
		if err := v.destroyTokens(ctx, tx, tenantID, grantID, upstreamID, nil, rt); err != nil {
			return false, err
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE grants SET status = 'needs_reauth', needs_reauth_reason = $2,
		access_token_sealed = NULL, refresh_token_sealed = NULL, access_expires_at = NULL,
		version = version + 1, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
		WHERE id = $1`, grantID, reason); err != nil {
		return false, err
	}
	v.logger.WarnContext(ctx, "grant needs reauthorization", "tenant_id", tenantID, "grant_id", grantID, "reason", reason)
	return true, notify(ctx, tx, tenantID, grantID)
}

// Purge deletes, in every tenant, revoked grants older than the retention
// and upstream revocations still pending after a week (their job gave up).
// It returns how many rows it deleted.
func (v *Vault) Purge(ctx context.Context) (int64, error) {
	ids, err := v.db.TenantIDs(ctx)
	if err != nil {
		return 0, fmt.Errorf("consent: purge: list tenants: %w", err)
	}
	var total int64
	cutoff := v.now().Add(-v.retention)
	stale := v.now().Add(-7 * 24 * time.Hour)
	for _, tenantID := range ids {
		err := v.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, "DELETE FROM grants WHERE status = 'revoked' AND revoked_at < $1", cutoff)
			if err != nil {
				return err
			}
			total += tag.RowsAffected()
			tag, err = tx.Exec(ctx, "DELETE FROM grant_revocations WHERE created_at < $1", stale)
			if err != nil {
				return err
			}
			if n := tag.RowsAffected(); n > 0 {
				v.logger.WarnContext(ctx, "upstream revocations abandoned", "tenant_id", tenantID, "count", n)
				total += n
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("consent: purge tenant %s: %w", tenantID, err)
		}
	}
	return total, nil
}

// touchUsed records when grants were last used (batched by the Broker).
func (v *Vault) touchUsed(ctx context.Context, tenantID uuid.UUID, ids []uuid.UUID, at time.Time) error {
	return v.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE grants SET last_used_at = $2
			WHERE id = ANY($1) AND (last_used_at IS NULL OR last_used_at < $2)`, ids, at)
		return err
	})
}

// safeErrorText keeps what may be stored in last_refresh_error: the OAuth
// error code and HTTP status, never a body or a token.
func safeErrorText(err error) string {
	var re *RetryableError
	var oe *OAuthError
	switch {
	case errors.As(err, &oe):
		return fmt.Sprintf("%s: HTTP %d %s", oe.Op, oe.Status, oe.Code)
	case errors.As(err, &re) && re.Uncertain:
		return re.Op + ": response lost"
	case errors.As(err, &re) && re.Status != 0:
		return strings.TrimSpace(fmt.Sprintf("%s: HTTP %d %s", re.Op, re.Status, re.Code))
	case errors.As(err, &re):
		return re.Op + ": upstream unreachable"
	}
	return "internal error"
}
