package mcp

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/tenants"
)

// TenantsRegistry adapts *tenants.Service to [Registry].
type TenantsRegistry struct {
	Service *tenants.Service
}

// TenantBySlug implements [Registry].
func (r TenantsRegistry) TenantBySlug(ctx context.Context, slug string) (tenants.Tenant, error) {
	return r.Service.TenantBySlug(ctx, slug)
}

// IdP implements [Registry].
func (r TenantsRegistry) IdP(ctx context.Context, tenantID uuid.UUID) (tenants.IdP, error) {
	return r.Service.IdP(ctx, tenantID)
}

// Catalog implements [Registry]: the tenant's upstreams and tools.
func (r TenantsRegistry) Catalog(ctx context.Context, tenantID uuid.UUID) ([]tenants.Upstream, []tenants.Tool, error) {
	ups, err := r.Service.Upstreams(ctx, tenantID)
	if err != nil {
		return nil, nil, err
	}
	tools, err := r.Service.Tools(ctx, tenantID)
	if err != nil {
		return nil, nil, err
	}
	return ups, tools, nil
}

// ConsentBroker adapts the consent package's broker to [Broker], mapping
// its typed errors to the endpoint's.
type ConsentBroker struct {
	Broker *consent.Broker
}

// Token implements [Broker].
func (b ConsentBroker) Token(ctx context.Context, tenantID, upstreamID uuid.UUID, u User, scopes []string) (UpstreamToken, error) {
	tok, err := b.Broker.Token(ctx, tenantID, upstreamID, consent.User{Issuer: u.Issuer, Subject: u.Subject, Email: u.Email, RawTokenA: u.RawTokenA}, scopes)
	if err == nil {
		return UpstreamToken{Value: tok.Value, Scopes: tok.Scopes, Narrowed: tok.Narrowed, ExpiresAt: tok.ExpiresAt, RevokeAfterUse: tok.RevokeAfterUse}, nil
	}
	var cre *consent.ConsentRequiredError
	var re *consent.RetryableError
	switch {
	case errors.As(err, &cre):
		return UpstreamToken{}, &ConsentRequiredError{ConsentURL: cre.ConsentURL, Reason: cre.Reason, MissingScopes: cre.MissingScopes}
	case errors.As(err, &re):
		return UpstreamToken{}, &RetryableError{Err: err, RetryAfter: re.RetryAfter}
	case errors.Is(err, consent.ErrNotBrokered):
		return UpstreamToken{}, nil // auth mode none: no credential
	}
	return UpstreamToken{}, fmt.Errorf("mcp: token for upstream %s: %w", upstreamID, err)
}

// AfterUse implements [Broker].
func (b ConsentBroker) AfterUse(ctx context.Context, tenantID, upstreamID uuid.UUID, tok UpstreamToken) {
	if !tok.RevokeAfterUse {
		return
	}
	b.Broker.AfterUse(ctx, tenantID, upstreamID, consent.Token{Value: tok.Value, Scopes: tok.Scopes, Narrowed: tok.Narrowed,
		ExpiresAt: tok.ExpiresAt, RevokeAfterUse: true})
}
