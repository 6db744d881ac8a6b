package mcp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/audit"
	"github.com/locksmithhq/locksmith/tenants/egress"
	webmcp "github.com/locksmithhq/locksmith/web/mcp"
)

// The THREATS.md row "slow or dead upstream": timeouts, circuit breaker,
// bounded goroutines and connections, other tenants unaffected. Every test
// here runs the whole endpoint against real upstream servers on port 0.

// switchUpstream is a REST upstream on a listener the test controls. While
// dead it accepts each connection and closes it at once (a crashed backend
// behind a load balancer); alive it answers every request with 200 JSON.
// It counts accepted connections and served requests, so a test can prove
// that a refused call never reached it.
type switchUpstream struct {
	url      string
	dead     atomic.Bool
	accepts  atomic.Int32
	requests atomic.Int32
}

type switchListener struct {
	net.Listener
	u *switchUpstream
}

func (l switchListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.u.accepts.Add(1)
		if !l.u.dead.Load() {
			return c, nil
		}
		_ = c.Close()
	}
}

func startSwitchUpstream(t *testing.T) *switchUpstream {
	t.Helper()
	u := &switchUpstream{}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"pong":true}`))
	}))
	ts.Listener = switchListener{Listener: ts.Listener, u: u}
	ts.Start()
	t.Cleanup(ts.Close)
	u.url = ts.URL
	return u
}

// slowUpstream holds every request until the client gives up (or hold
// passes) and records how many it held at once.
type slowUpstream struct {
	url      string
	hold     time.Duration
	inFlight atomic.Int32
	peak     atomic.Int32
	total    atomic.Int32
}

func startSlowUpstream(t *testing.T, hold time.Duration) *slowUpstream {
	t.Helper()
	u := &slowUpstream{hold: hold}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.total.Add(1)
		n := u.inFlight.Add(1)
		defer u.inFlight.Add(-1)
		for p := u.peak.Load(); n > p && !u.peak.CompareAndSwap(p, n); p = u.peak.Load() {
		}
		select {
		case <-time.After(u.hold):
			_, _ = w.Write([]byte(`{"late":true}`))
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(ts.Close)
	u.url = ts.URL
	return u
}

// countingTransport counts the requests to host in flight through it
// (until the response body is closed) and the most at once.
type countingTransport struct {
	base     http.RoundTripper
	host     string
	inFlight atomic.Int32
	peak     atomic.Int32
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != c.host {
		return c.base.RoundTrip(r)
	}
	n := c.inFlight.Add(1)
	for p := c.peak.Load(); n > p && !c.peak.CompareAndSwap(p, n); p = c.peak.Load() {
	}
	resp, err := c.base.RoundTrip(r)
	if err != nil {
		c.inFlight.Add(-1)
		return nil, err
	}
	resp.Body = &countedBody{ReadCloser: resp.Body, c: c}
	return resp, nil
}

type countedBody struct {
	io.ReadCloser
	c    *countingTransport
	once sync.Once
}

func (b *countedBody) Close() error {
	b.once.Do(func() { b.c.inFlight.Add(-1) })
	return b.ReadCloser.Close()
}

// scripted is a REST upstream whose answer the test sets; it counts the
// requests it served.
type scripted struct {
	url      string
	requests atomic.Int32
	mu       sync.Mutex
	answer   http.HandlerFunc
}

func startScripted(t *testing.T, answer http.HandlerFunc) *scripted {
	t.Helper()
	u := &scripted{answer: answer}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.requests.Add(1)
		u.mu.Lock()
		a := u.answer
		u.mu.Unlock()
		a(w, r)
	}))
	t.Cleanup(ts.Close)
	u.url = ts.URL
	return u
}

func (u *scripted) set(a http.HandlerFunc) {
	u.mu.Lock()
	u.answer = a
	u.mu.Unlock()
}

func status(code int, hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = fmt.Fprintf(w, `{"status":%d}`, code)
	}
}

// restUpstream registers a REST upstream without auth and one GET tool on
// it for tenantID, and waits out the tenant cache.
func (b *testBundle) restUpstream(t *testing.T, tenantID uuid.UUID, slug, name, baseURL, tool string) tenants.Upstream {
	t.Helper()
	up, err := b.svc.CreateUpstream(context.Background(), tenantID, tenants.UpstreamInput{Slug: slug, Name: name, BaseURL: baseURL, AuthMode: tenants.AuthNone})
	require.NoError(t, err)
	b.addTool(t, tenantID, tenants.ToolInput{UpstreamID: up.ID, Name: tool, Method: "GET", PathTemplate: "/ping", Risk: tenants.RiskRead, Enabled: true})
	time.Sleep(60 * time.Millisecond) // past the tenant cache TTL
	return up
}

// tokenForB mints a Token A for tenant B's endpoint.
func (b *testBundle) tokenForB(t *testing.T) string {
	t.Helper()
	tok, err := b.idpB.MintAccessToken(idp.MintRequest{User: idp.UsernameEngineer, Audience: []string{b.resB}, Scopes: []string{endpointScope, "openid"}})
	require.NoError(t, err)
	return tok
}

// callResult is one tools/call as the agent saw it.
type callResult struct {
	text    string
	isError bool
	err     map[string]any // structuredContent.error, if any
	latency time.Duration
}

func (r callResult) refusedBy(reason string) bool { return r.isError && r.err["reason"] == reason }

// agent posts tools/calls the way a 2025-11-25 client does (so the fast
// path serves them), from any goroutine.
type agent struct {
	hc       *http.Client
	endpoint string
	token    string
}

func newAgent(t *testing.T, endpoint, token string) *agent {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &agent{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, endpoint: endpoint, token: token}
}

func (a *agent) call(tool string) (callResult, error) {
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `","arguments":{}}}`
	req, err := http.NewRequest(http.MethodPost, a.endpoint, strings.NewReader(body))
	if err != nil {
		return callResult{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	start := time.Now()
	resp, err := a.hc.Do(req)
	if err != nil {
		return callResult{}, err
	}
	raw, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	latency := time.Since(start)
	if err != nil {
		return callResult{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return callResult{}, fmt.Errorf("HTTP %d: %s", resp.StatusCode, raw)
	}
	payload, ok := strings.CutPrefix(strings.TrimSpace(string(raw)), "event: message\ndata: ")
	if !ok {
		return callResult{}, fmt.Errorf("not an SSE message: %s", raw)
	}
	var msg struct {
		Result *struct {
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
			IsError           bool `json:"isError"`
			StructuredContent struct {
				Error map[string]any `json:"error"`
			} `json:"structuredContent"`
		} `json:"result"`
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal([]byte(payload), &msg); err != nil || msg.Result == nil {
		return callResult{}, fmt.Errorf("no result (%v): %s", err, payload)
	}
	r := callResult{isError: msg.Result.IsError, err: msg.Result.StructuredContent.Error, latency: latency}
	for _, c := range msg.Result.Content {
		r.text += c.Text
	}
	return r, nil
}

func (a *agent) mustCall(t *testing.T, tool string) callResult {
	t.Helper()
	r, err := a.call(tool)
	require.NoError(t, err)
	return r
}

// TestBreakerOpensOnDeadUpstreamAndRecovers (a): after N failed calls the
// circuit opens and calls fail fast without a connection attempt; after the
// cool-down one probe goes through (and re-opens the circuit while the
// upstream is still dead); once the upstream is back the probe closes it.
// Every call, refused ones included, is in the audit trail with its error.
func TestBreakerOpensOnDeadUpstreamAndRecovers(t *testing.T) {
	t.Parallel()
	const n, coolDown = 3, 300 * time.Millisecond
	g := setupGoverned(t, nil, func(c *webmcp.Config) { c.BreakerThreshold, c.BreakerCoolDown = n, coolDown })
	dead := startSwitchUpstream(t)
	dead.dead.Store(true)
	g.restUpstream(t, g.tenantA.ID, "dead", "Dead API", dead.url, "d_ping")
	a := newAgent(t, g.resource, g.tokenA(t))

	for i := range n {
		r := a.mustCall(t, "d_ping")
		require.True(t, r.isError, "call %d", i)
		require.Contains(t, r.text, "Dead API could not be reached", "call %d", i)
		require.Equal(t, true, r.err["retryable"])
	}
	require.EqualValues(t, n, dead.accepts.Load(), "each failed call made one connection")

	// Open: refused at once, nothing reaches the upstream.
	for range 5 {
		r := a.mustCall(t, "d_ping")
		require.True(t, r.refusedBy("circuit_open"), "%+v", r)
		require.Equal(t, "retryable", r.err["kind"])
		require.Equal(t, true, r.err["retryable"])
		require.EqualValues(t, 1, r.err["retry_after_seconds"])
		require.Contains(t, r.text, "Dead API is unavailable: after 3 failed calls in a row")
		require.Contains(t, r.text, "Locksmith stopped calling it for 0.3 s, so this call was not made")
		require.Contains(t, r.text, "(after 1 s)")
		require.Less(t, r.latency, 250*time.Millisecond, "fails fast, far under the 5 s dial timeout")
	}
	require.EqualValues(t, n, dead.accepts.Load(), "no connection attempt while open")
	require.EqualValues(t, 1, g.handler.UpstreamCircuitOpens())

	// Cool-down over, still dead: the one probe fails and re-opens.
	time.Sleep(coolDown)
	r := a.mustCall(t, "d_ping")
	require.Contains(t, r.text, "Dead API could not be reached")
	require.EqualValues(t, n+1, dead.accepts.Load())
	require.True(t, a.mustCall(t, "d_ping").refusedBy("circuit_open"))
	require.EqualValues(t, n+1, dead.accepts.Load())
	require.EqualValues(t, 2, g.handler.UpstreamCircuitOpens())

	// Back: the probe succeeds and closes the circuit.
	dead.dead.Store(false)
	time.Sleep(coolDown)
	for i := range 5 {
		r := a.mustCall(t, "d_ping")
		require.False(t, r.isError, "call %d: %s", i, r.text)
		require.Contains(t, r.text, `"pong":true`)
	}
	require.EqualValues(t, 5, dead.requests.Load())

	// The audit trail has every call: allowed, each with its outcome; the
	// refused ones say they were not called.
	events := g.events(t, audit.Filter{Tool: "d_ping"})
	require.Len(t, events, n+5+2+5)
	var refused, failed, ok int
	for _, e := range events {
		require.Equal(t, audit.DecisionAllow, e.Decision)
		require.NotNil(t, e.Outcome, "every call has an outcome")
		switch {
		case e.Outcome.Error == "not called: upstream circuit open":
			refused++
			require.Equal(t, audit.ResultFailed, e.Result)
		case e.Outcome.Error != "":
			failed++
		default:
			ok++
		}
	}
	require.Equal(t, []int{6, 4, 5}, []int{refused, failed, ok})
}

// TestSlowUpstreamIsBoundedAndTimesOut (b): calls to an upstream that
// never answers time out with a clear error; at most UpstreamMaxInFlight of
// them are ever at the upstream, the rest fail fast after the slot wait;
// afterwards the goroutine count is back where it was.
//
// Not parallel: it counts the process's goroutines (parallel tests are
// paused while it runs).
func TestSlowUpstreamIsBoundedAndTimesOut(t *testing.T) {
	const m = 4
	hc, err := egress.New(egress.Options{AllowPrivate: true, Timeout: 300 * time.Millisecond})
	require.NoError(t, err)
	b := setup(t, setupOpts{configure: func(c *webmcp.Config) {
		c.HTTPClient = hc.HTTPClient()
		c.UpstreamMaxInFlight, c.UpstreamSlotWait = m, 100*time.Millisecond
		c.BreakerThreshold = 1000 // this test is about the bound
	}})
	slow := startSlowUpstream(t, time.Minute)
	b.restUpstream(t, b.tenantA.ID, "slow", "Slow API", slow.url, "s_ping")
	a := newAgent(t, b.resource, b.tokenA(t))
	a.mustCall(t, "s_ping") // warm: token, tenant, connections
	a.hc.CloseIdleConnections()
	hc.HTTPClient().CloseIdleConnections()
	time.Sleep(50 * time.Millisecond)
	baseline := runtime.NumGoroutine()

	var wg sync.WaitGroup
	results := make([]callResult, 5*m)
	errs := make([]error, 5*m)
	for i := range results {
		wg.Go(func() { results[i], errs[i] = a.call("s_ping") })
	}
	wg.Wait()
	var timedOut, busy int
	for i, r := range results {
		require.NoError(t, errs[i])
		require.True(t, r.isError, r.text)
		require.Equal(t, true, r.err["retryable"], r.text)
		switch {
		case strings.Contains(r.text, "Slow API could not be reached (timeout)"):
			timedOut++
		case r.refusedBy("upstream_busy"):
			busy++
			require.Contains(t, r.text, "Slow API is answering slowly: 4 calls to it are already in progress from this Locksmith server, so this call was not made")
			require.Less(t, r.latency, 2*time.Second)
		default:
			t.Fatalf("unexpected answer: %s", r.text)
		}
	}
	require.Equal(t, 5*m, timedOut+busy)
	require.GreaterOrEqual(t, timedOut, m)
	require.Positive(t, busy, "the bound refused some calls")
	require.LessOrEqual(t, slow.peak.Load(), int32(m), "the upstream never saw more than M calls at once")
	require.EqualValues(t, 1+timedOut, slow.total.Load(), "only admitted calls reached the upstream")

	a.hc.CloseIdleConnections()
	hc.HTTPClient().CloseIdleConnections()
	// A slack of two absorbs the shared database pool and caches settling
	// (seen once in many runs); a leak per call would leave 20 or more.
	if !eventuallyGoroutinesAtMost(baseline + 2) {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d now, baseline %d\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
	}
	require.Zero(t, slow.inFlight.Load())
}

// TestOtherTenantsUnaffectedBySlowUpstream (c): while tenant A's upstream
// hangs and A's agents hammer it (its bound full, then its circuit open),
// tenant B's calls to its own upstream succeed at normal latency, and
// neither tenant's answers mention the other's upstream.
func TestOtherTenantsUnaffectedBySlowUpstream(t *testing.T) {
	t.Parallel()
	const m = 4
	hc, err := egress.New(egress.Options{AllowPrivate: true, Timeout: 300 * time.Millisecond})
	require.NoError(t, err)
	// Counted on Locksmith's side: the upstream's own count lags (it sees a
	// timed-out request end only when it notices the closed connection).
	slow := startSlowUpstream(t, time.Minute)
	counted := &countingTransport{base: hc.HTTPClient().Transport, host: strings.TrimPrefix(slow.url, "http://")}
	b := setup(t, setupOpts{configure: func(c *webmcp.Config) {
		c.HTTPClient = &http.Client{Transport: counted, Timeout: hc.HTTPClient().Timeout, CheckRedirect: hc.HTTPClient().CheckRedirect}
		c.UpstreamMaxInFlight, c.UpstreamSlotWait = m, 100*time.Millisecond
		c.BreakerThreshold, c.BreakerCoolDown = 3, time.Minute
	}})
	healthy := startScripted(t, status(http.StatusOK))
	b.restUpstream(t, b.tenantA.ID, "hanging", "Hanging API", slow.url, "a_ping")
	b.restUpstream(t, b.tenantB.ID, "fine", "Fine API", healthy.url, "b_ping")
	agentA := newAgent(t, b.resource, b.tokenA(t))
	agentB := newAgent(t, b.resB, b.tokenForB(t))
	r := agentB.mustCall(t, "b_ping") // warm B's caches
	require.False(t, r.isError, r.text)

	stop := make(chan struct{})
	var hammer sync.WaitGroup
	var aTexts sync.Map
	var aCalls atomic.Int32
	for range 16 {
		hammer.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if r, err := agentA.call("a_ping"); err == nil {
					aCalls.Add(1)
					aTexts.Store(r.text, true)
				}
			}
		})
	}
	var latencies []time.Duration
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		r := agentB.mustCall(t, "b_ping")
		require.False(t, r.isError, r.text)
		require.NotContains(t, r.text, "Hanging")
		latencies = append(latencies, r.latency)
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	hammer.Wait()

	slices.Sort(latencies)
	p99 := latencies[(len(latencies)*99)/100]
	t.Logf("tenant B: %d calls, p50 %s, p99 %s; tenant A: %d calls hammered", len(latencies), latencies[len(latencies)/2], p99, aCalls.Load())
	require.GreaterOrEqual(t, len(latencies), 20)
	require.Less(t, p99, 200*time.Millisecond, "tenant B's p99 while tenant A's upstream hangs")
	require.LessOrEqual(t, counted.peak.Load(), int32(m), "never more than M requests in flight to A's upstream")
	require.GreaterOrEqual(t, b.handler.UpstreamCircuitOpens(), uint64(1), "A's circuit opened")

	var sawOpen bool
	aTexts.Range(func(k, _ any) bool {
		text := k.(string)
		require.NotContains(t, text, "Fine API", "A's answers never mention B's upstream")
		sawOpen = sawOpen || strings.Contains(text, "Hanging API is unavailable: after 3 failed calls in a row")
		return true
	})
	require.True(t, sawOpen)
	require.EqualValues(t, int(healthy.requests.Load()), len(latencies)+1)
}

// TestClientErrorsDoNotOpenTheBreaker (d): 4xx answers are the caller's
// problem and never open the circuit; 5xx answers do. Calls go through the
// SDK path.
func TestClientErrorsDoNotOpenTheBreaker(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{configure: func(c *webmcp.Config) { c.BreakerThreshold, c.BreakerCoolDown = 2, time.Minute }})
	codes := []int{400, 403, 404, 409, 422}
	var i atomic.Int32
	picky := startScripted(t, func(w http.ResponseWriter, r *http.Request) {
		status(codes[int(i.Add(1)-1)%len(codes)])(w, r)
	})
	broken := startScripted(t, status(http.StatusBadGateway))
	b.restUpstream(t, b.tenantA.ID, "picky", "Picky API", picky.url, "p_ping")
	b.restUpstream(t, b.tenantA.ID, "broken", "Broken API", broken.url, "x_ping")
	cs := connect(t, b.resource, b.tokenA(t), nil)
	call := func(name string) *sdk.CallToolResult {
		res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: name})
		require.NoError(t, err)
		return res
	}

	for k := range 3 * len(codes) {
		res := call("p_ping")
		require.True(t, res.IsError)
		e := res.StructuredContent.(map[string]any)["error"].(map[string]any)
		require.EqualValues(t, codes[k%len(codes)], e["status"], textOf(res))
		require.NotContains(t, textOf(res), "stopped calling")
	}
	require.EqualValues(t, 3*len(codes), picky.requests.Load(), "every 4xx call reached the upstream")

	for range 2 {
		require.Contains(t, textOf(call("x_ping")), "HTTP 502")
	}
	res := call("x_ping")
	require.Contains(t, textOf(res), "Broken API is unavailable: after 2 failed calls in a row")
	require.Contains(t, textOf(res), "for 1 min")
	require.EqualValues(t, 2, broken.requests.Load())
	require.Equal(t, "circuit_open", res.StructuredContent.(map[string]any)["error"].(map[string]any)["reason"])
}

// TestRateLimitIsNotAnOutage (e): a 429 reaches the agent as a retryable
// error with the upstream's Retry-After, but never opens the circuit the
// tenant's users share (rate limits are often per user): however many 429s,
// the next call goes upstream, and other users' calls are not refused.
func TestRateLimitIsNotAnOutage(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{configure: func(c *webmcp.Config) { c.BreakerThreshold = 2 }})
	limited := startScripted(t, status(http.StatusTooManyRequests, "Retry-After", "7"))
	b.restUpstream(t, b.tenantA.ID, "limited", "Limited API", limited.url, "l_ping")
	a := newAgent(t, b.resource, b.tokenA(t))

	for range 5 {
		r := a.mustCall(t, "l_ping")
		require.Contains(t, r.text, "Limited API is rate limiting requests (HTTP 429)")
		require.False(t, r.refusedBy("circuit_open"), r.text)
		require.EqualValues(t, 7, r.err["retry_after_seconds"])
	}
	require.EqualValues(t, 5, limited.requests.Load(), "every call reached the upstream: no circuit opened")
	limited.set(status(http.StatusOK))
	r := a.mustCall(t, "l_ping")
	require.False(t, r.isError, r.text)
	require.EqualValues(t, 6, limited.requests.Load())
}

// TestHalfOpenLetsExactlyOneProbeThrough (f): when many calls arrive at
// once after the cool-down, exactly one reaches the upstream; the others
// are told it is being checked.
func TestHalfOpenLetsExactlyOneProbeThrough(t *testing.T) {
	t.Parallel()
	const coolDown = 200 * time.Millisecond
	b := setup(t, setupOpts{configure: func(c *webmcp.Config) { c.BreakerThreshold, c.BreakerCoolDown = 2, coolDown }})
	up := startScripted(t, status(http.StatusServiceUnavailable))
	b.restUpstream(t, b.tenantA.ID, "wobbly", "Wobbly API", up.url, "w_ping")
	a := newAgent(t, b.resource, b.tokenA(t))
	a.mustCall(t, "w_ping")
	a.mustCall(t, "w_ping")
	require.True(t, a.mustCall(t, "w_ping").refusedBy("circuit_open"))
	require.EqualValues(t, 2, up.requests.Load())

	// Back, but slow to answer: the probe is still in flight while the
	// others arrive.
	up.set(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(500 * time.Millisecond)
		status(http.StatusOK)(w, r)
	})
	time.Sleep(coolDown)
	const callers = 20
	results := make([]callResult, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range callers {
		wg.Go(func() {
			<-start
			results[i], errs[i] = a.call("w_ping")
		})
	}
	close(start)
	wg.Wait()
	var probes, refused int
	for i, r := range results {
		require.NoError(t, errs[i])
		switch {
		case !r.isError:
			probes++
		case r.refusedBy("circuit_open"):
			refused++
			require.Contains(t, r.text, "Wobbly API is unavailable: after repeated failures Locksmith stopped calling it for 0.2 s and is now checking whether it is back")
		default:
			t.Fatalf("unexpected answer: %s", r.text)
		}
	}
	require.Equal(t, 1, probes)
	require.Equal(t, callers-1, refused)
	require.EqualValues(t, 3, up.requests.Load(), "exactly one probe reached the upstream")
	require.False(t, a.mustCall(t, "w_ping").isError, "the probe closed the circuit")
}

// TestBreakerGuardsRelayedMCPUpstream: the relay of an upstream MCP
// server's tools passes the same gate.
func TestBreakerGuardsRelayedMCPUpstream(t *testing.T) {
	t.Parallel()
	const coolDown = 200 * time.Millisecond
	b := setup(t, setupOpts{configure: func(c *webmcp.Config) { c.BreakerThreshold, c.BreakerCoolDown = 2, coolDown }})
	inner := startUpstreamMCP(t, "")
	var down, limited atomic.Bool
	var requests atomic.Int32
	target := strings.TrimSuffix(inner.url, "/mcp")
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if down.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if limited.Load() {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.Path, r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(front.Close)
	_, err := b.svc.CreateUpstream(context.Background(), b.tenantA.ID, tenants.UpstreamInput{Slug: "tools", Name: "Tool Box", Kind: tenants.UpstreamMCP, BaseURL: front.URL + "/mcp", AuthMode: tenants.AuthNone})
	require.NoError(t, err)
	time.Sleep(60 * time.Millisecond)
	cs := connect(t, b.resource, b.tokenA(t), nil)
	echo := func() *sdk.CallToolResult {
		res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "tools.echo", Arguments: map[string]any{"text": "hi"}})
		require.NoError(t, err)
		return res
	}
	res := echo()
	require.False(t, res.IsError, textOf(res))

	// A 429 is not an outage: more than the threshold of them, and every
	// call still reaches the upstream.
	limited.Store(true)
	for range 4 {
		before := requests.Load()
		res := echo()
		require.True(t, res.IsError, textOf(res))
		require.NotContains(t, textOf(res), "stopped calling")
		require.Greater(t, requests.Load(), before, "the call reached the upstream")
	}
	limited.Store(false)
	res = echo()
	require.False(t, res.IsError, textOf(res))

	down.Store(true)
	for range 2 {
		require.Contains(t, textOf(echo()), "Tool Box could not be reached")
	}
	seen := requests.Load()
	res = echo()
	require.True(t, res.IsError)
	require.Contains(t, textOf(res), "Tool Box is unavailable: after 2 failed calls in a row")
	require.Equal(t, seen, requests.Load(), "refused without contacting the upstream")

	down.Store(false)
	time.Sleep(coolDown)
	res = echo()
	require.False(t, res.IsError, textOf(res))
	require.Equal(t, map[string]any{"echo": "hi"}, res.StructuredContent)
}

// eventuallyGoroutinesAtMost waits up to 5 s for the process to run at
// most n goroutines.
func eventuallyGoroutinesAtMost(n int) bool {
	for range 250 {
		if runtime.NumGoroutine() <= n {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
