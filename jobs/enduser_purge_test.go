package jobs_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/jobs"
	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
)

// purgeTenant is a tenant with end-user sessions and flow states that
// expire at the given offsets from now, named by what the purge must do.
type purgeTenant struct {
	id uuid.UUID
}

var purgeRows = []struct {
	name    string
	table   string
	expires time.Duration
	kept    bool
}{
	{"live session", "enduser_sessions", time.Hour, true},
	{"session expired within the grace", "enduser_sessions", -time.Hour, true},
	{"old session", "enduser_sessions", -tenants.EndUserSessionGrace - time.Minute, false},
	{"live state", "enduser_states", 5 * time.Minute, true},
	{"state expired within the grace", "enduser_states", -30 * time.Minute, true},
	{"old state", "enduser_states", -tenants.EndUserStateGrace - time.Minute, false},
}

func newPurgeTenant(t *testing.T, db *lsql.DB) purgeTenant {
	t.Helper()
	ctx := context.Background()
	pt := purgeTenant{id: uuid.New()}
	slug := "p-" + strings.ReplaceAll(pt.id.String(), "-", "")[:12]
	require.NoError(t, db.InTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, 'Purge test')", pt.id, slug)
		return err
	}))
	require.NoError(t, db.InTenant(ctx, pt.id, func(tx pgx.Tx) error {
		for _, r := range purgeRows {
			var err error
			if r.table == "enduser_sessions" {
				_, err = tx.Exec(ctx, `INSERT INTO enduser_sessions (tenant_id, token_hash, idp_issuer, subject, email, expires_at)
					VALUES ($1, $2, 'https://idp.example.test', 'user', $3, $4)`, pt.id, []byte(uuid.NewString()), r.name, time.Now().Add(r.expires))
			} else {
				_, err = tx.Exec(ctx, `INSERT INTO enduser_states (tenant_id, kind, state_hash, return_to, expires_at)
					VALUES ($1, 'signin', $2, $3, $4)`, pt.id, []byte(uuid.NewString()), r.name, time.Now().Add(r.expires))
			}
			if err != nil {
				return err
			}
		}
		return nil
	}))
	return pt
}

// left returns the names of the tenant's rows still there.
func (pt purgeTenant) left(t *testing.T, db *lsql.DB) []string {
	t.Helper()
	ctx := context.Background()
	var names []string
	require.NoError(t, db.InTenant(ctx, pt.id, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT email FROM enduser_sessions WHERE tenant_id = $1
			UNION ALL SELECT return_to FROM enduser_states WHERE tenant_id = $1`, pt.id)
		if err != nil {
			return err
		}
		names, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	}))
	return names
}

func keptNames() []string {
	var out []string
	for _, r := range purgeRows {
		if r.kept {
			out = append(out, r.name)
		}
	}
	return out
}

// TestEndUserPurge purges in every tenant (each under its own row-level
// security) the expired sessions and states past their grace; live ones
// and those just expired stay. Then the periodic job's worker, run as River
// would, finds nothing more to delete (it is idempotent).
func TestEndUserPurge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := sqltest.DB(t)
	logger := slog.New(slog.DiscardHandler)
	a, b := newPurgeTenant(t, db), newPurgeTenant(t, db)

	sessions, states, err := tenants.PurgeEndUserState(ctx, db, time.Now())
	require.NoError(t, err)
	require.GreaterOrEqual(t, sessions, int64(2), "one old session in each tenant")
	require.GreaterOrEqual(t, states, int64(2), "one old state in each tenant")
	for _, pt := range []purgeTenant{a, b} {
		require.ElementsMatch(t, keptNames(), pt.left(t, db))
	}

	worker := jobs.NewEndUserPurgeWorker(db, logger)
	tw := rivertest.NewWorker(t, riverpgxv5.New(nil), &river.Config{Logger: logger}, worker)
	tx, err := db.Pool().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	res, err := tw.Work(ctx, t, tx, jobs.EndUserPurgeArgs{}, nil)
	require.NoError(t, err)
	require.Equal(t, river.EventKindJobCompleted, res.EventKind)
	for _, pt := range []purgeTenant{a, b} {
		require.ElementsMatch(t, keptNames(), pt.left(t, db))
	}
}
