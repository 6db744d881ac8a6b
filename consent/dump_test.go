package consent_test

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/tasks"
)

// TestDatabaseHoldsNoPlaintextTokens runs every flow that writes tokens
// (consent, full and narrowed refresh, revocation, needs_reauth, incremental
// consent), then dumps the package's database with pg_dump: none of the
// tokens Acme Tasks issued in this package's tests appears, neither as text
// nor hex-encoded (bytea).
func TestDatabaseHoldsNoPlaintextTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcme(t, 4)
	up := e.addUpstream(t, acme, upstreamOpts{refreshNarrows: true})
	b := e.newBroker(t, brokerOpts{})

	t.Run("flows", func(t *testing.T) {
		g0 := e.save(t, acme, up, userName(0), tasks.ScopeRead, tasks.ScopeWrite)
		g1 := e.save(t, acme, up, userName(1))
		e.save(t, acme, up, userName(2))
		e.save(t, acme, up, userName(3), tasks.ScopeDelete)
		e.save(t, acme, up, userName(3), tasks.ScopeRead) // incremental
		for _, g := range []consent.Grant{g0, g1} {
			e.expire(t, g.ID)
		}
		for i := range 3 {
			_, err := b.Token(ctx, e.tenantID, up.ID, testUser(userName(i)), nil)
			require.NoError(t, err)
			_, err = b.Token(ctx, e.tenantID, up.ID, testUser(userName(i)), []string{tasks.ScopeRead})
			require.NoError(t, err)
		}
		require.NoError(t, b.Revoke(ctx, e.tenantID, g1.ID, testUser(userName(1))))
		require.NoError(t, e.vault.MarkNeedsReauth(ctx, e.tenantID, g0.ID, "test"))
	})

	dump := pgDump(t)
	require.Contains(t, dump, "grant_revocations", "the dump covers the vault's tables")
	toks := issuedTokens()
	require.GreaterOrEqual(t, len(toks), 10)
	for _, tok := range toks {
		require.False(t, strings.Contains(dump, tok), "pg_dump contains a token Acme Tasks issued")
		require.False(t, strings.Contains(dump, hex.EncodeToString([]byte(tok))), "pg_dump contains a token Acme Tasks issued, hex-encoded")
	}
}
