package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/sql/sqltest"
)

// childServe is the child mode of the fault tests (startChildStack): a
// plain `locksmith serve` that announces its address.
func childServe() int {
	ctx, stop := signalContext()
	defer stop()
	hooks := &testHooks{ready: func(addr string) { os.Stdout.WriteString("READY " + addr + "\n") }}
	return run(ctx, []string{"serve"}, os.Getenv, os.Stdout, os.Stderr, hooks)
}

// TestSIGKILLUnderLoadKeepsAudit kills a real `locksmith serve` process with
// SIGKILL while agents are calling a tool through it. Afterwards, every call
// that returned success to its client has its audit intent and its outcome
// in the table (the outcome commits before the response is written), and
// the grant the calls used is still active.
func TestSIGKILLUnderLoadKeepsAudit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := startChildStack(t, sqltest.OwnerURL(t), nil)

	// Load: workers call listTasks until the process dies.
	var (
		mu        sync.Mutex
		succeeded []string
		n         atomic.Int64
		stop      atomic.Bool
		wg        sync.WaitGroup
	)
	client := &http.Client{Timeout: 10 * time.Second}
	for w := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				rid := fmt.Sprintf("crash-%d-%d", w, i)
				r := postToolCall(client, cs.env.url, cs.tokenA, "listTasks", rid, i+1)
				if r.status == 0 {
					continue
				}
				n.Add(1)
				if r.succeeded() {
					mu.Lock()
					succeeded = append(succeeded, rid)
					mu.Unlock()
				}
			}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		got := len(succeeded)
		mu.Unlock()
		if got >= 150 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, cs.child.Process.Signal(os.Kill), "SIGKILL")
	<-cs.exited
	stop.Store(true)
	wg.Wait()

	mu.Lock()
	ok := append([]string(nil), succeeded...)
	mu.Unlock()
	require.GreaterOrEqual(t, len(ok), 50, "too few successful calls before the kill (%d attempts); child log:\n%s", n.Load(), cs.stderr.String())

	missingIntent, missingOutcome := auditGaps(t, cs.dbURL, cs.env.tenant.ID, ok)
	require.Empty(t, missingIntent, "successful calls without an audit intent")
	require.Empty(t, missingOutcome, "successful calls without an audit outcome")
	t.Logf("%d calls succeeded before SIGKILL (%d answered); all have intent and outcome", len(ok), n.Load())

	// No grant broken: still active and still usable.
	g, err := cs.seed.Vault.Grant(ctx, cs.env.tenant.ID, cs.grant.ID)
	require.NoError(t, err)
	require.Equal(t, "active", string(g.Status))
}
