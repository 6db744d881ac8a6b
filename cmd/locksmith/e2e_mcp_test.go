package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/approvals"
	"github.com/locksmithhq/locksmith/tenants/audit"
	"github.com/locksmithhq/locksmith/tenants/policy"
)

// mcpEndpointScope is the scope every request to the test tenants' MCP
// endpoint needs (the IdP registration's RequiredScopes).
const mcpEndpointScope = "mcp:tools"

// mcpTenant is a tenant registered through the domain services, as
// dev_seed.go does: the demo IdP, Acme Tasks and its imported tools.
type mcpTenant struct {
	tenant   tenants.Tenant
	upstream tenants.Upstream
	url      string // the MCP endpoint
}

func newMCPTenant(t *testing.T, st *stack) mcpTenant {
	t.Helper()
	ctx := context.Background()
	svc := st.Main.Tenants
	owner, err := svc.SignUp(ctx, "owner-"+uuid.NewString()[:8]+"@example.com", "a long enough password")
	require.NoError(t, err)
	tn, err := svc.CreateTenant(ctx, owner.ID, "mcp-"+uuid.NewString()[:8], "Acme Corp")
	require.NoError(t, err)
	idpSecret := idp.DefaultLocksmithSecret
	_, err = svc.SaveIdP(ctx, tn.ID, tenants.IdPInput{Issuer: st.IdP.URL(), Preset: "generic", ClientID: idp.ClientLocksmith,
		ClientSecret: &idpSecret, RequiredScopes: []string{mcpEndpointScope}})
	require.NoError(t, err)
	acmeSecret := tasks.DefaultClientSecret
	up, err := svc.CreateUpstream(ctx, tn.ID, tenants.UpstreamInput{
		Slug: "acme-tasks", Name: "Acme Tasks", Kind: tenants.UpstreamREST, BaseURL: st.Tasks.URL(), AuthMode: tenants.AuthOAuth2,
		Issuer: st.Tasks.URL(), ClientID: tasks.DefaultClientID, ClientSecret: &acmeSecret, ScopesOffered: tasks.SupportedScopes(),
		PKCE: true, RefreshNarrows: true,
	})
	require.NoError(t, err)
	preview, _, err := svc.ImportPreview(ctx, tn.ID, up.ID, tasks.OpenAPIDocument(st.Tasks.URL()))
	require.NoError(t, err)
	_, err = svc.ImportTools(ctx, tn.ID, up.ID, preview)
	require.NoError(t, err)
	// A tool only the finance group may call, for a denial by condition.
	_, err = svc.CreateTool(ctx, tn.ID, tenants.ToolInput{UpstreamID: up.ID, Name: "financeReport", Method: "GET", PathTemplate: "/tasks",
		RequiredScopes: []string{tasks.ScopeRead}, Risk: tenants.RiskRead, Enabled: true, Condition: `"finance" in principal.groups`})
	require.NoError(t, err)
	_, err = st.Main.Approval.SaveSettings(ctx, tn.ID, approvals.SettingsInput{ApproverGroup: "approvers", TTL: approvals.MinTTL})
	require.NoError(t, err)
	return mcpTenant{tenant: tn, upstream: up, url: st.URL + "/t/" + tn.Slug + "/mcp"}
}

// discoveringAuth is an MCP client's OAuth handler that starts from nothing:
// on a 401 it reads resource_metadata from WWW-Authenticate, fetches the
// protected resource metadata, and logs in at authorization_servers[0] as a
// demo user (authorization code + PKCE, RFC 8707 resource = the PRM's
// resource). It records what it saw.
type discoveringAuth struct {
	user string

	mu        sync.Mutex
	token     *oauth2.Token
	challenge map[string]string
	prm       *oauthex.ProtectedResourceMetadata
	statuses  []int
}

func (a *discoveringAuth) TokenSource(context.Context) (oauth2.TokenSource, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token == nil {
		return nil, nil
	}
	return oauth2.StaticTokenSource(a.token), nil
}

func (a *discoveringAuth) Authorize(ctx context.Context, req *http.Request, resp *http.Response) error {
	resp.Body.Close()
	a.mu.Lock()
	a.statuses = append(a.statuses, resp.StatusCode)
	a.mu.Unlock()
	chs, err := oauthex.ParseWWWAuthenticate(resp.Header.Values("WWW-Authenticate"))
	if err != nil {
		return err
	}
	var bearer map[string]string
	for _, c := range chs {
		if c.Scheme == "bearer" {
			bearer = c.Params
		}
	}
	if bearer["resource_metadata"] == "" {
		return errors.New("no resource_metadata in the challenge")
	}
	resource := req.URL.Scheme + "://" + req.URL.Host + req.URL.Path
	prm, err := oauthex.GetProtectedResourceMetadata(ctx, bearer["resource_metadata"], resource, http.DefaultClient)
	if err != nil {
		return err
	}
	if len(prm.AuthorizationServers) == 0 {
		return errors.New("the metadata names no authorization server")
	}
	tok, err := idp.HeadlessLogin{Issuer: prm.AuthorizationServers[0], Username: a.user, Resource: prm.Resource,
		Scopes: strings.Fields(bearer["scope"])}.Run(ctx)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.token, a.challenge, a.prm = tok, bearer, prm
	a.mu.Unlock()
	return nil
}

// elicitations records the URL elicitations a client received.
type elicitations struct {
	mu   sync.Mutex
	list []*sdk.ElicitParams
}

func (e *elicitations) handle(_ context.Context, req *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, req.Params)
	return &sdk.ElicitResult{Action: "accept"}, nil
}

func (e *elicitations) all() []*sdk.ElicitParams {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*sdk.ElicitParams(nil), e.list...)
}

// mcpConnect opens a Go SDK client session over Streamable HTTP.
func mcpConnect(t *testing.T, endpoint string, hc *http.Client, oauth *discoveringAuth, opts *sdk.ClientOptions) *sdk.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr := &sdk.StreamableClientTransport{Endpoint: endpoint, HTTPClient: hc, MaxRetries: -1}
	if oauth != nil {
		tr.OAuthHandler = oauth
	}
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "e2e-agent", Version: "1"}, opts).Connect(ctx, tr, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// bearerClient is an HTTP client that presents token.
func bearerClient(token string, base http.RoundTripper) *http.Client {
	if base == nil {
		base = http.DefaultTransport
	}
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+token)
		return base.RoundTrip(r)
	})}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func callTool(t *testing.T, cs *sdk.ClientSession, name string, args map[string]any) *sdk.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
	require.NoError(t, err)
	return res
}

func resultText(res *sdk.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// toolErr returns structuredContent.error of a failed call.
func toolErr(t *testing.T, res *sdk.CallToolResult) map[string]any {
	t.Helper()
	require.True(t, res.IsError, "expected a tool error, got %s", resultText(res))
	sc, ok := res.StructuredContent.(map[string]any)
	require.True(t, ok, "structuredContent: %#v", res.StructuredContent)
	e, ok := sc["error"].(map[string]any)
	require.True(t, ok, "structuredContent.error: %#v", sc)
	return e
}

// jwtClaims decodes a JWT's payload without verifying it (the server did).
func jwtClaims(t *testing.T, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	require.Len(t, parts, 3)
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

func deletesOf(st *stack) int {
	n := 0
	for _, r := range st.Tasks.Requests() {
		if r.Method == http.MethodDelete {
			n++
		}
	}
	return n
}

// TestMCPEndToEnd runs an agent through the whole application: OAuth
// discovery from the bare MCP URL, consent, calls with Token B,
// two-person approvals for a destructive tool, and the audit trail.
func TestMCPEndToEnd(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	env := newMCPTenant(t, st)
	ctx := context.Background()

	// (a) The client knows only the MCP URL. Its first request is refused
	// with 401; it follows resource_metadata to the PRM, logs in at the
	// IdP the PRM names (authorization code + PKCE), and retries.
	oauth := &discoveringAuth{user: idp.UsernameEngineer}
	var consentLinks elicitations
	cs := mcpConnect(t, env.url, http.DefaultClient, oauth, &sdk.ClientOptions{
		Capabilities:       &sdk.ClientCapabilities{Elicitation: &sdk.ElicitationCapabilities{URL: &sdk.URLElicitationCapabilities{}}},
		ElicitationHandler: consentLinks.handle,
	})
	require.Equal(t, []int{http.StatusUnauthorized}, oauth.statuses)
	require.Equal(t, st.URL+"/.well-known/oauth-protected-resource/t/"+env.tenant.Slug+"/mcp", oauth.challenge["resource_metadata"])
	require.Equal(t, env.url, oauth.prm.Resource)
	require.Equal(t, []string{st.IdP.URL()}, oauth.prm.AuthorizationServers)
	tokenA := oauth.token.AccessToken
	claims := jwtClaims(t, tokenA)
	require.Equal(t, env.url, claims["aud"])
	require.Contains(t, strings.Fields(claims["scope"].(string)), mcpEndpointScope)

	list, err := cs.ListTools(ctx, nil)
	require.NoError(t, err)
	listed := map[string]*sdk.Tool{}
	for _, tl := range list.Tools {
		listed[tl.Name] = tl
	}
	for _, name := range []string{"listTasks", "createTask", "getTask", "updateTask", "deleteTask"} {
		require.Contains(t, listed, name)
	}
	require.True(t, *listed["deleteTask"].Annotations.DestructiveHint)
	require.NotContains(t, listed, "financeReport", "the condition excludes the engineer")

	// Before consent: the consent URL, as a URL elicitation (2026-07-28),
	// then (the retry) as a tool error. Nothing reaches Acme Tasks.
	res := callTool(t, cs, "listTasks", map[string]any{})
	consentURL := st.URL + "/t/" + env.tenant.Slug + "/connect/acme-tasks"
	require.Len(t, consentLinks.all(), 1)
	require.True(t, strings.HasPrefix(consentLinks.all()[0].URL, consentURL), consentLinks.all()[0].URL)
	require.Equal(t, "consent_required", toolErr(t, res)["kind"])
	require.Empty(t, st.Tasks.Requests())

	// The user consents (the grant is stored as the consent flow would),
	// bound to Token A's issuer and subject.
	require.Equal(t, st.IdP.URL(), claims["iss"])
	require.Equal(t, idp.UserEngineer, claims["sub"])
	issued, err := st.Tasks.IssueTokens("engineer", tasks.DefaultClientID, []string{tasks.ScopeRead, tasks.ScopeWrite, tasks.ScopeDelete})
	require.NoError(t, err)
	_, err = st.Main.Vault.SaveGrant(ctx, env.tenant.ID, env.upstream.ID,
		consent.User{Issuer: claims["iss"].(string), Subject: claims["sub"].(string), Email: "engineer@acme.example"},
		consent.Tokens{AccessToken: issued.AccessToken, RefreshToken: issued.RefreshToken,
			ExpiresAt: time.Now().Add(time.Duration(issued.ExpiresIn) * time.Second), Scopes: strings.Fields(issued.Scope)})
	require.NoError(t, err)

	res = callTool(t, cs, "createTask", map[string]any{"title": "Rotate the staging keys"})
	require.False(t, res.IsError, resultText(res))
	res = callTool(t, cs, "listTasks", map[string]any{})
	require.False(t, res.IsError, resultText(res))
	require.Contains(t, resultText(res), "Rotate the staging keys")
	recs := st.Tasks.Requests()
	require.Len(t, recs, 2)
	for _, r := range recs {
		require.Equal(t, "engineer", r.Subject, "Acme Tasks saw the call as the engineer")
		require.Equal(t, tasks.DefaultClientID, r.ClientID, "with a Token B issued to Locksmith's client")
		require.Empty(t, r.TokenError)
		require.NotContains(t, r.Authorization, tokenA, "Token A never goes upstream")
		require.NotEqual(t, tasks.TokenHash(tokenA), r.TokenHash)
	}
	require.Equal(t, []string{tasks.ScopeWrite}, recs[0].Scopes, "Token B narrowed to the tool's scope")
	require.Equal(t, []string{tasks.ScopeRead}, recs[1].Scopes)

	// A denial names its rule.
	res = callTool(t, cs, "financeReport", map[string]any{})
	e := toolErr(t, res)
	require.Equal(t, "policy", e["kind"])
	require.Equal(t, policy.RuleCondition, e["rule"])
	require.Contains(t, resultText(res), `rule "condition"`)

	// (b) Two-person approval of a destructive call. This session has no
	// URL elicitation, so the approval link comes as a tool error.
	plain := mcpConnect(t, env.url, bearerClient(tokenA, nil), nil, nil)
	var taskIDs []string
	for _, title := range []string{"Old build cache", "Stale branch", "Expired draft"} {
		res := callTool(t, plain, "createTask", map[string]any{"title": title})
		require.False(t, res.IsError, resultText(res))
		taskIDs = append(taskIDs, res.StructuredContent.(map[string]any)["id"].(string))
	}
	del := map[string]any{"id": taskIDs[0]}
	res = callTool(t, plain, "deleteTask", del)
	e = toolErr(t, res)
	require.Equal(t, "approval_required", e["kind"])
	require.Equal(t, policy.RuleDestructive, e["rule"])
	approvalID, err := uuid.Parse(e["approval_id"].(string))
	require.NoError(t, err)
	require.Equal(t, st.URL+"/t/"+env.tenant.Slug+"/approvals/"+approvalID.String(), e["approval_url"])
	require.Contains(t, resultText(res), e["approval_url"])
	require.EqualValues(t, 2, e["approvals_required"])

	// Asking again with the same arguments is the same request.
	res = callTool(t, plain, "deleteTask", del)
	require.Equal(t, approvalID.String(), toolErr(t, res)["approval_id"])

	// The requester can't approve their own request, even in the group.
	requester := approvals.Person{Issuer: st.IdP.URL(), Subject: idp.UserEngineer}
	_, err = st.Main.Approval.Vote(ctx, env.tenant.ID, approvalID, approvals.Approver{Person: requester, Groups: []string{"approvers"}}, true, "")
	require.ErrorIs(t, err, tenants.ErrForbidden)
	approve := func(id uuid.UUID, subject string) {
		t.Helper()
		_, err := st.Main.Approval.Vote(ctx, env.tenant.ID, id, approvals.Approver{
			Person: approvals.Person{Issuer: st.IdP.URL(), Subject: subject}, Groups: []string{"approvers"}}, true, "")
		require.NoError(t, err)
	}

	// One approval is not enough.
	approve(approvalID, idp.UserApprover)
	res = callTool(t, plain, "deleteTask", del)
	e = toolErr(t, res)
	require.Equal(t, "approval_required", e["kind"])
	require.EqualValues(t, 1, e["approvals_given"])
	require.Zero(t, deletesOf(st))

	// After the second, a retry with other arguments is refused (and held
	// for its own approval) ...
	approve(approvalID, idp.UserApprover2)
	res = callTool(t, plain, "deleteTask", map[string]any{"id": taskIDs[1]})
	e = toolErr(t, res)
	require.Equal(t, "approval_required", e["kind"])
	require.NotEqual(t, approvalID.String(), e["approval_id"])
	require.Zero(t, deletesOf(st))

	// ... and two concurrent identical retries run the call exactly once.
	var wg sync.WaitGroup
	results := make([]*sdk.CallToolResult, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := plain.CallTool(ctx, &sdk.CallToolParams{Name: "deleteTask", Arguments: del})
			if err == nil {
				results[i] = r
			}
		}()
	}
	wg.Wait()
	ran := 0
	for _, r := range results {
		require.NotNil(t, r)
		if !r.IsError {
			ran++
		}
	}
	require.Equal(t, 1, ran, "exactly one retry runs")
	require.Equal(t, 1, deletesOf(st), "Acme Tasks records one DELETE")
	require.Len(t, st.Tasks.TasksOf("engineer"), 3, "four tasks were created, one is gone")

	// An expired approval is refused: approve a request, then let it pass
	// its expiry (the TTL is the shortest allowed; its clock is moved).
	expiring := map[string]any{"id": taskIDs[2]}
	res = callTool(t, plain, "deleteTask", expiring)
	expID, err := uuid.Parse(toolErr(t, res)["approval_id"].(string))
	require.NoError(t, err)
	approve(expID, idp.UserApprover)
	approve(expID, idp.UserApprover2)
	require.NoError(t, st.Main.DB.InTenant(ctx, env.tenant.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE approval_requests SET created_at = created_at - interval '2 minutes',
			expires_at = expires_at - interval '2 minutes' WHERE tenant_id = $1 AND id = $2`, env.tenant.ID, expID)
		return err
	}))
	res = callTool(t, plain, "deleteTask", expiring)
	e = toolErr(t, res)
	require.Equal(t, "approval_required", e["kind"])
	require.NotEqual(t, expID.String(), e["approval_id"], "a new request replaces the expired one")
	require.Equal(t, 1, deletesOf(st))

	// (c) The audit trail: every allowed call has its intent and outcome,
	// held and denied calls their decision and rule.
	page, err := st.Main.AuditLog.Query(ctx, env.tenant.ID, audit.Filter{Limit: 1000})
	require.NoError(t, err)
	var allowed, held, denied int
	var deleted *audit.Event
	for i, ev := range page.Events {
		require.Equal(t, idp.UserEngineer, ev.User.Subject)
		require.Equal(t, st.IdP.URL(), ev.User.Issuer)
		require.Equal(t, idp.ClientMCPAgent, ev.Agent)
		require.Equal(t, "acme-tasks", ev.Upstream)
		require.NotEmpty(t, ev.RequestID)
		switch ev.Decision {
		case audit.DecisionAllow:
			allowed++
			require.NotNil(t, ev.Outcome, "allowed call %s has an outcome", ev.Tool)
			if ev.Tool == "deleteTask" {
				deleted = &page.Events[i]
			}
		case audit.DecisionApproval:
			held++
			require.Equal(t, policy.RuleDestructive, ev.Rule)
			require.NotNil(t, ev.ApprovalID)
			require.Nil(t, ev.Outcome)
		case audit.DecisionDeny:
			denied++
			require.Equal(t, "financeReport", ev.Tool)
			require.Equal(t, policy.RuleCondition, ev.Rule)
			require.Nil(t, ev.Outcome)
		}
	}
	// allowed: listTasks before consent (the call and the client's retry
	// after the elicitation), createTask, listTasks, 3 × createTask, and
	// the one deleteTask that ran; held: every other deleteTask.
	require.Equal(t, 8, allowed)
	require.Equal(t, 1, denied)
	require.Equal(t, 7, held)
	require.NotNil(t, deleted)
	require.Equal(t, approvalID, *deleted.ApprovalID, "the DELETE is audited with the approval that allowed it")
	require.Equal(t, http.StatusNoContent, deleted.Outcome.Status)
	require.Equal(t, "DELETE", deleted.Method)
	require.Equal(t, "/tasks/{id}", deleted.PathTemplate)
	require.Equal(t, []string{tasks.ScopeDelete}, deleted.Scopes)
	require.True(t, deleted.Narrowed)
}

// startPeer runs a second instance of the application on the same database
// and the same public base URL (as behind a load balancer), HTTP only, and
// returns it with an HTTP transport that reaches it.
func startPeer(t *testing.T, st *stack) (*Main, http.RoundTripper) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg := st.Main.Config
	cfg.Addr = ln.Addr().String()
	m := &Main{Config: cfg, Logger: st.Main.Logger, Serve: true, listener: ln}
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, m.Open(ctx))
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	addr := ln.Addr().String()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	return m, tr
}

// TestMCPKillSwitchAcrossInstances flips a kill switch on one instance and
// sees the next call on another instance refused within a second.
func TestMCPKillSwitchAcrossInstances(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	env := newMCPTenant(t, st)
	peer, toPeer := startPeer(t, st)
	ctx := context.Background()

	issued, err := st.Tasks.IssueTokens("engineer", tasks.DefaultClientID, []string{tasks.ScopeRead})
	require.NoError(t, err)
	_, err = st.Main.Vault.SaveGrant(ctx, env.tenant.ID, env.upstream.ID,
		consent.User{Issuer: st.IdP.URL(), Subject: idp.UserEngineer},
		consent.Tokens{AccessToken: issued.AccessToken, RefreshToken: issued.RefreshToken,
			ExpiresAt: time.Now().Add(time.Hour), Scopes: strings.Fields(issued.Scope)})
	require.NoError(t, err)
	tokenA, err := st.IdP.MintAccessToken(idp.MintRequest{User: idp.UsernameEngineer, Audience: []string{env.url}, Scopes: []string{mcpEndpointScope}})
	require.NoError(t, err)

	one := mcpConnect(t, env.url, bearerClient(tokenA, nil), nil, nil)
	two := mcpConnect(t, env.url, bearerClient(tokenA, toPeer), nil, nil)
	require.Eventually(t, func() bool { return st.Main.Policy.Listening() && peer.Policy.Listening() }, 10*time.Second, 10*time.Millisecond,
		"both policy engines listen for rule changes (so they cache rules)")
	for _, cs := range []*sdk.ClientSession{one, two} {
		res := callTool(t, cs, "listTasks", map[string]any{})
		require.False(t, res.IsError, resultText(res))
	}
	before := len(st.Tasks.Requests())

	_, err = st.Main.Policy.SetKillSwitch(ctx, env.tenant.ID, policy.KillSwitch{Kind: policy.KillAgent, Value: idp.ClientMCPAgent, Reason: "incident drill"})
	require.NoError(t, err)
	flipped := time.Now()
	var res *sdk.CallToolResult
	for {
		res = callTool(t, two, "listTasks", map[string]any{})
		if res.IsError || time.Since(flipped) > 2*time.Second {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(flipped)
	e := toolErr(t, res)
	require.Equal(t, policy.RuleKillAgent, e["rule"])
	require.Less(t, took, time.Second, "the kill switch reached the other instance in %s", took)
	t.Logf("kill switch effective on the other instance after %s", took)
	res = callTool(t, one, "listTasks", map[string]any{})
	require.Equal(t, policy.RuleKillAgent, toolErr(t, res)["rule"])
	// Calls allowed in the window before the switch reached instance 2 ran;
	// nothing after.
	after := len(st.Tasks.Requests())
	allowedInWindow := after - before

	page, err := st.Main.AuditLog.Query(ctx, env.tenant.ID, audit.Filter{Decision: audit.DecisionDeny})
	require.NoError(t, err)
	require.Len(t, page.Events, 2, "both refusals are audited")
	for _, ev := range page.Events {
		require.Equal(t, policy.RuleKillAgent, ev.Rule)
		require.Contains(t, ev.Reason, "switched off")
	}
	page, err = st.Main.AuditLog.Query(ctx, env.tenant.ID, audit.Filter{Decision: audit.DecisionAllow})
	require.NoError(t, err)
	require.Len(t, page.Events, 2+allowedInWindow)
}
