package consent

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// revocation is a grant_revocations row.
type revocation struct {
	id, grantID, upstreamID uuid.UUID
	sealed                  []byte
	hint                    string
	attempts                int
}

func (v *Vault) revocation(ctx context.Context, tenantID, id uuid.UUID) (revocation, error) {
	var r revocation
	err := v.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT id, grant_id, upstream_id, token_sealed, token_type_hint, attempts
			FROM grant_revocations WHERE id = $1`, id).Scan(&r.id, &r.grantID, &r.upstreamID, &r.sealed, &r.hint, &r.attempts)
	})
	return r, err
}

func (v *Vault) finishRevocation(ctx context.Context, tenantID, id uuid.UUID) error {
	return v.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM grant_revocations WHERE id = $1", id)
		return err
	})
}

func (v *Vault) failRevocation(ctx context.Context, tenantID, id uuid.UUID, errText string) error {
	return v.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE grant_revocations SET attempts = attempts + 1, last_error = $2 WHERE id = $1", id, errText)
		return err
	})
}

// PendingRevocations counts the tenant's tokens still to be revoked at an
// upstream.
func (v *Vault) PendingRevocations(ctx context.Context, tenantID uuid.UUID) (int, error) {
	var n int
	err := v.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT count(*) FROM grant_revocations").Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("consent: count pending revocations: %w", err)
	}
	return n, nil
}

// RevokeAtUpstream revokes the token kept in a grant_revocations row at the
// upstream's RFC 7009 endpoint, then deletes the row (the revoke job). It is
// idempotent: an unknown row (done already) is success. An upstream without
// a revocation endpoint, or one that refuses the request for good (a 4xx
// other than invalid_client), ends it too, with a warning. 5xx, 429 and
// network errors return a *RetryableError; invalid_client an *OAuthError;
// River retries both with backoff.
func (b *Broker) RevokeAtUpstream(ctx context.Context, tenantID, revocationID uuid.UUID) error {
	r, err := b.vault.revocation(ctx, tenantID, revocationID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("consent: revocation %s: %w", revocationID, err)
	}
	up, err := b.upstream(ctx, tenantID, r.upstreamID)
	if errors.Is(err, ErrNotFound) {
		return b.vault.finishRevocation(ctx, tenantID, r.id)
	}
	if err != nil {
		return err
	}
	if up.RevocationURL == "" {
		b.logger.WarnContext(ctx, "upstream has no revocation endpoint; token dropped locally only", "tenant_id", tenantID, "grant_id", r.grantID)
		return b.vault.finishRevocation(ctx, tenantID, r.id)
	}
	secret, err := b.upstreams.UpstreamClientSecret(ctx, tenantID, up.ID)
	if err != nil {
		return fmt.Errorf("consent: revocation %s: client secret: %w", r.id, err)
	}
	tok, err := b.vault.sealer.Open(ctx, tenantID, r.id, fieldRevocationToken, r.sealed)
	if err != nil {
		return fmt.Errorf("consent: revocation %s: open token: %w", r.id, err)
	}
	form := url.Values{"token": {string(tok)}, "token_type_hint": {r.hint}}
	clear(tok)
	rctx, cancel := context.WithTimeout(ctx, b.timeout)
	_, _, err = b.postForm(rctx, "revocation", up.RevocationURL, clientAuth{id: up.ClientID, secret: secret}, form)
	cancel()
	var oe *OAuthError
	switch {
	case err == nil:
		b.logger.InfoContext(ctx, "token revoked at upstream", "tenant_id", tenantID, "grant_id", r.grantID, "upstream", up.Slug)
		return b.vault.finishRevocation(ctx, tenantID, r.id)
	case errors.As(err, &oe) && oe.Code != "invalid_client" && oe.Status != 401:
		b.logger.WarnContext(ctx, "upstream refused the revocation; giving up", "tenant_id", tenantID, "grant_id", r.grantID, "err", err)
		return b.vault.finishRevocation(ctx, tenantID, r.id)
	default:
		if ferr := b.vault.failRevocation(context.WithoutCancel(ctx), tenantID, r.id, safeErrorText(err)); ferr != nil {
			b.logger.ErrorContext(ctx, "record revocation failure", "tenant_id", tenantID, "err", ferr)
		}
		return err
	}
}

// RetryAfter returns how long to wait before retrying after err, when the
// upstream said so (Retry-After) or a lost refresh blocks the grant; zero
// otherwise.
func RetryAfter(err error) time.Duration {
	var re *RetryableError
	if errors.As(err, &re) {
		return re.RetryAfter
	}
	return 0
}
