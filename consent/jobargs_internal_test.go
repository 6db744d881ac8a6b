package consent

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRefreshRunAt: a refresh runs a quarter of the token's life (at most
// ahead) before expiry, minus up to half that margin of jitter; one due
// within River's scheduler horizon, or already past, runs now.
func TestRefreshRunAt(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	const ahead = 5 * time.Minute
	fullJitter := func(d time.Duration) time.Duration { return d }
	noJitter := func(time.Duration) time.Duration { return 0 }

	exp := now.Add(time.Hour)
	require.Equal(t, exp.Add(-ahead), refreshRunAt(now, exp, ahead, noJitter))
	require.Equal(t, exp.Add(-ahead-ahead/2), refreshRunAt(now, exp, ahead, fullJitter))

	exp = now.Add(40 * time.Second) // margin 10 s: due 30 s from now
	require.Equal(t, now.Add(30*time.Second), refreshRunAt(now, exp, ahead, noJitter))

	for _, life := range []time.Duration{6 * time.Second, time.Second, 0, -time.Minute} {
		require.Equal(t, now, refreshRunAt(now, now.Add(life), ahead, noJitter), "life %v: due within the horizon or past", life)
	}
}
