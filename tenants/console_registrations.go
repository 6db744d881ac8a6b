package tenants

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// ConsoleActivity says how far agents have come in a tenant, for the last
// steps of the console's onboarding checklist.
type ConsoleActivity struct {
	// AgentConnected is true once an agent presented a valid token and either
	// asked for a tool call (recorded in the audit trail) or led a user to
	// grant access to an upstream.
	AgentConnected bool
	// CallSucceeded is true once a tool call reached its upstream and got a
	// successful answer (HTTP status below 400, no error).
	CallSucceeded bool
}

// ConsoleActivity reads the tenant's audit trail and grants for the
// onboarding checklist. Read-only.
func (s *Service) ConsoleActivity(ctx context.Context, tenantID uuid.UUID) (ConsoleActivity, error) {
	var a ConsoleActivity
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT
			EXISTS (SELECT 1 FROM audit_events WHERE tenant_id = $1 AND kind = 'call')
				OR EXISTS (SELECT 1 FROM grants WHERE tenant_id = $1),
			EXISTS (SELECT 1 FROM audit_events WHERE tenant_id = $1 AND kind = 'outcome' AND status < 400 AND error = '')`,
			tenantID).Scan(&a.AgentConnected, &a.CallSucceeded)
	})
	return a, err
}
