package main

import (
	"bufio"
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
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

// childStack is a real `locksmith serve` process (this test binary in
// child mode "serve") with a tenant seeded through a Main that doesn't
// serve, on the same database: Acme Tasks imported, the engineer's grant
// stored, and a Token A for the tenant's MCP endpoint. The fault tests
// kill or starve it.
type childStack struct {
	seed   *Main
	env    mcpTenant
	grant  consent.Grant
	tokenA string
	base   string
	dbURL  string
	child  *exec.Cmd
	// exited is closed when the child has exited (waitErr is then set).
	exited  chan struct{}
	waitErr error
	stderr  *lockedBuffer
	idp     *idp.IdP
	tasks   *tasks.Server
}

// startChildStack seeds a tenant on dbURL and starts the child on it with
// extra environment variables (LOG_LEVEL defaults to warn). It returns once
// the child serves.
func startChildStack(t *testing.T, dbURL string, extra map[string]string) *childStack {
	t.Helper()
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
	seed := &Main{Config: Config{DatabaseURL: dbURL, BaseURL: baseURL, MasterKeys: mk, AllowPrivate: true, Addr: "127.0.0.1:0"},
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

	vars := map[string]string{
		"LOCKSMITH_TEST_CHILD": "serve", "DATABASE_URL": dbURL, "LOCKSMITH_BASE_URL": base,
		"LOCKSMITH_ADDR": addr, "LOCKSMITH_MASTER_KEY": key, "LOCKSMITH_ALLOW_PRIVATE_TARGETS": "true", "LOG_LEVEL": "warn",
	}
	for k, v := range extra {
		vars[k] = v
	}
	self, err := os.Executable()
	require.NoError(t, err)
	child := exec.Command(self, "-test.run=^$")
	child.Env = envList(vars)
	stdout, err := child.StdoutPipe()
	require.NoError(t, err)
	stderr := &lockedBuffer{}
	child.Stderr = stderr
	require.NoError(t, child.Start())
	exited := make(chan struct{})
	cs := &childStack{seed: seed, env: env, grant: grant, tokenA: tokenA, base: base, dbURL: dbURL,
		child: child, exited: exited, stderr: stderr, idp: demoIdP, tasks: acme}
	t.Cleanup(func() { _ = child.Process.Kill(); <-exited })
	sc := bufio.NewScanner(stdout)
	ready := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "READY ") {
			ready = true
			break
		}
	}
	if !ready {
		_ = child.Process.Kill()
		_ = child.Wait()
		close(exited)
		t.Fatalf("child did not start: %s", stderr.String())
	}
	go func() {
		// Wait closes stdout: drain it first.
		_, _ = io.Copy(io.Discard, stdout)
		cs.waitErr = child.Wait()
		close(exited)
	}()
	return cs
}

// toolCallResult is one raw tools/call over HTTP as the agent saw it.
type toolCallResult struct {
	status  int
	header  http.Header
	body    []byte
	err     error // transport error (no answer)
	latency time.Duration
}

// postToolCall sends one stateless tools/call of tool (no arguments) with
// Token A and the request id rid, and reads the whole answer.
func postToolCall(client *http.Client, endpoint, tokenA, tool, rid string, id int) toolCallResult {
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":{}}}`, id, tool)
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tokenA)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("X-Request-Id", rid)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return toolCallResult{err: err, latency: time.Since(start)}
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return toolCallResult{status: resp.StatusCode, header: resp.Header, body: b, err: err, latency: time.Since(start)}
}

// succeeded reports whether the call returned a successful tool result.
func (r toolCallResult) succeeded() bool {
	return r.err == nil && r.status == http.StatusOK && strings.Contains(string(r.body), `"result"`) &&
		!strings.Contains(string(r.body), `"isError":true`)
}

// auditGaps looks up, as the database owner, the audit intent and outcome
// of every call in rids (request ids of calls that returned success) and
// returns those without an intent and those without exactly one outcome.
func auditGaps(t *testing.T, ownerURL string, tenantID uuid.UUID, rids []string) (missingIntent, missingOutcome []string) {
	t.Helper()
	ctx := context.Background()
	owner, err := pgx.Connect(ctx, ownerURL)
	require.NoError(t, err)
	defer owner.Close(ctx)
	for _, rid := range rids {
		var seq int64
		err := owner.QueryRow(ctx, `SELECT seq FROM audit_events WHERE tenant_id = $1 AND kind = 'call' AND request_id = $2`, tenantID, rid).Scan(&seq)
		if err != nil {
			missingIntent = append(missingIntent, rid)
			continue
		}
		var outcomes int
		require.NoError(t, owner.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND kind = 'outcome' AND intent_seq = $2`, tenantID, seq).Scan(&outcomes))
		if outcomes != 1 {
			missingOutcome = append(missingOutcome, rid)
		}
	}
	return missingIntent, missingOutcome
}
