package consent

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/locksmithhq/locksmith/tenants"
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
// upstream: those of destroyed grants, and single-use tokens (RevokeAfterUse)
// handed out and not yet revoked (in a call, or left to their revoke job).
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

// RevokeAtUpstream revokes the token kept in a grant_revocations row (of a
// destroyed grant, or a single-use token AfterUse did not revoke) at the
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
	auth, err := b.revocationAuth(ctx, up)
	if err != nil {
		return fmt.Errorf("consent: revocation %s: %w", r.id, err)
	}
	tok, err := b.vault.sealer.Open(ctx, tenantID, r.id, fieldRevocationToken, r.sealed)
	if err != nil {
		return fmt.Errorf("consent: revocation %s: open token: %w", r.id, err)
	}
	err = b.revokeToken(ctx, up.RevocationURL, auth, string(tok), r.hint)
	clear(tok)
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

// revocationAuth is how Locksmith authenticates at up's revocation
// endpoint: as the client the token was issued to. That is the upstream's
// client for consent grants, and Locksmith's client at the tenant IdP for
// exchanged tokens (the endpoint is then the IdP's).
func (b *Broker) revocationAuth(ctx context.Context, up tenants.Upstream) (clientAuth, error) {
	if up.AuthMode == tenants.AuthTokenExchange {
		if b.exchange == nil {
			return clientAuth{}, errors.New("no identity provider exchange client is configured")
		}
		ec, err := b.exchange.ExchangeClient(ctx, up.TenantID)
		if err != nil {
			return clientAuth{}, fmt.Errorf("identity provider: %w", err)
		}
		return clientAuth{id: ec.ClientID, secret: ec.ClientSecret, post: up.ExchangeVariant == tenants.ExchangeEntraOBO}, nil
	}
	secret, err := b.upstreams.UpstreamClientSecret(ctx, up.TenantID, up.ID)
	if err != nil {
		return clientAuth{}, fmt.Errorf("client secret: %w", err)
	}
	return clientAuth{id: up.ClientID, secret: secret}, nil
}

// revokeToken is the one RFC 7009 revocation request: token with
// token_type_hint hint, POSTed to endpoint through the egress client as
// auth, bounded by RefreshTimeout. Errors are postForm's; none holds the
// token.
func (b *Broker) revokeToken(ctx context.Context, endpoint string, auth clientAuth, token, hint string) error {
	form := url.Values{"token": {token}, "token_type_hint": {hint}}
	rctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	_, _, err := b.postForm(rctx, "revocation", endpoint, auth, form)
	return err
}

// RevokeAfterUseBackstop is how long after a single-use token is handed
// out its revoke job runs (RevokeJobArgs, scheduled in the transaction that
// keeps the token sealed in grant_revocations). It is the backstop for
// AfterUse: when the revocation right after the call failed, or the process
// died before it, the job revokes the token then, retried with backoff like
// every revocation. It must be longer than the longest call (relayed MCP
// calls are bounded to 60 s), since the job revokes the token whether or
// not its call is over; when AfterUse revoked the token it deleted the row
// and the job finds nothing to do.
const RevokeAfterUseBackstop = 2 * time.Minute

// opHoldRevocation is the RetryableError.Op of a single-use token that
// could not be recorded for revocation.
const opHoldRevocation = "revoke after use"

// maxAfterUse bounds the revocations after use in flight per broker. Beyond
// it a token is not revoked right away (logged and counted as failed): its
// revoke job revokes it after RevokeAfterUseBackstop, and a dead revocation
// endpoint can't pile up goroutines.
const maxAfterUse = 256

// heldTokens maps the single-use tokens handed out and not yet passed to
// AfterUse (by SHA-256 of the token, never the token) to their
// grant_revocations rows. An entry whose token expired is dropped when the
// map grows: its row stays for the revoke job.
type heldTokens struct {
	mu      sync.Mutex
	m       map[[32]byte]heldToken
	pruneAt int
}

type heldToken struct {
	revocationID uuid.UUID
	expires      time.Time
}

func (h *heldTokens) add(token string, revocationID uuid.UUID, expires, now time.Time) {
	k := sha256.Sum256([]byte(token))
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.m) >= h.pruneAt {
		for k, e := range h.m {
			if !e.expires.After(now) {
				delete(h.m, k)
			}
		}
		h.pruneAt = max(1024, 2*len(h.m))
	}
	h.m[k] = heldToken{revocationID: revocationID, expires: expires}
}

// take returns and forgets the grant_revocations row of token; uuid.Nil
// when there is none.
func (h *heldTokens) take(token string) uuid.UUID {
	k := sha256.Sum256([]byte(token))
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.m[k]
	if !ok {
		return uuid.Nil
	}
	delete(h.m, k)
	return e.revocationID
}

// holdSingleUse makes the revocation of the single-use token tok of up
// durable before it is handed out: the token sealed in a grant_revocations
// row and its revoke job scheduled RevokeAfterUseBackstop later, in one
// transaction. When that fails the token is not handed out (a token we
// can't promise to revoke isn't used): it is revoked at once, in the
// background, and the caller gets a *RetryableError.
func (b *Broker) holdSingleUse(ctx context.Context, up tenants.Upstream, tok Token) (Token, error) {
	now := b.now()
	id, err := b.vault.holdAfterUse(ctx, up.TenantID, tok.GrantID, up.ID, tok.Value, now.Add(RevokeAfterUseBackstop))
	if err != nil {
		b.AfterUse(ctx, up.TenantID, up.ID, Token{Value: tok.Value, RevokeAfterUse: true})
		return Token{}, &RetryableError{Op: opHoldRevocation, Err: fmt.Errorf("upstream %s: %w", up.Slug, err)}
	}
	tok.RevokeAfterUse = true
	b.held.add(tok.Value, id, tok.ExpiresAt, now)
	return tok, nil
}

// AfterUseStats counts what AfterUse did since the broker was made.
type AfterUseStats struct {
	// Revoked counts single-use tokens the upstream's revocation endpoint
	// accepted right after use (RFC 7009 answers 200 for tokens it doesn't
	// know, too), or right away when one could not be handed out.
	Revoked int64
	// Failed counts single-use tokens that could not be revoked right
	// after use: endpoint down, 5xx, timeout, refused, no revocation
	// endpoint, or too many revocations in flight. Each is logged (without
	// the token) and left to its revoke job (RevokeAfterUseBackstop), which
	// retries with backoff; those outcomes are the job's, not counted here.
	Failed int64
}

// AfterUseStats returns the counters of AfterUse; safe for concurrent use.
func (b *Broker) AfterUseStats() AfterUseStats {
	return AfterUseStats{Revoked: b.afterOK.Load(), Failed: b.afterFailed.Load()}
}

// AfterUse ends the call tok was handed out for by Token(ctx, tenantID,
// upstreamID, …). A token with RevokeAfterUse is revoked at the upstream's
// revocation endpoint (RFC 7009, token_type_hint=access_token, through the
// egress client, as the client it was issued to) in a background goroutine
// bounded by RefreshTimeout; any other token is left alone. AfterUse
// returns at once and never fails: it adds no latency to the call. Once
// the upstream accepted the revocation, the token's grant_revocations row
// is deleted (its scheduled job then does nothing); a revocation that fails
// is logged (never the token) and counted (AfterUseStats), and its row
// stays for the revoke job. Close waits for revocations in flight; after
// Close, AfterUse revokes before it returns. ctx's values are kept, its
// cancellation is not.
//
// A process that dies before AfterUse, or before its revocation, leaves the
// token to its revoke job, which runs RevokeAfterUseBackstop after the
// token was handed out, on any instance.
func (b *Broker) AfterUse(ctx context.Context, tenantID, upstreamID uuid.UUID, tok Token) {
	if !tok.RevokeAfterUse || tok.Value == "" {
		return
	}
	revocationID := b.held.take(tok.Value)
	ctx = context.WithoutCancel(ctx)
	b.afterMu.Lock()
	if b.afterClosed {
		b.afterMu.Unlock()
		b.revokeAfterUse(ctx, tenantID, upstreamID, tok.Value, revocationID)
		return
	}
	select {
	case b.afterSem <- struct{}{}:
	default:
		b.afterMu.Unlock()
		b.afterUseFailed(ctx, tenantID, upstreamID, revocationID, errors.New("too many revocations in flight"))
		return
	}
	b.afterWG.Add(1)
	b.afterMu.Unlock()
	go func() {
		defer func() {
			<-b.afterSem
			b.afterWG.Done()
		}()
		b.revokeAfterUse(ctx, tenantID, upstreamID, tok.Value, revocationID)
	}()
}

// revokeAfterUse revokes a single-use access token, records the outcome
// and, once it is revoked, deletes its grant_revocations row (revocationID;
// uuid.Nil when it has none).
func (b *Broker) revokeAfterUse(ctx context.Context, tenantID, upstreamID uuid.UUID, token string, revocationID uuid.UUID) {
	rctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	up, err := b.upstream(rctx, tenantID, upstreamID)
	if err == nil && up.RevocationURL == "" {
		err = errors.New("the upstream has no revocation endpoint")
	}
	var auth clientAuth
	if err == nil {
		auth, err = b.revocationAuth(rctx, up)
	}
	if err == nil {
		err = b.revokeToken(rctx, up.RevocationURL, auth, token, "access_token")
	}
	if err != nil {
		b.afterUseFailed(ctx, tenantID, upstreamID, revocationID, err)
		return
	}
	b.afterOK.Add(1)
	b.logger.DebugContext(ctx, "single-use token revoked", "tenant_id", tenantID, "upstream_id", upstreamID)
	if revocationID == uuid.Nil {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	if err := b.vault.finishRevocation(dctx, tenantID, revocationID); err != nil {
		// Harmless: the job revokes it once more (RFC 7009 revocation is
		// idempotent) and deletes the row.
		b.logger.WarnContext(ctx, "delete revocation of a revoked single-use token failed; its job will revoke it again",
			"tenant_id", tenantID, "upstream_id", upstreamID, "err", err)
	}
}

func (b *Broker) afterUseFailed(ctx context.Context, tenantID, upstreamID, revocationID uuid.UUID, err error) {
	b.afterFailed.Add(1)
	if revocationID == uuid.Nil {
		b.logger.WarnContext(ctx, "revoke single-use token failed; it stays valid until it expires",
			"tenant_id", tenantID, "upstream_id", upstreamID, "err", err)
		return
	}
	b.logger.WarnContext(ctx, "revoke single-use token failed; its revoke job will retry",
		"tenant_id", tenantID, "upstream_id", upstreamID, "revocation_id", revocationID, "err", err)
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
