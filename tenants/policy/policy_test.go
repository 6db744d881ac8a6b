package policy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/policy"
)

type testBundle struct {
	engine *policy.Engine
	tenant uuid.UUID
	ctx    context.Context
}

func newTenant(t testing.TB) uuid.UUID {
	t.Helper()
	var id uuid.UUID
	slug := "p-" + uuid.NewString()[:8]
	require.NoError(t, sqltest.DB(t).Pool().QueryRow(context.Background(),
		"INSERT INTO tenants (slug, name) VALUES ($1, 'Policy test') RETURNING id", slug).Scan(&id))
	return id
}

// newEngine builds an Engine; with run it also runs the listener until the
// test ends and waits until it listens.
func newEngine(t *testing.T, run bool, now func() time.Time) *policy.Engine {
	t.Helper()
	e, err := policy.New(policy.Config{DB: sqltest.DB(t), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: now})
	require.NoError(t, err)
	if run {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = e.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		require.Eventually(t, e.Listening, 5*time.Second, 5*time.Millisecond)
	}
	return e
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	return &testBundle{engine: newEngine(t, true, nil), tenant: newTenant(t), ctx: context.Background()}
}

var engineer = policy.Principal{
	Issuer: "https://idp.acme.example", Subject: "u-1", Email: "engineer@acme.example",
	Groups: []string{"engineering"}, Scopes: []string{"tasks"}, Agent: "claude-desktop",
}

var readTool = policy.ToolInfo{Name: "tasks.list", Risk: tenants.RiskRead, Upstream: "acme-tasks", Scopes: []string{"tasks:read"}}

func TestNew(t *testing.T) {
	t.Parallel()
	_, err := policy.New(policy.Config{Logger: slog.Default()})
	require.ErrorContains(t, err, "db is required")
	_, err = policy.New(policy.Config{DB: sqltest.DB(t)})
	require.ErrorContains(t, err, "logger is required")
}

// TestConditionExamples runs each documented example through Decide.
func TestConditionExamples(t *testing.T) {
	t.Parallel()
	paris, err := time.LoadLocation("Europe/Paris")
	require.NoError(t, err)
	wednesdayMorning := time.Date(2026, 3, 4, 9, 30, 0, 0, paris)
	wednesdayEvening := time.Date(2026, 3, 4, 18, 30, 0, 0, paris)
	saturday := time.Date(2026, 3, 7, 11, 0, 0, 0, paris)
	workingHours := `now.getDayOfWeek(tz) >= 1 && now.getDayOfWeek(tz) <= 5 && now.getHours(tz) >= 9 && now.getHours(tz) < 18`

	finance := engineer
	finance.Groups = []string{"finance"}
	otherAgent := engineer
	otherAgent.Agent = "other-agent"

	tests := []struct {
		name      string
		expr      string
		principal policy.Principal
		args      string
		now       time.Time
		want      policy.Effect
	}{
		{"finance group: member", `"finance" in principal.groups`, finance, `{}`, time.Time{}, policy.EffectAllow},
		{"finance group: outsider", `"finance" in principal.groups`, engineer, `{}`, time.Time{}, policy.EffectDeny},
		{"amount under 1000: 999", `args.amount < 1000`, engineer, `{"amount": 999}`, time.Time{}, policy.EffectAllow},
		{"amount under 1000: 1000", `args.amount < 1000`, engineer, `{"amount": 1000}`, time.Time{}, policy.EffectDeny},
		{"amount under 1000: decimal", `args.amount < 1000`, engineer, `{"amount": 999.99}`, time.Time{}, policy.EffectAllow},
		{"amount under 1000: missing", `args.amount < 1000`, engineer, `{}`, time.Time{}, policy.EffectDeny},
		{"amount or approval", `args.amount < 1000 ? "allow" : "approval"`, engineer, `{"amount": 5000}`, time.Time{}, policy.EffectApproval},
		{"working hours: Wednesday 09:30 Paris", workingHours, engineer, `{}`, wednesdayMorning, policy.EffectAllow},
		{"working hours: Wednesday 18:30 Paris", workingHours, engineer, `{}`, wednesdayEvening, policy.EffectDeny},
		{"working hours: Saturday", workingHours, engineer, `{}`, saturday, policy.EffectDeny},
		{"only agent: claude-desktop", `principal.agent == "claude-desktop"`, engineer, `{}`, time.Time{}, policy.EffectAllow},
		{"only agent: other", `principal.agent == "claude-desktop"`, otherAgent, `{}`, time.Time{}, policy.EffectDeny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			now := tc.now
			if now.IsZero() {
				now = time.Now()
			}
			e := newEngine(t, false, func() time.Time { return now })
			tenant := newTenant(t)
			ctx := context.Background()
			_, err := e.SaveSettings(ctx, tenant, policy.Settings{AgentDefault: policy.AgentAllow, ApprovalsDefault: 2, TimeZone: "Europe/Paris"})
			require.NoError(t, err)
			require.NoError(t, policy.CompileCondition(tc.expr))
			tool := readTool
			tool.Condition = tc.expr
			d, err := e.Decide(ctx, tenant, tc.principal, tool, json.RawMessage(tc.args))
			require.NoError(t, err)
			require.Equal(t, tc.want, d.Effect, "decision %+v", d)
			require.Equal(t, policy.RuleCondition, d.Rule)
			require.NotContains(t, d.Reason, tc.expr, "a reason must not reveal the condition")
		})
	}
}

func TestCompileConditionErrors(t *testing.T) {
	t.Parallel()
	var ints []string
	for i := range 100 {
		ints = append(ints, fmt.Sprint(i))
	}
	list := "[" + strings.Join(ints, ",") + "]"
	tests := []struct {
		name, expr, want string
	}{
		{"undeclared", `"finance" in principle.groups`, "line 1, column 14: undeclared reference to 'principle'"},
		{"unknown field", `principal.grups == []`, "line 1, column 10: undefined field 'grups'"},
		{"syntax on line 2", "principal.agent == \"a\" &&\n  principal.email ==", "line 2, column 21: Syntax error"},
		{"wrong result type", `args.amount + 1`, "must evaluate to true, false or \"approval\""},
		{"int result", `1 + 2`, "not a int"},
		{"too long", strings.Repeat("true && ", 600) + "true", "too long"},
		{"too costly", list + ".all(a, " + list + ".all(b, " + list + ".all(c, a + b + c >= 0)))", "too costly"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := policy.CompileCondition(tc.expr)
			require.Error(t, err)
			require.ErrorIs(t, err, tenants.ErrInvalid)
			var pe *tenants.Error
			require.ErrorAs(t, err, &pe)
			require.Equal(t, "condition", pe.Field)
			require.Contains(t, pe.Message, tc.want)
		})
	}
	require.NoError(t, policy.CompileCondition(""))
	require.NoError(t, policy.CompileCondition(`principal.email.endsWith("@acme.example") && size(args) < 10`))
}

// TestConditionCutOffAtEvaluation: a condition whose cost depends on the
// arguments passes the save check but is stopped at evaluation, and the call
// is denied with a clear (internal) error and a safe reason.
func TestConditionCutOffAtEvaluation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	expr := `args.items.all(a, args.items.all(b, args.items.all(c, a + b + c >= 0)))`
	require.NoError(t, policy.CompileCondition(expr))
	items := make([]int, 200)
	args, err := json.Marshal(map[string]any{"items": items})
	require.NoError(t, err)

	tool := readTool
	tool.Condition = expr
	start := time.Now()
	d, err := b.engine.Decide(b.ctx, b.tenant, engineer, tool, json.RawMessage(args))
	require.NoError(t, err)
	require.Less(t, time.Since(start), time.Second)
	require.Equal(t, policy.EffectDeny, d.Effect)
	require.Equal(t, policy.RuleCondition, d.Rule)
	require.Equal(t, "the tool's condition could not be evaluated", d.Reason)
	requireCutOff(t, d.Err)

	_, err = policy.EvalCondition(b.ctx, expr, policy.Input{Args: args})
	requireCutOff(t, err)

	// Small inputs still evaluate.
	d, err = b.engine.Decide(b.ctx, b.tenant, engineer, tool, json.RawMessage(`{"items": [1, 2, 3]}`))
	require.NoError(t, err)
	require.Equal(t, policy.EffectAllow, d.Effect)
}

func TestConditionNonBooleanResult(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tool := readTool
	tool.Condition = `args.mode` // dyn: passes the save check, checked at run time
	d, err := b.engine.Decide(b.ctx, b.tenant, engineer, tool, json.RawMessage(`{"mode": "approval"}`))
	require.NoError(t, err)
	require.Equal(t, policy.EffectApproval, d.Effect)
	require.Equal(t, 2, d.ApprovalsRequired)
	d, err = b.engine.Decide(b.ctx, b.tenant, engineer, tool, json.RawMessage(`{"mode": "sure"}`))
	require.NoError(t, err)
	require.Equal(t, policy.EffectDeny, d.Effect)
	require.ErrorContains(t, d.Err, "want true, false or \"approval\"")

	// A condition that doesn't compile (saved before a schema change, say) denies.
	tool.Condition = `principle.agent == "x"`
	d, err = b.engine.Decide(b.ctx, b.tenant, engineer, tool, nil)
	require.NoError(t, err)
	require.Equal(t, policy.EffectDeny, d.Effect)
	require.Equal(t, policy.RuleCondition, d.Rule)
	require.Error(t, d.Err)

	// Arguments that are not an object deny.
	tool.Condition = `true`
	d, err = b.engine.Decide(b.ctx, b.tenant, engineer, tool, json.RawMessage(`[1]`))
	require.NoError(t, err)
	require.Equal(t, policy.EffectDeny, d.Effect)
}

// TestKillSwitchAcrossEngines: a kill switch flipped through one Engine
// blocks the next decision on another Engine (another instance) within 1 s.
func TestKillSwitchAcrossEngines(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	one, two := newEngine(t, true, nil), newEngine(t, true, nil)
	tenant := newTenant(t)

	tests := []struct {
		name string
		ks   policy.KillSwitch
		rule string
	}{
		{"agent", policy.KillSwitch{Kind: policy.KillAgent, Value: engineer.Agent, Reason: "incident"}, policy.RuleKillAgent},
		{"user", policy.KillSwitch{Kind: policy.KillUser, Issuer: engineer.Issuer, Value: engineer.Subject}, policy.RuleKillUser},
		{"upstream", policy.KillSwitch{Kind: policy.KillUpstream, Value: readTool.Upstream}, policy.RuleKillUpstream},
	}
	for _, tc := range tests {
		// Warm the second engine's cache: it allows.
		d, err := two.Decide(ctx, tenant, engineer, readTool, nil)
		require.NoError(t, err)
		require.Equal(t, policy.EffectAllow, d.Effect, tc.name)

		_, err = one.SetKillSwitch(ctx, tenant, tc.ks)
		require.NoError(t, err)
		flipped := time.Now()
		for {
			d, err = two.Decide(ctx, tenant, engineer, readTool, nil)
			require.NoError(t, err)
			if d.Effect == policy.EffectDeny {
				break
			}
			require.Less(t, time.Since(flipped), time.Second, "%s kill switch not effective on the second engine within 1 s", tc.name)
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("%s kill switch effective on the second engine after %s", tc.name, time.Since(flipped))
		require.Equal(t, tc.rule, d.Rule)
		require.NotContains(t, d.Reason, "incident", "the admin's reason is not shown to agents")

		require.NoError(t, one.ClearKillSwitch(ctx, tenant, tc.ks.Kind, tc.ks.Issuer, tc.ks.Value))
		require.Eventually(t, func() bool {
			d, err := two.Decide(ctx, tenant, engineer, readTool, nil)
			return err == nil && d.Effect == policy.EffectAllow
		}, time.Second, 5*time.Millisecond)
	}

	// Another user of the same issuer is unaffected by a user switch.
	_, err := one.SetKillSwitch(ctx, tenant, policy.KillSwitch{Kind: policy.KillUser, Issuer: engineer.Issuer, Value: engineer.Subject})
	require.NoError(t, err)
	other := engineer
	other.Subject = "u-2"
	d, err := two.Decide(ctx, tenant, other, readTool, nil)
	require.NoError(t, err)
	require.Equal(t, policy.EffectAllow, d.Effect)

	list, err := one.KillSwitches(ctx, tenant)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.ErrorIs(t, one.ClearKillSwitch(ctx, tenant, policy.KillAgent, "", "nobody"), tenants.ErrNotFound)
}

// TestRulesWithoutListener: an Engine that isn't running its listener reads
// rules on every decision, so it is never stale.
func TestRulesWithoutListener(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	writer, reader := newEngine(t, false, nil), newEngine(t, false, nil)
	tenant := newTenant(t)
	d, err := reader.Decide(ctx, tenant, engineer, readTool, nil)
	require.NoError(t, err)
	require.Equal(t, policy.EffectAllow, d.Effect)
	_, err = writer.SetKillSwitch(ctx, tenant, policy.KillSwitch{Kind: policy.KillAgent, Value: engineer.Agent})
	require.NoError(t, err)
	d, err = reader.Decide(ctx, tenant, engineer, readTool, nil)
	require.NoError(t, err)
	require.Equal(t, policy.EffectDeny, d.Effect)
}

func TestAgentAllowList(t *testing.T) {
	t.Parallel()
	b := setup(t)
	unknown := engineer
	unknown.Agent = "unknown-agent"

	// Default: allow-all.
	s, err := b.engine.Settings(b.ctx, b.tenant)
	require.NoError(t, err)
	require.Equal(t, policy.DefaultSettings(), s)
	d, err := b.engine.Decide(b.ctx, b.tenant, unknown, readTool, nil)
	require.NoError(t, err)
	require.Equal(t, policy.EffectAllow, d.Effect)

	// Deny-all: only listed agents.
	_, err = b.engine.AllowAgent(b.ctx, b.tenant, engineer.Agent, "the desktop app")
	require.NoError(t, err)
	s.AgentDefault = policy.AgentDeny
	_, err = b.engine.SaveSettings(b.ctx, b.tenant, s)
	require.NoError(t, err)
	d, err = b.engine.Decide(b.ctx, b.tenant, unknown, readTool, nil)
	require.NoError(t, err)
	require.Equal(t, policy.EffectDeny, d.Effect)
	require.Equal(t, policy.RuleAgentNotAllowed, d.Rule)
	require.NotContains(t, d.Reason, engineer.Agent, "the reason must not list other agents")
	d, err = b.engine.Decide(b.ctx, b.tenant, engineer, readTool, nil)
	require.NoError(t, err)
	require.Equal(t, policy.EffectAllow, d.Effect)

	agents, err := b.engine.Agents(b.ctx, b.tenant)
	require.NoError(t, err)
	require.Len(t, agents, 1)
	require.Equal(t, "the desktop app", agents[0].Note)

	require.NoError(t, b.engine.RemoveAgent(b.ctx, b.tenant, engineer.Agent))
	d, err = b.engine.Decide(b.ctx, b.tenant, engineer, readTool, nil)
	require.NoError(t, err)
	require.Equal(t, policy.EffectDeny, d.Effect)
	require.ErrorIs(t, b.engine.RemoveAgent(b.ctx, b.tenant, engineer.Agent), tenants.ErrNotFound)

	// Back to allow-all.
	s.AgentDefault = policy.AgentAllow
	_, err = b.engine.SaveSettings(b.ctx, b.tenant, s)
	require.NoError(t, err)
	d, err = b.engine.Decide(b.ctx, b.tenant, unknown, readTool, nil)
	require.NoError(t, err)
	require.Equal(t, policy.EffectAllow, d.Effect)
}

func TestDestructiveNeedsApproval(t *testing.T) {
	t.Parallel()
	b := setup(t)
	del := policy.ToolInfo{Name: "tasks.delete", Risk: tenants.RiskDestructive, Upstream: "acme-tasks"}
	d, err := b.engine.Decide(b.ctx, b.tenant, engineer, del, nil)
	require.NoError(t, err)
	require.Equal(t, policy.Decision{Effect: policy.EffectApproval, Rule: policy.RuleDestructive, Reason: "needs 2 approvals", ApprovalsRequired: 2}, d)

	del.ApprovalsRequired = 3
	d, err = b.engine.Decide(b.ctx, b.tenant, engineer, del, nil)
	require.NoError(t, err)
	require.Equal(t, 3, d.ApprovalsRequired)

	del.ApprovalsRequired = 0
	_, err = b.engine.SaveSettings(b.ctx, b.tenant, policy.Settings{AgentDefault: policy.AgentAllow, ApprovalsDefault: 1, TimeZone: "UTC"})
	require.NoError(t, err)
	d, err = b.engine.Decide(b.ctx, b.tenant, engineer, del, nil)
	require.NoError(t, err)
	require.Equal(t, "needs 1 approval", d.Reason)

	// A denying condition wins over approval; a kill switch wins over all.
	del.Condition = `"finance" in principal.groups`
	d, err = b.engine.Decide(b.ctx, b.tenant, engineer, del, nil)
	require.NoError(t, err)
	require.Equal(t, policy.EffectDeny, d.Effect)

	// Disabled tools are denied.
	d, err = b.engine.Decide(b.ctx, b.tenant, engineer, policy.ToolInfo{Name: "x", Disabled: true}, nil)
	require.NoError(t, err)
	require.Equal(t, policy.RuleToolDisabled, d.Rule)
}

func TestScopes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tool := policy.ToolInfo{Name: "billing.charge", Risk: tenants.RiskWrite, Scopes: []string{"billing:write", "tasks:read"}}
	d, err := b.engine.Decide(b.ctx, b.tenant, engineer, tool, nil)
	require.NoError(t, err)
	require.Equal(t, policy.EffectDeny, d.Effect)
	require.Equal(t, policy.RuleScope, d.Rule)
	require.Equal(t, []string{"billing:write"}, d.MissingScopes)

	p := engineer
	p.Scopes = []string{"billing:write", "tasks"}
	d, err = b.engine.Decide(b.ctx, b.tenant, p, tool, nil)
	require.NoError(t, err)
	require.Equal(t, policy.EffectAllow, d.Effect)

	// A scope that merely shares a prefix does not cover.
	p.Scopes = []string{"billing:wr", "tasksx"}
	d, err = b.engine.Decide(b.ctx, b.tenant, p, tool, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"billing:write", "tasks:read"}, d.MissingScopes)
}

func TestSettingsValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		s     policy.Settings
		field string
	}{
		{policy.Settings{AgentDefault: "maybe", ApprovalsDefault: 2}, "agent_default"},
		{policy.Settings{AgentDefault: policy.AgentAllow, ApprovalsDefault: 0}, "approvals_default"},
		{policy.Settings{AgentDefault: policy.AgentAllow, ApprovalsDefault: 11}, "approvals_default"},
		{policy.Settings{AgentDefault: policy.AgentAllow, ApprovalsDefault: 2, TimeZone: "Mars/Olympus"}, "time_zone"},
		{policy.Settings{AgentDefault: policy.AgentAllow, ApprovalsDefault: 2, TimeZone: "Local"}, "time_zone"},
	} {
		_, err := b.engine.SaveSettings(b.ctx, b.tenant, tc.s)
		var pe *tenants.Error
		require.ErrorAs(t, err, &pe)
		require.Equal(t, tc.field, pe.Field)
	}
	_, err := b.engine.SetKillSwitch(b.ctx, b.tenant, policy.KillSwitch{Kind: "tool", Value: "x"})
	require.ErrorIs(t, err, tenants.ErrInvalid)
	_, err = b.engine.SetKillSwitch(b.ctx, b.tenant, policy.KillSwitch{Kind: policy.KillUser, Value: "u-1"})
	require.ErrorIs(t, err, tenants.ErrInvalid, "a user switch needs the issuer")
	_, err = b.engine.AllowAgent(b.ctx, b.tenant, " ", "")
	require.ErrorIs(t, err, tenants.ErrInvalid)
}

// TestTwoTenantIsolation runs every store method of tenant A's rules and
// checks tenant B sees and is affected by none of them.
func TestTwoTenantIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEngine(t, true, nil)
	a, b := newTenant(t), newTenant(t)

	_, err := e.SaveSettings(ctx, a, policy.Settings{AgentDefault: policy.AgentDeny, ApprovalsDefault: 5, TimeZone: "Asia/Tokyo"})
	require.NoError(t, err)
	_, err = e.AllowAgent(ctx, a, "agent-a", "")
	require.NoError(t, err)
	for _, ks := range []policy.KillSwitch{
		{Kind: policy.KillAgent, Value: engineer.Agent},
		{Kind: policy.KillUser, Issuer: engineer.Issuer, Value: engineer.Subject},
		{Kind: policy.KillUpstream, Value: readTool.Upstream},
	} {
		_, err = e.SetKillSwitch(ctx, a, ks)
		require.NoError(t, err)
	}

	s, err := e.Settings(ctx, b)
	require.NoError(t, err)
	require.Equal(t, policy.DefaultSettings(), s)
	agents, err := e.Agents(ctx, b)
	require.NoError(t, err)
	require.Empty(t, agents)
	kills, err := e.KillSwitches(ctx, b)
	require.NoError(t, err)
	require.Empty(t, kills)
	d, err := e.Decide(ctx, b, engineer, readTool, nil)
	require.NoError(t, err)
	require.Equal(t, policy.EffectAllow, d.Effect)

	require.ErrorIs(t, e.RemoveAgent(ctx, b, "agent-a"), tenants.ErrNotFound)
	require.ErrorIs(t, e.ClearKillSwitch(ctx, b, policy.KillAgent, "", engineer.Agent), tenants.ErrNotFound)
	agents, err = e.Agents(ctx, a)
	require.NoError(t, err)
	require.Len(t, agents, 1)
	kills, err = e.KillSwitches(ctx, a)
	require.NoError(t, err)
	require.Len(t, kills, 3)
	d, err = e.Decide(ctx, a, engineer, readTool, nil)
	require.NoError(t, err)
	require.Equal(t, policy.EffectDeny, d.Effect)
}

// requireCutOff: evaluation stopped at the cost limit, or at the timeout
// (which the race detector's slowdown can reach first).
func requireCutOff(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	msg := err.Error()
	require.True(t, strings.Contains(msg, "cost limit exceeded") || strings.Contains(msg, "timed out"), "got %q", msg)
}
