package policy_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants/policy"
)

// BenchmarkDecide measures one decision on the hot path: rules cached (the
// listener runs) and the condition compiled once.
func BenchmarkDecide(b *testing.B) {
	e, err := policy.New(policy.Config{DB: sqltest.DB(b), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = e.Run(ctx) }()
	require.Eventually(b, e.Listening, 5*time.Second, 5*time.Millisecond)
	tenant := newTenant(b)
	tool := readTool
	tool.Condition = `"engineering" in principal.groups && args.amount < 1000`
	args := json.RawMessage(`{"amount": 250, "note": "lunch"}`)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d, err := e.Decide(ctx, tenant, engineer, tool, args)
			if err != nil || d.Effect != policy.EffectAllow {
				b.Errorf("decide: %+v %v", d, err)
				return
			}
		}
	})
}
