package tenants

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	lsql "github.com/locksmithhq/locksmith/sql"
)

// How long expired end-user state is kept before PurgeEndUserState deletes
// it. A flow state is kept an hour past its expiry so that a late visitor of
// its link still reads "this link expired" rather than "unknown"; a session
// a day, as the sign-in's own clean-up does.
const (
	EndUserSessionGrace = 24 * time.Hour
	EndUserStateGrace   = time.Hour
)

// PurgeEndUserState deletes, in every tenant, the end-user sessions
// (enduser_sessions) that expired more than EndUserSessionGrace before now
// and the sign-in and consent flow states (enduser_states) that expired more
// than EndUserStateGrace before now, and returns how many of each. Each
// tenant is purged in its own transaction under row-level security; a
// failing tenant doesn't stop the others, and the errors come back joined.
// It is the periodic job's work: the pages only clean up the tenant they
// serve, and only when someone signs in.
func PurgeEndUserState(ctx context.Context, db *lsql.DB, now time.Time) (sessions, states int64, err error) {
	ids, err := db.TenantIDs(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("tenants: purge end-user state: list tenants: %w", err)
	}
	var errs []error
	for _, id := range ids {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		var n, m int64
		err := db.InTenant(ctx, id, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, "DELETE FROM enduser_sessions WHERE tenant_id = $1 AND expires_at < $2", id, now.Add(-EndUserSessionGrace))
			if err != nil {
				return err
			}
			n = tag.RowsAffected()
			tag, err = tx.Exec(ctx, "DELETE FROM enduser_states WHERE tenant_id = $1 AND expires_at < $2", id, now.Add(-EndUserStateGrace))
			m = tag.RowsAffected()
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("tenants: purge end-user state of tenant %s: %w", id, lsql.Translate(err)))
			continue
		}
		sessions, states = sessions+n, states+m
	}
	return sessions, states, errors.Join(errs...)
}
