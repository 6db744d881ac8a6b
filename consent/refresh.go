package consent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
)

// outcome is what the locked read decided, seen from the caller.
type outcome int

const (
	outUseStored outcome = iota
	outRefresh
	outWait
	outReauth
	outMissing
	outRevoked
	outBlocked
	outSkip
)

// obtain gets a token for key from the vault: the stored access token if it
// is fresh and no narrowing is wanted, else by a refresh under the grant's
// lease. When another instance holds the lease, it polls (10 ms doubling to
// 250 ms, with jitter) until that refresh settles or the wait timeout ends.
func (b *Broker) obtain(ctx context.Context, up tenants.Upstream, key cacheKey, req []string) (Token, error) {
	deadline := b.now().Add(b.wait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	backoff := 10 * time.Millisecond
	sel := grantSelector{upstreamID: up.ID, issuer: key.issuer, subject: key.subject}
	for {
		gen := b.cache.gen.Load()
		now := b.now()
		var out outcome
		var narrow bool
		var missing []string
		var blockedFor time.Duration
		lg, vd, err := b.vault.lockGrant(ctx, key.tenant, sel, b.owner, b.lease, func(lg *lockedGrant) verdict {
			switch lg.Status {
			case StatusRevoked:
				out = outRevoked
				return verdict{}
			case StatusNeedsReauth:
				out = outReauth
				return verdict{}
			}
			if missing = missingScopes(req, lg.Scopes); len(missing) > 0 {
				out = outMissing
				return verdict{}
			}
			narrow = up.RefreshNarrows && len(req) > 0 && len(req) < len(lg.Scopes) && lg.refreshSealed != nil
			if !narrow && lg.accessSealed != nil && lg.AccessExpiresAt != nil && lg.AccessExpiresAt.After(now.Add(b.margin)) {
				out = outUseStored
				return verdict{}
			}
			return b.refreshVerdict(lg, now, &out, &blockedFor)
		})
		if errors.Is(err, ErrNotFound) {
			return Token{}, b.consentRequired(ctx, up, uuid.Nil, ReasonNoGrant, "", req, nil)
		}
		if err != nil {
			return Token{}, err
		}
		switch out {
		case outUseStored:
			tok, err := b.openStored(ctx, key.tenant, lg)
			if err != nil {
				return Token{}, err
			}
			return b.keep(ctx, up, key, req, tok, 0, now, gen)
		case outRefresh:
			tok, err := b.refresh(ctx, up, lg, req, narrow)
			if err != nil {
				return Token{}, err
			}
			return b.keep(ctx, up, key, req, tok, 0, now, gen)
		case outRevoked:
			return Token{}, b.consentRequired(ctx, up, lg.ID, ReasonRevoked, "", unionScopes(lg.Scopes, req), nil)
		case outReauth:
			return Token{}, b.consentRequired(ctx, up, lg.ID, ReasonNeedsReauth, firstNonEmpty(vd.reason, lg.NeedsReauthReason), unionScopes(lg.Scopes, req), nil)
		case outMissing:
			return Token{}, b.consentRequired(ctx, up, lg.ID, ReasonMissingScopes, "", unionScopes(lg.Scopes, req), missing)
		case outBlocked:
			return Token{}, &RetryableError{Op: "refresh", RetryAfter: blockedFor, Err: errors.New("the upstream asked to retry later")}
		case outWait:
			sleep := backoff/2 + rand.N(backoff/2+1)
			if b.now().Add(sleep).After(deadline) {
				return Token{}, &RetryableError{Op: "refresh", RetryAfter: lg.leaseLeft,
					Err: errors.New("a refresh of this grant is in progress elsewhere")}
			}
			t := time.NewTimer(sleep)
			select {
			case <-ctx.Done():
				t.Stop()
				return Token{}, fmt.Errorf("consent: wait for refresh: %w", ctx.Err())
			case <-t.C:
			}
			backoff = min(backoff*2, 250*time.Millisecond)
		}
	}
}

// refreshVerdict decides, for a grant that needs a refresh, whether this
// caller may take the lease. It is the heart of the lost-response and crash
// rules (see the package doc).
func (b *Broker) refreshVerdict(lg *lockedGrant, now time.Time, out *outcome, blockedFor *time.Duration) verdict {
	switch {
	case lg.refreshSealed == nil:
		*out = outReauth
		return verdict{decision: decReauth, reason: NeedsReauthNoRefreshToken}
	case lg.leaseLive && !b.noSingleFlight:
		*out = outWait
		return verdict{}
	case lg.refreshPending && lg.RefreshAttempts >= maxUncertainAttempts:
		*out = outReauth
		return verdict{decision: decReauth, reason: NeedsReauthRefreshLost}
	}
	if d := b.blockedFor(lg.UpstreamID, now); d > 0 {
		*out, *blockedFor = outBlocked, d
		return verdict{}
	}
	*out = outRefresh
	return verdict{decision: decLease}
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// openStored opens the grant's stored access token.
func (b *Broker) openStored(ctx context.Context, tenantID uuid.UUID, lg *lockedGrant) (Token, error) {
	plain, err := b.vault.sealer.Open(ctx, tenantID, lg.ID, fieldAccessToken, lg.accessSealed)
	if err != nil {
		return Token{}, fmt.Errorf("consent: open access token of grant %s: %w", lg.ID, err)
	}
	return Token{Value: string(plain), Scopes: lg.AccessScopes, ExpiresAt: *lg.AccessExpiresAt, GrantID: lg.ID}, nil
}

// refresh presents the grant's refresh token to the upstream. The caller
// holds the lease (lg is the row as leased); no database connection is held
// during the upstream call. See the package doc for every outcome.
func (b *Broker) refresh(ctx context.Context, up tenants.Upstream, lg *lockedGrant, req []string, narrow bool) (Token, error) {
	tenantID := lg.TenantID
	release := func(cause error) error {
		if err := b.vault.releaseLease(context.WithoutCancel(ctx), tenantID, lg.ID, b.owner, safeErrorText(cause)); err != nil {
			b.logger.ErrorContext(ctx, "release refresh lease", "tenant_id", tenantID, "grant_id", lg.ID, "err", err)
		}
		return cause
	}
	secret, err := b.upstreams.UpstreamClientSecret(ctx, tenantID, up.ID)
	if err != nil {
		return Token{}, release(fmt.Errorf("consent: refresh grant %s: client secret: %w", lg.ID, err))
	}
	rt, err := b.vault.sealer.Open(ctx, tenantID, lg.ID, fieldRefreshToken, lg.refreshSealed)
	if err != nil {
		return Token{}, release(fmt.Errorf("consent: refresh grant %s: open refresh token: %w", lg.ID, err))
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {string(rt)}}
	clear(rt)
	if narrow {
		form.Set("scope", strings.Join(req, " "))
	}
	if up.Resource != "" {
		form.Set("resource", up.Resource)
	}
	rctx, cancel := context.WithTimeout(ctx, b.timeout)
	body, _, err := b.postForm(rctx, "refresh", up.TokenURL, clientAuth{id: up.ClientID, secret: secret}, form)
	cancel()
	if err == nil && body.AccessToken == "" {
		err = &RetryableError{Op: "refresh", Uncertain: true, Err: errors.New("the response has no access token")}
	}
	if b.afterUpstream != nil {
		if herr := b.afterUpstream(); herr != nil {
			return Token{}, herr // simulated crash: nothing written, lease and marker stay
		}
	}
	// The outcome is written with a fresh context: a caller that gave up
	// must not leave the grant's state behind the upstream's.
	wctx := context.WithoutCancel(ctx)
	var re *RetryableError
	var oe *OAuthError
	switch {
	case err == nil:
		asked := req
		if !narrow {
			asked = lg.Scopes
		}
		toks := body.tokens(b.now(), asked)
		g, cerr := b.vault.commitRefresh(wctx, tenantID, lg, b.owner, refreshResult{
			full: !narrow, accessToken: toks.AccessToken, accessExpires: toks.ExpiresAt,
			accessScopes: toks.Scopes, refreshToken: toks.RefreshToken,
		})
		if cerr != nil {
			if errors.Is(cerr, ErrLeaseLost) {
				b.logger.ErrorContext(ctx, "refresh lease lost: rotated tokens not written", "tenant_id", tenantID, "grant_id", lg.ID)
				return Token{}, &RetryableError{Op: "refresh", Err: cerr}
			}
			return Token{}, cerr
		}
		b.logger.DebugContext(ctx, "grant refreshed", "tenant_id", tenantID, "grant_id", lg.ID, "narrowed", narrow, "version", g.Version)
		return Token{Value: toks.AccessToken, Scopes: toks.Scopes, Narrowed: narrow, ExpiresAt: toks.ExpiresAt, GrantID: lg.ID}, nil
	case errors.As(err, &oe) && oe.Code == "invalid_grant":
		if merr := b.vault.markInvalidGrant(wctx, tenantID, lg); merr != nil {
			return Token{}, fmt.Errorf("consent: refresh grant %s: %w", lg.ID, merr)
		}
		return Token{}, b.consentRequired(ctx, up, lg.ID, ReasonNeedsReauth, NeedsReauthInvalidGrant, unionScopes(lg.Scopes, req), nil)
	case errors.As(err, &re) && re.Uncertain:
		reauth, lerr := b.vault.recordLost(wctx, tenantID, lg, b.owner, safeErrorText(err))
		if lerr != nil {
			return Token{}, lerr
		}
		b.logger.WarnContext(ctx, "refresh response lost", "tenant_id", tenantID, "grant_id", lg.ID, "attempts", lg.RefreshAttempts, "err", err)
		if reauth {
			return Token{}, b.consentRequired(ctx, up, lg.ID, ReasonNeedsReauth, NeedsReauthRefreshLost, unionScopes(lg.Scopes, req), nil)
		}
		re.RetryAfter = max(re.RetryAfter, lg.leaseLeft)
		return Token{}, err
	case errors.As(err, &re):
		b.block(up.ID, re.RetryAfter)
		return Token{}, release(err)
	default:
		return Token{}, release(err)
	}
}

// RefreshGrant refreshes the grant's access token ahead of its expiry (the
// refresh job). It does nothing, successfully, when the grant is no longer
// at version (someone refreshed or changed it: their write scheduled the
// next job) or is not active. invalid_grant and two lost answers turn the
// grant needs_reauth and also return nil, so a dead grant is not retried.
// A refresh in progress elsewhere, a lost answer, 5xx and 429 return a
// *RetryableError (RetryAfter set when known); River retries with backoff.
func (b *Broker) RefreshGrant(ctx context.Context, tenantID, grantID uuid.UUID, version int64) error {
	now := b.now()
	gen := b.cache.gen.Load()
	var out outcome
	var blockedFor time.Duration
	lg, _, err := b.vault.lockGrant(ctx, tenantID, grantSelector{id: grantID}, b.owner, b.lease, func(lg *lockedGrant) verdict {
		if lg.Status != StatusActive || lg.Version != version {
			out = outSkip
			return verdict{}
		}
		return b.refreshVerdict(lg, now, &out, &blockedFor)
	})
	if errors.Is(err, ErrNotFound) {
		return nil // purged or the upstream was deleted
	}
	if err != nil {
		return err
	}
	switch out {
	case outRefresh:
		up, err := b.upstream(ctx, tenantID, lg.UpstreamID)
		if err != nil {
			if rerr := b.vault.releaseLease(context.WithoutCancel(ctx), tenantID, lg.ID, b.owner, "upstream lookup failed"); rerr != nil {
				b.logger.ErrorContext(ctx, "release refresh lease", "tenant_id", tenantID, "grant_id", lg.ID, "err", rerr)
			}
			return err
		}
		tok, err := b.refresh(ctx, up, lg, nil, false)
		var cre *ConsentRequiredError
		if errors.As(err, &cre) {
			return nil
		}
		if err != nil {
			return err
		}
		// Warm this instance's cache for full-scope requests.
		key := cacheKey{tenant: tenantID, upstream: lg.UpstreamID, issuer: lg.Issuer, subject: lg.Subject, scopes: hashScopes(nil)}
		b.cache.put(key, nil, tenantID, tok, 0, b.margin, now, gen)
		return nil
	case outWait:
		return &RetryableError{Op: "refresh", RetryAfter: lg.leaseLeft, Err: errors.New("a refresh of this grant is in progress elsewhere")}
	case outBlocked:
		return &RetryableError{Op: "refresh", RetryAfter: blockedFor, Err: errors.New("the upstream asked to retry later")}
	default:
		return nil
	}
}
