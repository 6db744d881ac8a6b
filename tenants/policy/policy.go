package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants"
)

// Principal is who is calling, as the policy sees it: the user named by
// Token A and the agent (OAuth client) acting for them. The MCP layer builds
// it from the verified token. In conditions it is the variable principal,
// with the field names in the cel tags.
type Principal struct {
	// Issuer and Subject identify the user at the tenant's IdP.
	Issuer  string `cel:"issuer"`
	Subject string `cel:"subject"`
	Email   string `cel:"email"`
	// Groups are the user's groups or roles from the token.
	Groups []string `cel:"groups"`
	// Scopes are Token A's scopes.
	Scopes []string `cel:"scopes"`
	// Agent is the OAuth client id of the agent (azp, client_id or act).
	Agent string `cel:"agent"`
	// Act is the delegation chain (RFC 8693 act claims), outermost actor
	// first; empty when there is none.
	Act []string `cel:"act"`
}

// ToolInfo is the tool being called. In conditions it is the variable tool
// (name, risk, upstream, scopes); the other fields steer the decision.
type ToolInfo struct {
	Name string `cel:"name"`
	// Risk is tenants.RiskRead, RiskWrite or RiskDestructive.
	Risk string `cel:"risk"`
	// Upstream is the upstream's slug (kill switches per upstream match it).
	Upstream string `cel:"upstream"`
	// Scopes are the scopes the tool requires; the principal's scopes must
	// cover them (a scope covers itself and its children: "tasks" covers
	// "tasks:read" and "tasks.read"). Nil requires none.
	Scopes []string `cel:"scopes"`
	// Disabled tools are denied.
	Disabled bool `cel:"-"`
	// Condition is the tool's CEL condition ("" = none).
	Condition string `cel:"-"`
	// ApprovalsRequired overrides the tenant's default number of approvers
	// (0 = the default).
	ApprovalsRequired int `cel:"-"`
}

// ToolInfoFrom builds a ToolInfo from a tool registration and its
// upstream's slug.
func ToolInfoFrom(t tenants.Tool, upstreamSlug string) ToolInfo {
	n := 0
	if t.ApprovalsRequired != nil {
		n = *t.ApprovalsRequired
	}
	return ToolInfo{
		Name: t.Name, Risk: t.Risk, Upstream: upstreamSlug, Scopes: t.RequiredScopes,
		Disabled: !t.Enabled, Condition: t.Condition, ApprovalsRequired: n,
	}
}

// Effect is what a decision lets happen.
type Effect string

// Effects.
const (
	EffectAllow    Effect = "allow"
	EffectDeny     Effect = "deny"
	EffectApproval Effect = "approval"
)

// Rule names carried by decisions (see the package documentation).
const (
	RuleKillAgent       = "kill switch: agent"
	RuleKillUser        = "kill switch: user"
	RuleKillUpstream    = "kill switch: upstream"
	RuleAgentNotAllowed = "agent not allowed"
	RuleToolDisabled    = "tool disabled"
	RuleScope           = "scope"
	RuleCondition       = "condition"
	RuleDestructive     = "destructive tool"
	RuleDefault         = "default"
)

// Decision is the policy's answer for one call.
type Decision struct {
	Effect Effect
	// Rule names the rule that decided (one of the Rule constants).
	Rule string
	// Reason is a sentence safe to show the agent and its user: it names
	// the rule, never condition text or other tenants' data.
	Reason string
	// ApprovalsRequired is N for EffectApproval.
	ApprovalsRequired int
	// MissingScopes lists the tool scopes the principal lacks (rule
	// "scope"), for an insufficient_scope challenge.
	MissingScopes []string
	// Err is the internal detail of a failed condition evaluation, for the
	// log only; never show it to the agent.
	Err error
}

// RulesTTL is how long cached tenant rules are trusted without a
// notification, as a fallback for missed notifications.
const RulesTTL = 10 * time.Second

// Config holds an Engine's dependencies.
type Config struct {
	DB     *lsql.DB
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Engine decides calls and stores the tenant-level rules. It is safe for
// concurrent use; run [Engine.Run] in a goroutine to enable its cache.
type Engine struct {
	db     *lsql.DB
	logger *slog.Logger
	now    func() time.Time

	programs programCache

	listening atomic.Bool
	mu        sync.Mutex
	gen       map[uuid.UUID]uint64 // bumped on every invalidation
	rules     map[uuid.UUID]*rules
	epoch     uint64 // bumped when the whole cache is dropped
}

// New returns an Engine.
func New(cfg Config) (*Engine, error) {
	switch {
	case cfg.DB == nil:
		return nil, errors.New("policy: db is required")
	case cfg.Logger == nil:
		return nil, errors.New("policy: logger is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if _, err := celEnv(); err != nil {
		return nil, fmt.Errorf("policy: cel environment: %w", err)
	}
	return &Engine{
		db: cfg.DB, logger: cfg.Logger, now: cfg.Now,
		programs: programCache{m: map[string]programEntry{}},
		gen:      map[uuid.UUID]uint64{},
		rules:    map[uuid.UUID]*rules{},
	}, nil
}

// Decide decides one call by principal to tool with args (a JSON object as
// json.RawMessage, []byte or map[string]any; see NormalizeArgs). It returns
// an error only when the rules can't be read; every policy outcome,
// including a failed condition, is a Decision.
func (e *Engine) Decide(ctx context.Context, tenantID uuid.UUID, p Principal, tool ToolInfo, args any) (Decision, error) {
	r, err := e.tenantRules(ctx, tenantID)
	if err != nil {
		return Decision{}, err
	}
	if r.kills[killKey{KillAgent, "", p.Agent}] && p.Agent != "" {
		return deny(RuleKillAgent, "calls through this agent are switched off by the tenant's administrators"), nil
	}
	if r.kills[killKey{KillUser, p.Issuer, p.Subject}] {
		return deny(RuleKillUser, "calls by this user are switched off by the tenant's administrators"), nil
	}
	if r.kills[killKey{KillUpstream, "", tool.Upstream}] && tool.Upstream != "" {
		return deny(RuleKillUpstream, "calls to this upstream are switched off by the tenant's administrators"), nil
	}
	if r.settings.AgentDefault == AgentDeny && !r.agents[p.Agent] {
		return deny(RuleAgentNotAllowed, "this agent is not on the tenant's list of allowed agents"), nil
	}
	if tool.Disabled {
		return deny(RuleToolDisabled, "this tool is disabled"), nil
	}
	if missing := missingScopes(p.Scopes, tool.Scopes); len(missing) > 0 {
		d := deny(RuleScope, "the token lacks the scopes this tool needs: "+strings.Join(missing, " "))
		d.MissingScopes = missing
		return d, nil
	}
	n := tool.ApprovalsRequired
	if n <= 0 {
		n = r.settings.ApprovalsDefault
	}
	hasCondition := strings.TrimSpace(tool.Condition) != ""
	if hasCondition {
		prg, err := e.programs.get(tool.Condition)
		if err != nil {
			d := deny(RuleCondition, "the tool's condition could not be evaluated")
			d.Err = err
			return d, nil
		}
		m, err := NormalizeArgs(args)
		if err != nil {
			d := deny(RuleCondition, "the tool's condition could not be evaluated: the arguments are not a JSON object")
			d.Err = err
			return d, nil
		}
		ev := evaluate(ctx, prg, p, tool, m, e.now(), r.settings.TimeZone)
		switch {
		case ev.err != nil:
			d := deny(RuleCondition, "the tool's condition could not be evaluated")
			d.Err = ev.err
			return d, nil
		case ev.effect == EffectDeny:
			return deny(RuleCondition, "the tool's condition does not allow this call"), nil
		case ev.effect == EffectApproval:
			return Decision{Effect: EffectApproval, Rule: RuleCondition, Reason: needs(n), ApprovalsRequired: n}, nil
		}
	}
	if tool.Risk == tenants.RiskDestructive {
		return Decision{Effect: EffectApproval, Rule: RuleDestructive, Reason: needs(n), ApprovalsRequired: n}, nil
	}
	rule := RuleDefault
	if hasCondition {
		rule = RuleCondition
	}
	return Decision{Effect: EffectAllow, Rule: rule, Reason: "allowed"}, nil
}

func deny(rule, reason string) Decision {
	return Decision{Effect: EffectDeny, Rule: rule, Reason: reason}
}

func needs(n int) string {
	if n == 1 {
		return "needs 1 approval"
	}
	return fmt.Sprintf("needs %d approvals", n)
}

// missingScopes returns the required scopes not covered by held.
func missingScopes(held, required []string) []string {
	var missing []string
	for _, r := range required {
		if !covered(held, r) {
			missing = append(missing, r)
		}
	}
	return missing
}

func covered(held []string, r string) bool {
	for _, h := range held {
		if h == r {
			return true
		}
		if len(r) > len(h) && strings.HasPrefix(r, h) {
			switch r[len(h)] {
			case ':', '.', '/':
				return true
			}
		}
	}
	return false
}
