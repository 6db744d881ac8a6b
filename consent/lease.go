package consent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// lockedGrant is a grant row read under FOR UPDATE, with its sealed tokens
// and its refresh coordination state, for the broker's decision.
type lockedGrant struct {
	Grant
	accessSealed  []byte
	refreshSealed []byte
	leaseOwner    string
	// leaseLive reports lease_expires_at > now() on the database's clock.
	leaseLive bool
	// refreshPending reports refresh_started_at IS NOT NULL: an attempt with
	// the current refresh token is in flight or ended without an answer.
	refreshPending bool
	// leaseLeft is how long the lease still runs (0 when not live).
	leaseLeft time.Duration
}

// decision is what the broker wants done with a locked grant.
type decision int

const (
	// decDone: nothing to write (use the stored token, report an error, wait).
	decDone decision = iota
	// decLease: take the refresh lease.
	decLease
	// decReauth: mark the grant needs_reauth (reason in the verdict).
	decReauth
)

type verdict struct {
	decision decision
	reason   string
}

// grantSelector names a grant by id, or by upstream and user.
type grantSelector struct {
	id         uuid.UUID
	upstreamID uuid.UUID
	issuer     string
	subject    string
}

const lockedColumns = grantColumns + `, access_token_sealed, refresh_token_sealed, COALESCE(lease_owner, ''),
	COALESCE(lease_expires_at > now(), false), refresh_started_at IS NOT NULL,
	GREATEST(COALESCE(EXTRACT(EPOCH FROM lease_expires_at - now()), 0), 0)`

// lockGrant reads the grant FOR UPDATE in a short transaction, lets decide
// choose, and applies the choice: taking the lease (lease owner and expiry
// set, refresh_attempts incremented, refresh_started_at set) or marking the
// grant needs_reauth. It returns the row as it is after the change, and
// ErrNotFound when there is no grant. No connection is held after it returns.
func (v *Vault) lockGrant(ctx context.Context, tenantID uuid.UUID, sel grantSelector, owner string, lease time.Duration,
	decide func(*lockedGrant) verdict,
) (*lockedGrant, verdict, error) {
	var lg *lockedGrant
	var vd verdict
	err := v.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var row pgx.Row
		if sel.id != uuid.Nil {
			row = tx.QueryRow(ctx, "SELECT "+lockedColumns+" FROM grants WHERE id = $1 FOR UPDATE", sel.id)
		} else {
			row = tx.QueryRow(ctx, "SELECT "+lockedColumns+` FROM grants
				WHERE upstream_id = $1 AND idp_issuer = $2 AND subject = $3 FOR UPDATE`, sel.upstreamID, sel.issuer, sel.subject)
		}
		var err error
		if lg, err = scanLocked(row); err != nil {
			return err
		}
		vd = decide(lg)
		switch vd.decision {
		case decLease:
			var secs float64
			err := tx.QueryRow(ctx, `UPDATE grants SET lease_owner = $2, lease_expires_at = now() + $3::float8 * interval '1 millisecond',
				refresh_attempts = refresh_attempts + 1, refresh_started_at = now(), updated_at = now()
				WHERE id = $1 RETURNING refresh_attempts, EXTRACT(EPOCH FROM lease_expires_at - now())`,
				lg.ID, owner, lease.Milliseconds()).Scan(&lg.RefreshAttempts, &secs)
			if err != nil {
				return err
			}
			lg.leaseOwner, lg.leaseLive, lg.refreshPending = owner, true, true
			lg.leaseLeft = time.Duration(secs * float64(time.Second))
		case decReauth:
			if _, err := v.markNeedsReauthTx(ctx, tx, tenantID, lg.ID, lg.Version, vd.reason); err != nil {
				return err
			}
			lg.Status, lg.NeedsReauthReason = StatusNeedsReauth, vd.reason
		}
		return nil
	})
	if err != nil {
		return nil, verdict{}, fmt.Errorf("consent: lock grant: %w", err)
	}
	return lg, vd, nil
}

func scanLocked(row pgx.Row) (*lockedGrant, error) {
	lg := &lockedGrant{}
	var secs float64
	g, err := scanGrant(row, &lg.accessSealed, &lg.refreshSealed, &lg.leaseOwner, &lg.leaseLive, &lg.refreshPending, &secs)
	if err != nil {
		return nil, err
	}
	lg.Grant = g
	lg.leaseLeft = time.Duration(secs * float64(time.Second))
	return lg, nil
}

// refreshResult is what a successful refresh writes.
type refreshResult struct {
	// full: the new access token replaces the grant's (false for a narrowed
	// refresh, which only rotates the refresh token).
	full          bool
	accessToken   string
	accessExpires time.Time
	accessScopes  []string
	// refreshToken is the rotated refresh token, "" when the upstream kept
	// the old one.
	refreshToken string
}

// commitRefresh writes a refresh's outcome with a compare-and-swap on the
// grant's version and lease owner, clears the lease and the in-flight
// marker, and (for a full refresh) enqueues the next refresh job, all in
// one transaction. It returns ErrLeaseLost when the swap fails: nothing is
// overwritten.
func (v *Vault) commitRefresh(ctx context.Context, tenantID uuid.UUID, lg *lockedGrant, owner string, res refreshResult) (Grant, error) {
	access := res.accessToken
	if !res.full {
		access = "" // a narrowed token stays in memory only
	}
	at, rt, err := v.sealTokens(ctx, tenantID, lg.ID, access, res.refreshToken)
	if err != nil {
		return Grant{}, fmt.Errorf("consent: seal refreshed tokens: %w", err)
	}
	var g Grant
	err = v.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		g, err = scanGrant(tx.QueryRow(ctx, `UPDATE grants SET
			access_token_sealed = COALESCE($4, access_token_sealed),
			access_expires_at = CASE WHEN $4::bytea IS NULL THEN access_expires_at ELSE $5 END,
			access_scopes = CASE WHEN $4::bytea IS NULL THEN access_scopes ELSE $6 END,
			refresh_token_sealed = COALESCE($7, refresh_token_sealed),
			version = version + 1, lease_owner = NULL, lease_expires_at = NULL, refresh_started_at = NULL,
			refresh_attempts = 0, last_refresh_error = '', last_refreshed_at = now(), updated_at = now()
			WHERE id = $1 AND version = $2 AND lease_owner = $3 AND status = 'active'
			RETURNING `+grantColumns, lg.ID, lg.Version, owner, at, res.accessExpires, normScopes(res.accessScopes), rt))
		if err != nil {
			return err
		}
		if res.full {
			return v.enqueueRefresh(ctx, tx, g)
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return Grant{}, fmt.Errorf("consent: commit refresh of grant %s (version %d): %w", lg.ID, lg.Version, ErrLeaseLost)
	}
	if err != nil {
		return Grant{}, fmt.Errorf("consent: commit refresh of grant %s: %w", lg.ID, err)
	}
	return g, nil
}

// releaseLease ends a refresh whose outcome is known and did not consume the
// refresh token (the upstream answered 5xx/429/4xx, or the request never
// left): this attempt no longer counts as uncertain, earlier uncertain ones
// still do.
func (v *Vault) releaseLease(ctx context.Context, tenantID, grantID uuid.UUID, owner, errText string) error {
	err := v.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE grants SET lease_owner = NULL, lease_expires_at = NULL,
			refresh_attempts = GREATEST(refresh_attempts - 1, 0),
			refresh_started_at = CASE WHEN refresh_attempts <= 1 THEN NULL ELSE refresh_started_at END,
			last_refresh_error = $3, updated_at = now()
			WHERE id = $1 AND lease_owner = $2`, grantID, owner, errText)
		return err
	})
	if err != nil {
		return fmt.Errorf("consent: release lease of grant %s: %w", grantID, err)
	}
	return nil
}

// recordLost records a refresh whose answer was lost after the request was
// sent. The lease is kept until it expires (so the upstream is done with the
// first request before anyone presents the token again) and the in-flight
// marker stays. When this was already the second uncertain presentation,
// the grant turns needs_reauth at once; it reports whether it did.
func (v *Vault) recordLost(ctx context.Context, tenantID uuid.UUID, lg *lockedGrant, owner, errText string) (bool, error) {
	reauth := false
	err := v.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var attempts int
		err := tx.QueryRow(ctx, `UPDATE grants SET last_refresh_error = $3, updated_at = now()
			WHERE id = $1 AND lease_owner = $2 AND status = 'active' RETURNING refresh_attempts`, lg.ID, owner, errText).Scan(&attempts)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if attempts >= maxUncertainAttempts {
			reauth, err = v.markNeedsReauthTx(ctx, tx, tenantID, lg.ID, lg.Version, NeedsReauthRefreshLost)
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("consent: record lost refresh of grant %s: %w", lg.ID, err)
	}
	return reauth, nil
}

// maxUncertainAttempts is how many presentations of one refresh token may end
// without an answer before the grant turns needs_reauth: the first attempt
// and one retry.
const maxUncertainAttempts = 2

// markInvalidGrant turns the grant needs_reauth after the upstream refused
// its refresh token, if the grant is still at the version that was refused.
func (v *Vault) markInvalidGrant(ctx context.Context, tenantID uuid.UUID, lg *lockedGrant) error {
	return v.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		_, err := v.markNeedsReauthTx(ctx, tx, tenantID, lg.ID, lg.Version, NeedsReauthInvalidGrant)
		return err
	})
}
