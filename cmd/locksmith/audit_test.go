package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants/audit"
)

// TestAuditVerifyCommand: `locksmith audit verify` passes on an intact
// trail and exits 1 naming the event after a row is edited with SQL.
func TestAuditVerifyCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := sqltest.DB(t)
	var tenant uuid.UUID
	slug := "cli-" + uuid.NewString()[:8]
	require.NoError(t, db.Pool().QueryRow(ctx, "INSERT INTO tenants (slug, name) VALUES ($1, 'CLI audit') RETURNING id", slug).Scan(&tenant))
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	w, err := audit.NewWriter(audit.WriterConfig{DB: db, Logger: logger})
	require.NoError(t, err)
	for range 3 {
		_, err := w.Intent(ctx, tenant, audit.Call{Tool: "tasks.list", Agent: "claude-desktop", Decision: audit.DecisionAllow})
		require.NoError(t, err)
	}
	require.NoError(t, w.Close(ctx))

	env := map[string]string{"DATABASE_URL": sqltest.OwnerURL(t)}
	runAudit := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(ctx, append([]string{"audit"}, args...), func(k string) string { return env[k] }, &stdout, &stderr, nil)
		return code, stdout.String(), stderr.String()
	}
	code, out, errOut := runAudit("seal", "--tenant", slug)
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, slug+": sealed 3 events")
	code, out, errOut = runAudit("verify", "--tenant", slug)
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, slug+": ok — 3 events, 3 sealed")

	owner, err := pgx.Connect(ctx, sqltest.OwnerURL(t))
	require.NoError(t, err)
	defer owner.Close(ctx)
	_, err = owner.Exec(ctx, "UPDATE audit_events SET agent = 'someone-else' WHERE tenant_id = $1 AND seq = 2", tenant)
	require.NoError(t, err)
	code, out, errOut = runAudit("verify", "--tenant", slug)
	require.Equal(t, exitFail, code)
	require.Contains(t, out, slug+": event 2 edited")
	require.Contains(t, errOut, "failed verification")

	code, _, errOut = runAudit("verify", "--tenant", "no-such-tenant")
	require.Equal(t, exitConfig, code)
	require.Contains(t, errOut, "no tenant with slug")
	code, _, _ = runAudit("frobnicate")
	require.Equal(t, exitConfig, code)
}
