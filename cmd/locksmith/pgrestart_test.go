package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants/policy"
)

// restartCall is one tools/call of the load, with when it started
// (relative to the load's start) and how it ended.
type restartCall struct {
	rid     string
	start   time.Duration
	latency time.Duration
	class   string // ok, retryable, unclear, transport
	detail  string // what the agent saw, for failures
}

// classifyCall sorts an answer: a successful tool result; a failure the
// agent can recognise as temporary (a tool error of kind "retryable", an
// HTTP 503 with Retry-After, a JSON-RPC error that says to retry); or
// anything else ("unclear"), which must never happen.
func classifyCall(r toolCallResult) (class, detail string) {
	if r.err != nil {
		return "transport", r.err.Error()
	}
	if r.succeeded() {
		return "ok", ""
	}
	body := rpcBody(r.body)
	if r.status == http.StatusServiceUnavailable {
		if r.header.Get("Retry-After") != "" {
			return "retryable", fmt.Sprintf("HTTP 503 Retry-After %s: %s", r.header.Get("Retry-After"), body)
		}
		return "unclear", "HTTP 503 without Retry-After: " + body
	}
	if r.status != http.StatusOK {
		return "unclear", fmt.Sprintf("HTTP %d: %s", r.status, body)
	}
	var msg struct {
		Result *struct {
			IsError           bool `json:"isError"`
			StructuredContent struct {
				Error struct {
					Kind      string `json:"kind"`
					Message   string `json:"message"`
					Retryable bool   `json:"retryable"`
				} `json:"error"`
			} `json:"structuredContent"`
		} `json:"result"`
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &msg); err != nil {
		return "unclear", "not JSON-RPC: " + body
	}
	switch {
	case msg.Result != nil && msg.Result.IsError:
		e := msg.Result.StructuredContent.Error
		if e.Kind == "retryable" && e.Retryable && strings.Contains(e.Message, "retry") {
			return "retryable", e.Message
		}
		return "unclear", fmt.Sprintf("tool error %s: %s", e.Kind, e.Message)
	case msg.Error != nil:
		m := strings.ToLower(msg.Error.Message)
		if strings.Contains(m, "retry") || strings.Contains(m, "temporar") {
			return "retryable", msg.Error.Message
		}
		return "unclear", fmt.Sprintf("JSON-RPC error %d: %s", msg.Error.Code, msg.Error.Message)
	}
	return "unclear", body
}

// rpcBody is the JSON-RPC message of an answer, which a stateless POST
// may get as one server-sent event.
func rpcBody(b []byte) string {
	body := string(b)
	if i := strings.Index(body, "data: "); i >= 0 && !strings.HasPrefix(strings.TrimSpace(body), "{") {
		body = strings.TrimSpace(strings.SplitN(body[i+len("data: "):], "\n", 2)[0])
	}
	return body
}

// TestPostgresRestartUnderLoad plays a PostgreSQL restart to a real
// `locksmith serve` process while agents call a tool through its MCP
// endpoint: its database stops accepting connections and every backend
// connected to it is terminated, repeatedly, for about a second and a half
// (as a restart looks to the clients: connections dropped, new ones refused
// for a while), then connections are allowed again. The database is this
// test's own (sqltest.NewDatabase), so the package's other tests are not
// disturbed.
//
// It checks that no call hangs; every failed call says it is temporary
// (a retryable tool error or a 503 with Retry-After); every call that
// returned success has its audit intent and outcome; /readyz reports not
// ready during the outage and ready after; after the outage calls succeed
// again within seconds without restarting anything; the LISTEN connections
// of the token broker and the policy engine are back (a kill switch and a
// revocation made on another instance take effect at once); and the process
// neither exited nor panicked.
func TestPostgresRestartUnderLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const (
		workers   = 8
		outageFor = 1500 * time.Millisecond
		// hangBound: no call may take longer (a hang is a failure).
		hangBound = 15 * time.Second
		// recoverWithin: after connections are allowed again, calls succeed
		// again within this (generous on a noisy 2-core machine).
		recoverWithin = 10 * time.Second
		// noticeWithin: a kill switch or revocation on another instance
		// reaches the child within this. It is below policy.RulesTTL, so
		// the policy change is seen through the notification, not the TTL.
		noticeWithin = 5 * time.Second
		childApp     = "locksmith-pgrestart-child"
	)
	require.Less(t, noticeWithin, policy.RulesTTL)

	dbURL := sqltest.NewDatabase(t)
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	dbName := strings.TrimPrefix(u.Path, "/")
	require.True(t, strings.HasPrefix(dbName, "locksmith_test_"), "only this test's own database may be disturbed: %s", dbName)

	// PGAPPNAME tells the child's connections from the seeding Main's.
	cs := startChildStack(t, dbURL, map[string]string{"LOG_LEVEL": "info", "PGAPPNAME": childApp})

	// pg_stat_activity is read from the server's maintenance database: no
	// one connects to a database that refuses connections.
	admin, err := pgx.Connect(ctx, sqltest.ServerURL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close(context.Background()) })

	// The child listens for grant and rule changes.
	listeners := func() []string {
		rows, err := admin.Query(ctx, `SELECT query FROM pg_stat_activity WHERE datname = $1 AND application_name = $2 AND query ILIKE 'LISTEN %'`, dbName, childApp)
		if err != nil {
			return nil
		}
		qs, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		return qs
	}
	listening := func() bool {
		qs := listeners()
		return slices.Contains(qs, "LISTEN "+consent.NotifyChannel) && slices.Contains(qs, "LISTEN "+policy.NotifyChannel)
	}
	require.Eventually(t, listening, 10*time.Second, 50*time.Millisecond, "the child's broker and policy engine listen")

	// Steady load.
	var (
		mu    sync.Mutex
		calls []restartCall
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	began := time.Now()
	client := &http.Client{Timeout: 2 * hangBound}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				rid := fmt.Sprintf("pgrestart-%d-%d", w, i)
				start := time.Since(began)
				r := postToolCall(client, cs.env.url, cs.tokenA, "listTasks", rid, i+1)
				class, detail := classifyCall(r)
				mu.Lock()
				calls = append(calls, restartCall{rid: rid, start: start, latency: r.latency, class: class, detail: detail})
				mu.Unlock()
				if class != "ok" {
					// An agent backs off a little before retrying.
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	okSince := func(from time.Duration) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range calls {
			if c.start >= from && c.class == "ok" {
				n++
			}
		}
		return n
	}
	require.Eventually(t, func() bool { return okSince(0) >= 100 }, 30*time.Second, 20*time.Millisecond,
		"the load runs before the outage; child log:\n%s", cs.stderr.String())

	// /readyz, polled through the outage and after.
	type probe struct {
		at     time.Duration
		status int
	}
	var (
		probes    []probe
		probeStop = make(chan struct{})
		probeDone = make(chan struct{})
	)
	readyz := func() int {
		resp, err := (&http.Client{Timeout: hangBound}).Get(cs.base + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	go func() {
		defer close(probeDone)
		for {
			st := readyz()
			mu.Lock()
			probes = append(probes, probe{time.Since(began), st})
			mu.Unlock()
			select {
			case <-probeStop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	// The outage: new connections refused, every backend terminated, again
	// and again (connections being set up when a round ran are caught by
	// the next), then connections allowed again.
	outageStart := time.Since(began)
	end := sqltest.Outage(t, dbURL)
	for time.Since(began)-outageStart < outageFor {
		time.Sleep(10 * time.Millisecond)
	}
	terminated := end()
	outageEnd := time.Since(began)
	require.Positive(t, terminated, "the outage terminated the child's connections")

	// Recovery: a call started after the outage succeeds.
	require.Eventually(t, func() bool { return okSince(outageEnd) > 0 }, recoverWithin, 10*time.Millisecond,
		"calls succeed again within %s of the database coming back; child log:\n%s", recoverWithin, cs.stderr.String())
	recovered := time.Duration(0)
	mu.Lock()
	for _, c := range calls {
		if c.start >= outageEnd && c.class == "ok" && (recovered == 0 || c.start+c.latency < recovered) {
			recovered = c.start + c.latency
		}
	}
	mu.Unlock()
	// Then a steady stretch: calls started from 2 s after recovery on must
	// all succeed.
	steadyFrom := recovered + 2*time.Second
	require.Eventually(t, func() bool { return okSince(steadyFrom) >= 100 }, 30*time.Second, 20*time.Millisecond,
		"calls keep succeeding after the outage; child log:\n%s", cs.stderr.String())
	require.Eventually(t, func() bool { return readyz() == http.StatusOK }, recoverWithin, 50*time.Millisecond, "/readyz is ready again")
	close(probeStop)
	<-probeDone
	stop.Store(true)
	wg.Wait()

	// Tally, by when each call started.
	type tally struct{ ok, retryable, unclear, transport int }
	var before, during, after tally
	var unclear []string
	var succeeded []string
	var slowest time.Duration
	var lateFailures []string
	mu.Lock()
	all := append([]restartCall(nil), calls...)
	ps := append([]probe(nil), probes...)
	mu.Unlock()
	for _, c := range all {
		tl := &after
		switch {
		case c.start < outageStart:
			tl = &before
		case c.start < outageEnd:
			tl = &during
		}
		switch c.class {
		case "ok":
			tl.ok++
			succeeded = append(succeeded, c.rid)
		case "retryable":
			tl.retryable++
		case "transport":
			tl.transport++
		default:
			tl.unclear++
		}
		if c.class != "ok" && c.class != "retryable" && len(unclear) < 20 {
			unclear = append(unclear, fmt.Sprintf("%s at %s (%s): %s: %s", c.rid, c.start.Round(time.Millisecond), c.latency.Round(time.Millisecond), c.class, c.detail))
		}
		if c.class != "ok" && c.start >= steadyFrom && len(lateFailures) < 20 {
			lateFailures = append(lateFailures, fmt.Sprintf("%s at %s: %s: %s", c.rid, c.start.Round(time.Millisecond), c.class, c.detail))
		}
		slowest = max(slowest, c.latency)
	}
	messages := map[string]int{}
	for _, c := range all {
		if c.class == "retryable" {
			messages[c.detail]++
		}
	}
	var notReady, readyDuring int
	for _, p := range ps {
		if p.at >= outageStart && p.at < outageEnd {
			if p.status == http.StatusServiceUnavailable {
				notReady++
			} else {
				readyDuring++
			}
		}
	}
	t.Logf("outage: %s from %s (connections refused, %d backends terminated); %d calls by %d agents",
		(outageEnd - outageStart).Round(time.Millisecond), outageStart.Round(time.Millisecond), terminated, len(all), workers)
	t.Logf("started before the outage: %d ok, %d retryable errors, %d unclear, %d transport", before.ok, before.retryable, before.unclear, before.transport)
	t.Logf("started during the outage: %d ok, %d retryable errors, %d unclear, %d transport", during.ok, during.retryable, during.unclear, during.transport)
	t.Logf("started after the outage:  %d ok, %d retryable errors, %d unclear, %d transport", after.ok, after.retryable, after.unclear, after.transport)
	t.Logf("first success of a call started after the outage: %s after connections were allowed again; slowest call %s",
		(recovered - outageEnd).Round(time.Millisecond), slowest.Round(time.Millisecond))
	keys := make([]string, 0, len(messages))
	for m := range messages {
		keys = append(keys, m)
	}
	sort.Strings(keys)
	for _, m := range keys {
		t.Logf("  %4d × %s", messages[m], m)
	}
	t.Logf("/readyz during the outage: %d × 503, %d × other", notReady, readyDuring)

	require.Less(t, slowest, hangBound, "no call hangs")
	require.Empty(t, unclear, "every failed call says it is temporary")
	require.Empty(t, lateFailures, "calls started 2 s after recovery all succeed")
	// The agents felt the outage: calls failed, or waited for the
	// database (the audit writer retries a batch that failed on a lost
	// connection).
	waited := 0
	for _, c := range all {
		if c.latency > outageFor/2 {
			waited++
		}
	}
	t.Logf("calls that waited more than %s: %d", outageFor/2, waited)
	require.Positive(t, during.retryable+before.retryable+waited, "the outage was felt by the agents")
	require.Positive(t, notReady, "/readyz reports not ready during the outage")

	// Every call that returned success has its intent and its outcome.
	missingIntent, missingOutcome := auditGaps(t, dbURL, cs.env.tenant.ID, succeeded)
	require.Empty(t, missingIntent, "successful calls without an audit intent")
	require.Empty(t, missingOutcome, "successful calls without an audit outcome")
	t.Logf("%d successful calls, all with audit intent and outcome", len(succeeded))

	// The LISTEN connections are back, and work: a kill switch and a
	// revocation made through the seeding instance reach the child.
	require.Eventually(t, listening, recoverWithin, 50*time.Millisecond, "the child's broker and policy engine listen again")
	call := func() (string, string) {
		r := postToolCall(client, cs.env.url, cs.tokenA, "listTasks", fmt.Sprintf("pgrestart-after-%d", time.Now().UnixNano()), 1)
		if r.succeeded() {
			return "ok", ""
		}
		var msg struct {
			Result struct {
				StructuredContent struct {
					Error map[string]any `json:"error"`
				} `json:"structuredContent"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(rpcBody(r.body)), &msg); err != nil || msg.Result.StructuredContent.Error == nil {
			return "unparsed", truncate(string(r.body), 500)
		}
		e := msg.Result.StructuredContent.Error
		kind, _ := e["kind"].(string)
		detail, _ := e["rule"].(string)
		if reason, ok := e["reason"].(string); ok {
			detail = reason
		}
		return kind, detail
	}
	kind, _ := call()
	require.Equal(t, "ok", kind)
	_, err = cs.seed.Policy.SetKillSwitch(ctx, cs.env.tenant.ID, policy.KillSwitch{Kind: policy.KillAgent, Value: idp.ClientMCPAgent, Reason: "restart drill"})
	require.NoError(t, err)
	flipped := time.Now()
	waitForAnswer(t, call, "policy", policy.RuleKillAgent, noticeWithin, "the kill switch reaches the child")
	killSeen := time.Since(flipped)
	require.NoError(t, cs.seed.Policy.ClearKillSwitch(ctx, cs.env.tenant.ID, policy.KillAgent, "", idp.ClientMCPAgent))
	waitForAnswer(t, call, "ok", "", noticeWithin, "clearing it reaches the child")

	// The revocation also enqueues a job revoking the token at Acme
	// Tasks: the child's River workers are back too.
	revocations := len(cs.tasks.Stats().Revocations)
	require.NoError(t, cs.seed.Broker.Revoke(ctx, cs.env.tenant.ID, cs.grant.ID, consent.User{Issuer: cs.idp.URL(), Subject: idp.UserEngineer}))
	revoked := time.Now()
	waitForAnswer(t, call, "consent_required", consent.ReasonRevoked, noticeWithin, "the revocation reaches the child's token cache")
	revocationSeen := time.Since(revoked)
	require.Eventually(t, func() bool { return len(cs.tasks.Stats().Revocations) > revocations }, recoverWithin, 10*time.Millisecond,
		"the child's River worker revokes the token at Acme Tasks")
	t.Logf("after the outage: kill switch seen by the child in %s, revocation in %s, upstream revocation job done in %s",
		killSeen.Round(time.Millisecond), revocationSeen.Round(time.Millisecond), time.Since(revoked).Round(time.Millisecond))

	// The process is still the one that started, and nothing panicked.
	select {
	case <-cs.exited:
		t.Fatalf("the child exited (%v); log:\n%s", cs.waitErr, cs.stderr.String())
	default:
	}
	log := cs.stderr.String()
	for _, bad := range []string{"panic", "fatal error", "DATA RACE"} {
		require.NotContains(t, log, bad, "child log:\n%s", log)
	}
	// What the child logged, by message.
	counts := map[string]int{}
	for _, line := range strings.Split(log, "\n") {
		lvl, msg := logField(line, "level"), logField(line, "msg")
		if lvl == "" || (lvl == "INFO" && !strings.Contains(msg, "listener") && !strings.Contains(msg, "audit")) {
			continue
		}
		counts[lvl+" "+msg]++
	}
	keys = keys[:0]
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("child log: %4d × %s", counts[k], k)
	}
}

// logField returns the value of key in a text-handler log line.
func logField(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := line[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		if j := strings.Index(v[1:], `"`); j >= 0 {
			return v[1 : j+1]
		}
		return v[1:]
	}
	if j := strings.IndexByte(v, ' '); j >= 0 {
		return v[:j]
	}
	return v
}

// waitForAnswer calls until call answers kind and detail, for up to
// within, and fails with the last answer if it never does.
func waitForAnswer(t *testing.T, call func() (kind, detail string), kind, detail string, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		k, d := call()
		if k == kind && d == detail {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; the last call answered %q %q", what, within, k, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
