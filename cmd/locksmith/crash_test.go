package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

// childServe is the child mode of TestSIGKILLUnderLoadKeepsAudit: a plain
// `locksmith serve` that announces its address.
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
	key, err := testMasterKey()
	require.NoError(t, err)
	mk, err := seal.ParseMasterKeys(key)
	require.NoError(t, err)

	// The child's address must be known before it starts (base URL, Host check).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	base := "http://" + addr
	baseURL, err := url.Parse(base)
	require.NoError(t, err)

	demoIdP := idp.NewTestServer(t)
	acme, err := tasks.New(tasks.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	require.NoError(t, acme.Start("127.0.0.1:0"))
	t.Cleanup(func() { _ = acme.Close(context.Background()) })

	// Seed through the domain services of a Main that doesn't serve.
	seed := &Main{Config: Config{DatabaseURL: sqltest.OwnerURL(t), BaseURL: baseURL, MasterKeys: mk, AllowPrivate: true, Addr: "127.0.0.1:0"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	require.NoError(t, seed.Open(ctx))
	t.Cleanup(func() { _ = seed.Close(context.Background()) })
	env := newMCPTenant(t, &stack{Main: seed, URL: base, IdP: demoIdP, Tasks: acme})
	issued, err := acme.IssueTokens("engineer", tasks.DefaultClientID, []string{tasks.ScopeRead})
	require.NoError(t, err)
	grant, err := seed.Vault.SaveGrant(ctx, env.tenant.ID, env.upstream.ID,
		consent.User{Issuer: demoIdP.URL(), Subject: idp.UserEngineer},
		consent.Tokens{AccessToken: issued.AccessToken, RefreshToken: issued.RefreshToken,
			ExpiresAt: time.Now().Add(time.Hour), Scopes: strings.Fields(issued.Scope)})
	require.NoError(t, err)
	tokenA, err := demoIdP.MintAccessToken(idp.MintRequest{User: idp.UsernameEngineer, Audience: []string{env.url}, Scopes: []string{mcpEndpointScope}})
	require.NoError(t, err)

	self, err := os.Executable()
	require.NoError(t, err)
	child := exec.Command(self, "-test.run=^$")
	child.Env = envList(map[string]string{
		"LOCKSMITH_TEST_CHILD": "serve", "DATABASE_URL": sqltest.OwnerURL(t), "LOCKSMITH_BASE_URL": base,
		"LOCKSMITH_ADDR": addr, "LOCKSMITH_MASTER_KEY": key, "LOCKSMITH_ALLOW_PRIVATE_TARGETS": "true", "LOG_LEVEL": "warn",
	})
	stdout, err := child.StdoutPipe()
	require.NoError(t, err)
	stderr := &lockedBuffer{}
	child.Stderr = stderr
	require.NoError(t, child.Start())
	t.Cleanup(func() { _ = child.Process.Kill() })
	sc := bufio.NewScanner(stdout)
	ready := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "READY ") {
			ready = true
			break
		}
	}
	require.True(t, ready, "child did not start: %s", stderr.String())
	go io.Copy(io.Discard, stdout)

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
				body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"listTasks","arguments":{}}}`, i+1)
				req, _ := http.NewRequest(http.MethodPost, env.url, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tokenA)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				req.Header.Set("X-Request-Id", rid)
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				n.Add(1)
				if err == nil && resp.StatusCode == http.StatusOK && bytes.Contains(b, []byte(`"result"`)) && !bytes.Contains(b, []byte(`"isError":true`)) {
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
	require.NoError(t, child.Process.Signal(os.Kill), "SIGKILL")
	_ = child.Wait()
	stop.Store(true)
	wg.Wait()

	mu.Lock()
	ok := append([]string(nil), succeeded...)
	mu.Unlock()
	require.GreaterOrEqual(t, len(ok), 50, "too few successful calls before the kill (%d attempts); child log:\n%s", n.Load(), stderr.String())

	owner, err := pgx.Connect(ctx, sqltest.OwnerURL(t))
	require.NoError(t, err)
	defer owner.Close(ctx)
	var missingIntent, missingOutcome []string
	for _, rid := range ok {
		var seq int64
		err := owner.QueryRow(ctx, `SELECT seq FROM audit_events WHERE tenant_id = $1 AND kind = 'call' AND request_id = $2`, env.tenant.ID, rid).Scan(&seq)
		if err != nil {
			missingIntent = append(missingIntent, rid)
			continue
		}
		var outcomes int
		require.NoError(t, owner.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND kind = 'outcome' AND intent_seq = $2`, env.tenant.ID, seq).Scan(&outcomes))
		if outcomes != 1 {
			missingOutcome = append(missingOutcome, rid)
		}
	}
	require.Empty(t, missingIntent, "successful calls without an audit intent")
	require.Empty(t, missingOutcome, "successful calls without an audit outcome")
	t.Logf("%d calls succeeded before SIGKILL (%d answered); all have intent and outcome", len(ok), n.Load())

	// No grant broken: still active and still usable.
	g, err := seed.Vault.Grant(ctx, env.tenant.ID, grant.ID)
	require.NoError(t, err)
	require.Equal(t, "active", string(g.Status))
}
