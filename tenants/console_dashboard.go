package tenants

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// recentDenialsLimit is how many denials the dashboard lists.
const recentDenialsLimit = 5

// Dashboard is what the console's Overview shows about agent activity.
type Dashboard struct {
	// CallsPerDay has one entry per UTC day, oldest first, today last,
	// zero-filled.
	CallsPerDay []DayCount
	// ActiveGrants counts grants in status 'active'.
	ActiveGrants int
	// PendingApprovals counts approval requests still waiting (pending and
	// not expired).
	PendingApprovals int
	// RecentDenials are the newest denied calls in the window, newest first.
	RecentDenials []Denial
}

// DayCount is the number of tool calls decided on one UTC day. Calls held
// for approval are not counted (their later decision is).
type DayCount struct {
	Day     time.Time
	Allowed int
	Denied  int
}

// Denial is one denied tool call.
type Denial struct {
	At        time.Time
	UserEmail string
	Agent     string
	Tool      string
	// Reason is the policy's reason, or the rule when no reason was given.
	Reason string
}

// Dashboard reads the tenant's audit trail, grants and approval requests
// for the last days UTC days (today included). Read-only.
func (s *Service) Dashboard(ctx context.Context, tenantID uuid.UUID, days int) (Dashboard, error) {
	if days < 1 || days > 366 {
		return Dashboard{}, errors.New("tenants: dashboard: days must be between 1 and 366")
	}
	today := time.Now().UTC().Truncate(24 * time.Hour)
	from := today.AddDate(0, 0, -(days - 1))
	d := Dashboard{CallsPerDay: make([]DayCount, days)}
	for i := range d.CallsPerDay {
		d.CallsPerDay[i].Day = from.AddDate(0, 0, i)
	}
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT (at AT TIME ZONE 'UTC')::date AS day,
				count(*) FILTER (WHERE decision = 'allow'),
				count(*) FILTER (WHERE decision = 'deny')
			FROM audit_events
			WHERE tenant_id = $1 AND kind = 'call' AND at >= $2
			GROUP BY day`, tenantID, from)
		if err != nil {
			return err
		}
		for rows.Next() {
			var day time.Time
			var allowed, denied int
			if err := rows.Scan(&day, &allowed, &denied); err != nil {
				rows.Close()
				return err
			}
			i := int(time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC).Sub(from) / (24 * time.Hour))
			if i >= 0 && i < days {
				d.CallsPerDay[i].Allowed += allowed
				d.CallsPerDay[i].Denied += denied
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM grants WHERE tenant_id = $1 AND status = 'active'),
			(SELECT count(*) FROM approval_requests WHERE tenant_id = $1 AND status = 'pending' AND expires_at > now())`,
			tenantID).Scan(&d.ActiveGrants, &d.PendingApprovals); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT at, user_email, agent, tool, CASE WHEN reason <> '' THEN reason ELSE rule END
			FROM audit_events
			WHERE tenant_id = $1 AND kind = 'call' AND decision = 'deny' AND at >= $2
			ORDER BY seq DESC LIMIT $3`, tenantID, from, recentDenialsLimit)
		if err != nil {
			return err
		}
		d.RecentDenials, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Denial, error) {
			var x Denial
			err := r.Scan(&x.At, &x.UserEmail, &x.Agent, &x.Tool, &x.Reason)
			return x, err
		})
		return err
	})
	if err != nil {
		return Dashboard{}, err
	}
	return d, nil
}
