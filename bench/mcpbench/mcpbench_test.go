package mcpbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/auth"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/jobs"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/approvals"
	"github.com/locksmithhq/locksmith/tenants/audit"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/policy"
	"github.com/locksmithhq/locksmith/tenants/seal"
	"github.com/locksmithhq/locksmith/tenants/tokena"
	webmcp "github.com/locksmithhq/locksmith/web/mcp"
)

func TestMain(m *testing.M) { os.Exit(sqltest.Main(m)) }

const (
	endpointScope = "mcp:tools"
	audience      = "https://bench.locksmith.example/mcp"
	toolName      = "listTasks"
	callBody      = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"listTasks","arguments":{}}}`
	callBody2026  = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"listTasks","arguments":{},"_meta":{` +
		`"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"bench","version":"1"},` +
		`"io.modelcontextprotocol/clientCapabilities":{}}}}`
)

// nopAudit is the benchmark-only switch that leaves the audit trail out of
// the hot path (policy, broker and upstream still run).
type nopAudit struct{}

func (nopAudit) Intent(context.Context, webmcp.Intent) (string, error) { return "1", nil }
func (nopAudit) Outcome(context.Context, uuid.UUID, string, webmcp.Outcome) error {
	return nil
}

// target is one way of making the call.
type target struct {
	name string
	req  func() *http.Request
}

// env is everything the benchmarks call, on port-0 listeners.
type env struct {
	client  *http.Client
	targets []target // direct first: the others are compared with it
	writer  *audit.Writer
	tenant  uuid.UUID
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// setup builds the stack once per top-level benchmark and warms every
// cache (JWKS, verified tokens, tenant registrations, policy rules, Token B,
// upstream connections).
func setup(b *testing.B) *env {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	db := sqltest.DB(b)
	key, err := seal.GenerateMasterKey("bench")
	must(err)
	mk, err := seal.ParseMasterKeys(key)
	must(err)
	sealer, err := seal.New(db, mk)
	must(err)
	eg, err := egress.New(egress.Options{AllowPrivate: true})
	must(err)

	demoIdP := idp.NewTestServer(b)
	// A short request log: Acme Tasks trims it by copying, which at its
	// default size (10,000) would cost the upstream more than the call.
	acme, err := tasks.New(tasks.Config{Logger: discard(), MaxRecords: 64})
	must(err)
	must(acme.Start("127.0.0.1:0"))
	b.Cleanup(func() { _ = acme.Close(context.Background()) })

	lns := make([]net.Listener, 4)
	for i := range lns {
		lns[i], err = net.Listen("tcp", "127.0.0.1:0")
		must(err)
	}
	baseDurable, baseNop, baseMin, baseMinPooled := "http://"+lns[0].Addr().String(), "http://"+lns[1].Addr().String(),
		"http://"+lns[2].Addr().String(), "http://"+lns[3].Addr().String()

	svc, err := tenants.New(tenants.Config{DB: db, Sealer: sealer, Egress: eg, Logger: discard(), BaseURL: baseDurable})
	must(err)
	inserter, err := jobs.NewInserter(db, discard())
	must(err)
	vault, err := consent.NewVault(consent.VaultConfig{DB: db, Sealer: sealer, Inserter: inserter, Logger: discard()})
	must(err)
	broker, err := consent.NewBroker(consent.BrokerConfig{Vault: vault, Upstreams: svc, Egress: eg, Logger: discard(),
		ConsentURL: func(context.Context, uuid.UUID, tenants.Upstream, []string) string { return baseDurable + "/consent" }})
	must(err)
	must(broker.Start(ctx))
	b.Cleanup(broker.Close)
	engine, err := policy.New(policy.Config{DB: db, Logger: discard()})
	must(err)
	go func() { _ = engine.Run(ctx) }()
	appr, err := approvals.New(approvals.Config{DB: db, Sealer: sealer, Egress: eg, Jobs: inserter, Logger: discard(), BaseURL: baseDurable})
	must(err)
	writer, err := audit.NewWriter(audit.WriterConfig{DB: db, Logger: discard()})
	must(err)
	b.Cleanup(func() { _ = writer.Close(context.Background()) })

	owner, err := svc.SignUp(ctx, "owner-"+uuid.NewString()[:8]+"@example.com", "a long enough password")
	must(err)
	tn, err := svc.CreateTenant(ctx, owner.ID, "bench-"+uuid.NewString()[:8], "Bench Corp")
	must(err)
	_, err = svc.SaveIdP(ctx, tn.ID, tenants.IdPInput{Issuer: demoIdP.URL(), Audience: audience, RequiredScopes: []string{endpointScope}})
	must(err)
	secret := tasks.DefaultClientSecret
	up, err := svc.CreateUpstream(ctx, tn.ID, tenants.UpstreamInput{
		Slug: "acme-tasks", Name: "Acme Tasks", Kind: tenants.UpstreamREST, BaseURL: acme.URL(), AuthMode: tenants.AuthOAuth2,
		AuthorizeURL: acme.AuthURL(), TokenURL: acme.TokenURL(), RevocationURL: acme.RevocationURL(),
		ClientID: tasks.DefaultClientID, ClientSecret: &secret, ScopesOffered: tasks.SupportedScopes(), PKCE: true,
	})
	must(err)
	_, err = svc.CreateTool(ctx, tn.ID, tenants.ToolInput{UpstreamID: up.ID, Name: toolName, Method: "GET", PathTemplate: "/tasks",
		RequiredScopes: []string{tasks.ScopeRead}, Risk: tenants.RiskRead, Enabled: true})
	must(err)
	issued, err := acme.IssueTokens("engineer", tasks.DefaultClientID, []string{tasks.ScopeRead, tasks.ScopeWrite})
	must(err)
	tokenB := issued.AccessToken
	user, _ := demoIdP.LookupUser(idp.UsernameEngineer)
	_, err = vault.SaveGrant(ctx, tn.ID, up.ID, consent.User{Issuer: demoIdP.URL(), Subject: user.Subject, Email: user.Email},
		consent.Tokens{AccessToken: tokenB, RefreshToken: issued.RefreshToken, ExpiresAt: time.Now().Add(time.Hour), Scopes: strings.Fields(issued.Scope)})
	must(err)
	tokenA, err := demoIdP.MintAccessToken(idp.MintRequest{User: idp.UsernameEngineer, Audience: []string{audience},
		Scopes: []string{endpointScope}, Lifetime: 2 * time.Hour})
	must(err)

	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 256, DisableCompression: true, IdleConnTimeout: time.Minute}}
	// Three small tasks, so the answer is a realistic small JSON document.
	for _, title := range []string{"Rotate the staging keys", "Review the release notes", "Renew the TLS certificate"} {
		req, _ := http.NewRequest(http.MethodPost, acme.URL()+"/tasks", strings.NewReader(`{"title":"`+title+`"}`))
		req.Header.Set("Authorization", "Bearer "+tokenB)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		must(err)
		_ = resp.Body.Close()
	}

	verifier, err := tokena.New(tokena.Config{HTTP: eg.HTTPClient(), Logger: discard()})
	must(err)
	serve := func(ln net.Listener, h http.Handler) {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		b.Cleanup(func() { _ = srv.Close() })
	}
	handler := func(base string, a webmcp.Audit) http.Handler {
		u, _ := url.Parse(base)
		h, err := webmcp.New(webmcp.Config{
			BaseURL: u, Logger: discard(), Registry: webmcp.TenantsRegistry{Service: svc}, Verifier: verifier,
			HTTPClient: eg.HTTPClient(), Broker: webmcp.ConsentBroker{Broker: broker}, Sealer: sealer,
			Policy: webmcp.PolicyEngine{Engine: engine, Approvals: appr}, Audit: a,
		})
		must(err)
		return h
	}
	serve(lns[0], handler(baseDurable, webmcp.DurableAudit{Writer: writer}))
	serve(lns[1], handler(baseNop, nopAudit{}))
	minimal, err := minimalServer(ctx, demoIdP.URL(), acme.URL(), tokenB, http.DefaultClient)
	must(err)
	serve(lns[2], minimal)
	pooled, err := minimalServer(ctx, demoIdP.URL(), acme.URL(), tokenB, &http.Client{Transport: &http.Transport{
		MaxIdleConns: 256, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}})
	must(err)
	serve(lns[3], pooled)

	mcpReq := func(endpoint, version, body string, hdr ...string) func() *http.Request {
		return func() *http.Request {
			req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tokenA)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Mcp-Protocol-Version", version)
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			return req
		}
	}
	e := &env{client: client, writer: writer, tenant: tn.ID, targets: []target{
		{"direct", func() *http.Request {
			req, _ := http.NewRequest(http.MethodGet, acme.URL()+"/tasks", nil)
			req.Header.Set("Authorization", "Bearer "+tokenB)
			req.Header.Set("Accept", "application/json")
			return req
		}},
		{"minimal", mcpReq(baseMin+"/mcp", "2025-11-25", callBody)},
		{"minimal-pooled", mcpReq(baseMinPooled+"/mcp", "2025-11-25", callBody)},
		{"locksmith-noaudit", mcpReq(baseNop+"/t/"+tn.Slug+"/mcp", "2025-11-25", callBody)},
		{"locksmith-durable", mcpReq(baseDurable+"/t/"+tn.Slug+"/mcp", "2025-11-25", callBody)},
		// The 2026-07-28 protocol is served by the SDK, not the fast path.
		{"locksmith-noaudit-2026", mcpReq(baseNop+"/t/"+tn.Slug+"/mcp", "2026-07-28", callBody2026,
			"Mcp-Method", "tools/call", "Mcp-Name", toolName)},
	}}
	deadline := time.Now().Add(10 * time.Second)
	for !engine.Listening() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, t := range e.targets {
		body, err := e.do(t)
		must(err)
		if !strings.Contains(body, "Rotate the staging keys") || strings.Contains(body, `"isError":true`) {
			b.Fatalf("%s answered %s", t.name, body)
		}
		for range 300 { // warm-up
			_, err := e.do(t)
			must(err)
		}
	}
	return e
}

// do makes one call and returns the answer.
func (e *env) do(t target) (string, error) {
	resp, err := e.client.Do(t.req())
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: HTTP %d: %s", t.name, resp.StatusCode, body)
	}
	return string(body), nil
}

// doDiscard makes one call and drops the answer.
func (e *env) doDiscard(t target) error {
	resp, err := e.client.Do(t.req())
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", t.name, resp.StatusCode)
	}
	return err
}

// minimalServer is the comparison point: the Go SDK's stateless Streamable
// HTTP handler behind the SDK's bearer middleware, verifying every Token A
// with go-oidc (signature, iss, aud, exp; no verified-token cache), with one
// tool that calls Acme Tasks with a fixed Token B through hc (no policy, no
// audit, no broker, no per-tenant anything). "minimal" uses
// http.DefaultClient, as such servers usually do (2 idle connections per
// host); "minimal-pooled" a transport with a pool as large as Locksmith's.
func minimalServer(ctx context.Context, issuer, upstream, tokenB string, hc *http.Client) (http.Handler, error) {
	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		return nil, err
	}
	verifier := provider.Verifier(&oidc.Config{ClientID: audience})
	verify := func(ctx context.Context, raw string, _ *http.Request) (*auth.TokenInfo, error) {
		tok, err := verifier.Verify(ctx, raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", auth.ErrInvalidToken, err)
		}
		var c struct {
			Scope string `json:"scope"`
		}
		if err := tok.Claims(&c); err != nil {
			return nil, fmt.Errorf("%w: %v", auth.ErrInvalidToken, err)
		}
		return &auth.TokenInfo{Scopes: strings.Fields(c.Scope), Expiration: tok.Expiry, UserID: tok.Subject}, nil
	}
	srv := sdk.NewServer(&sdk.Implementation{Name: "minimal", Version: "1"}, nil)
	srv.AddTool(&sdk.Tool{Name: toolName, InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(ctx context.Context, _ *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, upstream+"/tasks", nil)
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+tokenB)
			req.Header.Set("Accept", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				return nil, err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if err != nil {
				return nil, err
			}
			var structured map[string]any
			_ = json.Unmarshal(body, &structured)
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: string(bytes.TrimSpace(body))}}, StructuredContent: structured}, nil
		})
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return srv }, &sdk.StreamableHTTPOptions{Stateless: true})
	mux := http.NewServeMux()
	mux.Handle("/mcp", auth.RequireBearerToken(verify, &auth.RequireBearerTokenOptions{Scopes: []string{endpointScope}})(h))
	return mux, nil
}

// Block sizes of one BenchmarkCompare round, per target.
const (
	latencyBlock    = 400  // calls made one at a time
	throughputBurst = 2000 // calls made by 16 concurrent clients
	clients         = 16
)

// BenchmarkCompare measures every target in rounds (b.N rounds): in each,
// every target in turn (starting one further each round) makes
// latencyBlock calls one at a time, then throughputBurst calls from 16
// concurrent clients. Interleaving the targets in short blocks makes a
// noisy machine's drift hit them alike. It reports per target: p50 and p99
// over all rounds' calls and what they add over the direct call; the median
// round's requests per second and its ratio to the minimal server's in the
// same round; and allocations per call (whole process, as
// runtime.MemStats.Mallocs counts them).
func BenchmarkCompare(b *testing.B) {
	e := setup(b)
	b.Run("rounds", func(b *testing.B) {
		n := len(e.targets)
		lat := make([][]time.Duration, n)
		rps := make([][]float64, n)
		allocs := make([][]float64, n)
		minimal := slices.IndexFunc(e.targets, func(t target) bool { return t.name == "minimal" })
		b.ResetTimer()
		for round := range b.N {
			for k := range n {
				i := (round + k) % n
				t := e.targets[i]
				runtime.GC()
				for range latencyBlock {
					start := time.Now()
					if err := e.doDiscard(t); err != nil {
						b.Fatal(err)
					}
					lat[i] = append(lat[i], time.Since(start))
				}
				r, a, err := e.burst(t)
				if err != nil {
					b.Fatal(err)
				}
				rps[i], allocs[i] = append(rps[i], r), append(allocs[i], a)
			}
		}
		b.StopTimer()
		d50, d99 := percentile(lat[0], 0.50), percentile(lat[0], 0.99)
		for i, t := range e.targets {
			p50, p99 := percentile(lat[i], 0.50), percentile(lat[i], 0.99)
			b.ReportMetric(p50, t.name+"-p50-us")
			b.ReportMetric(p99, t.name+"-p99-us")
			if i > 0 {
				b.ReportMetric(p50-d50, t.name+"-added-p50-us")
				b.ReportMetric(p99-d99, t.name+"-added-p99-us")
			}
			b.ReportMetric(median(rps[i]), t.name+"-req/s")
			b.ReportMetric(median(allocs[i]), t.name+"-allocs/call")
			if minimal >= 0 && i != minimal {
				ratios := make([]float64, len(rps[i]))
				for r := range rps[i] {
					ratios[r] = rps[i][r] / rps[minimal][r]
				}
				b.ReportMetric(median(ratios), t.name+"-x-minimal-req/s")
			}
		}
	})
}

// burst makes throughputBurst calls from 16 concurrent clients and returns
// calls per second and allocations per call.
func (e *env) burst(t target) (float64, float64, error) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= throughputBurst {
				if err := e.doDiscard(t); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	return throughputBurst / elapsed.Seconds(), float64(after.Mallocs-before.Mallocs) / throughputBurst, firstErr
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile returns the q-quantile of d in microseconds.
func percentile(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	i = max(0, min(i, len(s)-1))
	return float64(s[i]) / float64(time.Microsecond)
}

// BenchmarkThroughput saturates one kind of call with 8×GOMAXPROCS
// concurrent clients and reports requests per second and allocations per
// request, in the usual benchmark form (for profiles: -bench
// 'Throughput/locksmith-noaudit$' -cpuprofile …). Allocations count the
// whole process: the benchmark's client and Acme Tasks as well as the server
// under test (the direct call's figure is that baseline). BenchmarkCompare
// is the fair comparison on a noisy machine.
func BenchmarkThroughput(b *testing.B) {
	e := setup(b)
	for _, t := range e.targets {
		b.Run(t.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8)
			var mu sync.Mutex
			var firstErr error
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := e.doDiscard(t); err != nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
					}
				}
			})
			b.StopTimer()
			if firstErr != nil {
				b.Fatal(firstErr)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
}

// BenchmarkAuditCommit is one durable audit write on its own, one at a
// time: what each of the two commits on a durable tools/call costs (group
// commit batches concurrent callers; alone, each write waits for its own
// COMMIT and WAL flush).
func BenchmarkAuditCommit(b *testing.B) {
	e := setup(b)
	b.Run("intent", func(b *testing.B) {
		a := webmcp.DurableAudit{Writer: e.writer}
		in := webmcp.Intent{TenantID: e.tenant, RequestID: "bench", Issuer: "https://idp.example", Subject: "engineer",
			Agent: "mcp-agent", Tool: toolName, Upstream: "acme-tasks", Method: "GET", PathTemplate: "/tasks",
			TokenScopes: []string{tasks.ScopeRead}, Decision: webmcp.Decision{Effect: webmcp.Allow, Rule: "default", Reason: "allowed"}}
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			start := time.Now()
			if _, err := a.Intent(context.Background(), in); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		b.StopTimer()
		b.ReportMetric(percentile(lat, 0.50), "p50-us")
		b.ReportMetric(percentile(lat, 0.99), "p99-us")
	})
}
