package audit_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/tenants/audit"
)

// TestBodiesRoundTripAndAreSealed: redacted bodies go through the Writer and
// come back from Query; editing or clearing a sealed body with SQL as the
// owner makes Verify name the event.
func TestBodiesRoundTripAndAreSealed(t *testing.T) {
	t.Parallel()
	for _, tamper := range []struct {
		name, sql string
		seq       int64
	}{
		{"request body edited", `UPDATE audit_events SET request_body = '{"q": "other"}' WHERE tenant_id = $1 AND seq = 3`, 3},
		{"request body cleared", `UPDATE audit_events SET request_body = NULL WHERE tenant_id = $1 AND seq = 3`, 3},
		{"response body edited", `UPDATE audit_events SET response_body = '{"ok": false}' WHERE tenant_id = $1 AND seq = 4`, 4},
		{"body added", `UPDATE audit_events SET request_body = '{}' WHERE tenant_id = $1 AND seq = 1`, 1},
	} {
		t.Run(tamper.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.writeCalls(t, 1) // 1–2, no bodies
			c := call(2)
			c.RequestBody = audit.Redact([]byte(`{"q": "milk", "password": "hunter2"}`), 0)
			seq, err := b.writer.Intent(b.ctx, b.tenant, c)
			require.NoError(t, err)
			require.Equal(t, int64(3), seq)
			_, err = b.writer.Outcome(b.ctx, b.tenant, seq, audit.Outcome{Status: 200, Latency: time.Millisecond,
				ResponseBody: audit.Redact([]byte(`{"ok": true, "access_token": "at"}`), 0)})
			require.NoError(t, err)
			b.writeCalls(t, 1) // 5–6, no bodies

			e, err := b.store.Event(b.ctx, b.tenant, seq)
			require.NoError(t, err)
			require.JSONEq(t, `{"q": "milk", "password": "[redacted]"}`, string(e.RequestBody))
			require.NotNil(t, e.Outcome)
			require.JSONEq(t, `{"ok": true, "access_token": "[redacted]"}`, string(e.Outcome.ResponseBody))
			e1, err := b.store.Event(b.ctx, b.tenant, 1)
			require.NoError(t, err)
			require.Nil(t, e1.RequestBody)
			require.Nil(t, e1.Outcome.ResponseBody)
			js, err := json.Marshal(e)
			require.NoError(t, err)
			require.Contains(t, string(js), `"request_body"`)

			b.sealAll(t)
			rep, err := b.store.Verify(b.ctx, b.tenant)
			require.NoError(t, err)
			require.True(t, rep.OK(), "%v", rep.Problems)

			_, err = owner(t).Exec(context.Background(), tamper.sql, b.tenant)
			require.NoError(t, err)
			rep, err = b.store.Verify(b.ctx, b.tenant)
			require.NoError(t, err)
			require.Len(t, rep.Problems, 1, "%v", rep.Problems)
			require.Equal(t, audit.Problem{Seq: tamper.seq, Kind: audit.ProblemEdited, Detail: "its contents differ from the sealed digest"}, rep.Problems[0])
		})
	}
}
