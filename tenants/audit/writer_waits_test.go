package audit

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestObserveWaits: each event's wait (from its time stamp to the batch's
// answer) lands in the first bucket whose bound it does not exceed, longer
// waits in the last, and the sum is the total wait.
func TestObserveWaits(t *testing.T) {
	t.Parallel()
	w := &Writer{}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	var batch []*pending
	for _, wait := range []time.Duration{
		300 * time.Microsecond, // ≤ 0.5 ms
		500 * time.Microsecond, // ≤ 0.5 ms (bounds are inclusive)
		501 * time.Microsecond, // ≤ 1 ms
		4 * time.Millisecond,   // ≤ 5 ms
		3 * time.Second,        // past 1 s
		-time.Millisecond,      // a clock step backwards counts as no wait
	} {
		batch = append(batch, &pending{row: row{at: now.Add(-wait)}})
	}
	w.observeWaits(batch, now)
	s := w.Stats()
	want := [len(WaitBuckets) + 1]uint64{}
	want[0], want[1], want[3], want[len(WaitBuckets)] = 3, 1, 1, 1
	require.Equal(t, want, s.WaitCounts)
	require.InDelta(t, 0.0003+0.0005+0.000501+0.004+3, s.WaitSum, 1e-9)
}
