package tenants

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	lsql "github.com/locksmithhq/locksmith/sql"
)

// UserAction is one tool call an agent made in a user's name, as the audit
// trail recorded it, for the user's own "my connections" page.
type UserAction struct {
	At       time.Time
	Agent    string
	Tool     string
	Upstream string
	// UpstreamName is the upstream's name when the call was made ("" when
	// the call named no upstream).
	UpstreamName string
	// Decision is allow, deny or approval ("" when none was recorded).
	Decision string
	Reason   string
	// Status is the upstream's HTTP status of the call's outcome, 0 when no
	// outcome was recorded; Error is the outcome's error, if any.
	Status int
	Error  string
}

// UserActions returns the user's most recent tool calls in the tenant
// (newest first, at most limit, 1–100), matched on the IdP issuer and
// subject exactly. It reads the audit trail; before the trail exists (its
// migration not applied) it returns no actions and no error.
func (s *Service) UserActions(ctx context.Context, tenantID uuid.UUID, issuer, subject string, limit int) ([]UserAction, error) {
	if issuer == "" || subject == "" {
		return nil, Invalid("subject", "the user's issuer and subject are required")
	}
	limit = min(max(limit, 1), 100)
	var out []UserAction
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT c.at, c.agent, c.tool, c.upstream, c.upstream_name, c.decision, c.reason,
				COALESCE(o.status, 0), COALESCE(o.error, '')
			FROM audit_events c LEFT JOIN LATERAL (
				SELECT status, error FROM audit_events o
				WHERE o.tenant_id = c.tenant_id AND o.kind = 'outcome' AND o.intent_seq = c.seq
				ORDER BY o.seq LIMIT 1) o ON true
			WHERE c.tenant_id = $1 AND c.kind = 'call' AND c.user_subject = $2 AND c.user_issuer = $3
			ORDER BY c.seq DESC LIMIT $4`, tenantID, subject, issuer, limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (UserAction, error) {
			var a UserAction
			err := r.Scan(&a.At, &a.Agent, &a.Tool, &a.Upstream, &a.UpstreamName, &a.Decision, &a.Reason, &a.Status, &a.Error)
			return a, err
		})
		return err
	})
	if lsql.IsUndefinedTable(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tenants: user actions: %w", translate(err))
	}
	return out, nil
}
