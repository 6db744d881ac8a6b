package mcp_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/approvals"
	"github.com/locksmithhq/locksmith/tenants/audit"
	"github.com/locksmithhq/locksmith/tenants/policy"
	webmcp "github.com/locksmithhq/locksmith/web/mcp"
)

// The production policy and audit adapters satisfy the seams.
var (
	_ webmcp.Policy = webmcp.PolicyEngine{}
	_ webmcp.Audit  = webmcp.DurableAudit{}
)

// governed is a bundle whose endpoint runs the real policy engine,
// approvals and durable audit trail.
type governed struct {
	*testBundle
	engine *policy.Engine
	appr   *approvals.Service
	store  *audit.Store
}

func setupGoverned(t *testing.T, wrapAudit func(webmcp.Audit) webmcp.Audit, configure ...func(*webmcp.Config)) *governed {
	t.Helper()
	sharedDeps(t)
	g := &governed{}
	var err error
	g.engine, err = policy.New(policy.Config{DB: shared.db, Logger: testLogger()})
	require.NoError(t, err)
	w, err := audit.NewWriter(audit.WriterConfig{DB: shared.db, Logger: testLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	g.store, err = audit.New(audit.Config{DB: shared.db, Logger: testLogger()})
	require.NoError(t, err)
	g.testBundle = setup(t, setupOpts{configure: func(c *webmcp.Config) {
		g.appr, err = approvals.New(approvals.Config{DB: shared.db, Sealer: shared.sealer, Egress: shared.egress, Jobs: shared.inserter,
			Logger: testLogger(), BaseURL: c.BaseURL.String()})
		require.NoError(t, err)
		c.Policy = webmcp.PolicyEngine{Engine: g.engine, Approvals: g.appr}
		var a webmcp.Audit = webmcp.DurableAudit{Writer: w}
		if wrapAudit != nil {
			a = wrapAudit(a)
		}
		c.Audit = a
		for _, f := range configure {
			f(c)
		}
	}})
	return g
}

func (g *governed) events(t *testing.T, f audit.Filter) []audit.Event {
	t.Helper()
	page, err := g.store.Query(context.Background(), g.tenantA.ID, f)
	require.NoError(t, err)
	return page.Events
}

func TestPolicyEngineConditionsOverArguments(t *testing.T) {
	t.Parallel()
	g := setupGoverned(t, nil)
	g.addTool(t, g.tenantA.ID, tenants.ToolInput{UpstreamID: g.upA.ID, Name: "triage", Method: "GET", PathTemplate: "/tasks",
		QueryParams:    []string{"priority"},
		InputSchema:    json.RawMessage(`{"type":"object","properties":{"priority":{"type":"integer"}},"required":["priority"]}`),
		RequiredScopes: []string{tasks.ScopeRead}, Risk: tenants.RiskRead, Enabled: true, Condition: `args.priority < 5`})
	g.grant(t)
	cs := connect(t, g.resource, g.tokenA(t), nil)
	ctx := context.Background()

	list, err := cs.ListTools(ctx, nil)
	require.NoError(t, err)
	var names []string
	for _, tl := range list.Tools {
		names = append(names, tl.Name)
	}
	require.Contains(t, names, "triage", "a condition over arguments is decided at call time, not by hiding the tool")
	require.Contains(t, names, "delete_task", "tools needing approval are listed")

	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "triage", Arguments: map[string]any{"priority": 3}})
	require.NoError(t, err)
	require.False(t, res.IsError, textOf(res))
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "triage", Arguments: map[string]any{"priority": 7}})
	require.NoError(t, err)
	require.True(t, res.IsError)
	require.Contains(t, textOf(res), `refused by policy (rule "condition")`)
	require.Len(t, g.acme.Requests(), 1)

	// The policy's scope check is Token A's endpoint scope, not the
	// upstream scopes of Token B: this token has no tasks:* scope at all.
	denied := g.events(t, audit.Filter{Decision: audit.DecisionDeny})
	require.Len(t, denied, 1)
	require.Equal(t, policy.RuleCondition, denied[0].Rule)
	require.Nil(t, denied[0].Outcome)
	ok := g.events(t, audit.Filter{Decision: audit.DecisionAllow})
	require.Len(t, ok, 1)
	require.NotNil(t, ok[0].Outcome)
	require.Equal(t, http.StatusOK, ok[0].Outcome.Status)
	require.Equal(t, []string{tasks.ScopeRead, tasks.ScopeWrite}, ok[0].Scopes, "the grant's token: this upstream does not narrow")
	require.False(t, ok[0].Narrowed)
	require.Equal(t, "GET", ok[0].Method)
	require.Equal(t, "/tasks", ok[0].PathTemplate)
	require.Equal(t, "Acme Tasks", ok[0].UpstreamName)

	// Listing held nothing for approval.
	reqs, _, err := g.appr.List(ctx, g.tenantA.ID, approvals.ListFilter{})
	require.NoError(t, err)
	require.Empty(t, reqs)
}

func TestApprovalLinkAsURLElicitation(t *testing.T) {
	t.Parallel()
	g := setupGoverned(t, nil)
	g.grant(t, tasks.ScopeRead, tasks.ScopeWrite, tasks.ScopeDelete)
	tokenA := g.tokenA(t)
	hdr := map[string]string{"Authorization": "Bearer " + tokenA, "Mcp-Protocol-Version": "2025-11-25"}
	resp, body := rpc(t, http.MethodPost, g.resource, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{"url":{}}},"clientInfo":{"name":"raw","version":"1"}}}`, hdr)
	require.Equal(t, 200, resp.StatusCode, body)
	call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_task","arguments":{"id":"42"}}}`
	_, body = rpc(t, http.MethodPost, g.resource, call, hdr)
	e := sseJSON(t, body)["error"].(map[string]any)
	require.EqualValues(t, -32042, e["code"])
	el := e["data"].(map[string]any)["elicitations"].([]any)[0].(map[string]any)
	id, err := uuid.Parse(el["elicitationId"].(string))
	require.NoError(t, err, "the elicitation id is the approval id")
	require.Equal(t, g.base+"/t/"+g.tenantA.Slug+"/approvals/"+id.String(), el["url"])
	req, err := g.appr.Get(context.Background(), g.tenantA.ID, id)
	require.NoError(t, err)
	require.Equal(t, "delete_task", req.Tool)
	require.JSONEq(t, `{"id":"42"}`, string(req.Args))
	require.Equal(t, "demo-user-engineer", req.Requester.Subject)
	require.Equal(t, approvals.StatusPending, req.Status)

	// Approved by two approvers, the same call runs once.
	for _, sub := range []string{"demo-user-approver", "demo-user-approver2"} {
		_, err := g.appr.Vote(context.Background(), g.tenantA.ID, id, approvals.Approver{
			Person: approvals.Person{Issuer: g.idpA.URL(), Subject: sub}, Groups: []string{"approvers"}}, true, "")
		require.NoError(t, err)
	}
	_, body = rpc(t, http.MethodPost, g.resource, call, hdr)
	res := sseJSON(t, body)["result"].(map[string]any)
	require.Contains(t, body, "HTTP 404", "the call reached Acme Tasks (which has no task 42)")
	require.Equal(t, true, res["isError"])
	recs := g.acme.Requests()
	require.Len(t, recs, 1)
	require.Equal(t, http.MethodDelete, recs[0].Method)
	ev := g.events(t, audit.Filter{Decision: audit.DecisionAllow})
	require.Len(t, ev, 1)
	require.Equal(t, id, *ev[0].ApprovalID)
	require.Equal(t, http.StatusNotFound, ev[0].Outcome.Status)
	require.Equal(t, audit.ResultFailed, ev[0].Result)
}

// failingAudit refuses every intent, as an unreachable database would.
type failingAudit struct {
	webmcp.Audit
	intents, outcomes atomic.Int32
}

func (f *failingAudit) Intent(context.Context, webmcp.Intent) (string, error) {
	f.intents.Add(1)
	return "", errors.New("database unreachable")
}

func (f *failingAudit) Outcome(context.Context, uuid.UUID, string, webmcp.Outcome) error {
	f.outcomes.Add(1)
	return nil
}

func TestNoUpstreamCallWithoutCommittedIntent(t *testing.T) {
	t.Parallel()
	fa := &failingAudit{}
	g := setupGoverned(t, func(a webmcp.Audit) webmcp.Audit { fa.Audit = a; return fa })
	g.grant(t)
	cs := connect(t, g.resource, g.tokenA(t), nil)
	res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "list_tasks", Arguments: map[string]any{}})
	require.NoError(t, err)
	require.True(t, res.IsError)
	require.Contains(t, textOf(res), "could not record this call in the audit trail")
	sc := res.StructuredContent.(map[string]any)["error"].(map[string]any)
	require.Equal(t, true, sc["retryable"])
	require.Empty(t, g.acme.Requests(), "nothing went upstream")
	require.EqualValues(t, 1, fa.intents.Load())
	require.Zero(t, fa.outcomes.Load())
}

// outcomeFailingAudit records intents but can't record outcomes, as a
// database that went away during the upstream call would.
type outcomeFailingAudit struct {
	webmcp.Audit
	outcomes atomic.Int32
}

func (f *outcomeFailingAudit) Outcome(context.Context, uuid.UUID, string, webmcp.Outcome) error {
	f.outcomes.Add(1)
	return errors.New("database unreachable")
}

// TestNoSuccessWithoutRecordedOutcome: when the outcome of a call that went
// upstream can't be recorded, the agent does not get the result as a
// success: it is told the call may have taken effect and to check before
// retrying.
func TestNoSuccessWithoutRecordedOutcome(t *testing.T) {
	t.Parallel()
	fa := &outcomeFailingAudit{}
	g := setupGoverned(t, func(a webmcp.Audit) webmcp.Audit { fa.Audit = a; return fa })
	g.grant(t)
	cs := connect(t, g.resource, g.tokenA(t), nil)
	res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "list_tasks", Arguments: map[string]any{}})
	require.NoError(t, err)
	require.True(t, res.IsError, textOf(res))
	require.Contains(t, textOf(res), "could not record the outcome in the audit trail, so the result is withheld")
	sc := res.StructuredContent.(map[string]any)["error"].(map[string]any)
	require.Equal(t, "audit_unavailable", sc["kind"])
	require.Equal(t, false, sc["retryable"])
	require.Len(t, g.acme.Requests(), 1, "the call was made")
	require.EqualValues(t, 1, fa.outcomes.Load())
	require.Len(t, g.events(t, audit.Filter{Decision: audit.DecisionAllow}), 1, "its intent is recorded")
}
