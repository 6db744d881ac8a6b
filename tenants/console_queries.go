package tenants

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// SetupCounts says how far a tenant's setup has come, for the console's
// onboarding checklist.
type SetupCounts struct {
	IdPs      int
	Upstreams int
	Tools     int
}

// SetupCounts counts the tenant's IdP registrations, upstreams and enabled
// tools. Read-only.
func (s *Service) SetupCounts(ctx context.Context, tenantID uuid.UUID) (SetupCounts, error) {
	var c SetupCounts
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM idp_registrations WHERE tenant_id = $1),
			(SELECT count(*) FROM upstreams WHERE tenant_id = $1),
			(SELECT count(*) FROM tools WHERE tenant_id = $1 AND enabled)`, tenantID).Scan(&c.IdPs, &c.Upstreams, &c.Tools)
	})
	return c, err
}
