package main

import (
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMetricsCountRevocationsAfterUse: the broker's counters of revocations
// after use, and the count of upstream circuits opened, are on /metrics.
func TestMetricsCountRevocationsAfterUse(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	resp, err := http.Get(st.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Contains(t, string(body), `locksmith_token_revoke_after_use_total{result="failed"} 0`)
	require.Contains(t, string(body), `locksmith_token_revoke_after_use_total{result="revoked"} 0`)
	require.Contains(t, string(body), "locksmith_upstream_circuit_opens_total 0")
}
