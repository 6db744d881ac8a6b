package mcp

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
)

// DefaultApprovals is how many approvers a destructive tool needs when the
// tool sets no number of its own.
const DefaultApprovals = 2

// DefaultPolicy is the stand-in policy of a Handler built without one (tests,
// tools without a database); production passes [PolicyEngine]. It enforces:
// the tool is enabled; the principal holds every scope the endpoint
// requires; destructive tools need approvals, which it can't grant, so they
// are listed but every call is refused with a reason saying so. A tool's CEL
// Condition is not evaluated here: a tool that has one is refused, because
// allowing it would silently skip a rule an admin wrote.
type DefaultPolicy struct{}

// Decide implements [Policy].
func (DefaultPolicy) Decide(_ context.Context, c Call) (Decision, error) {
	if !c.Tool.Enabled {
		return Decision{Effect: Deny, Rule: "tool disabled", Reason: fmt.Sprintf("the tool %q is disabled by the tenant's admin", c.Tool.Name)}, nil
	}
	if missing := c.Principal.MissingScopes(c.EndpointScopes...); len(missing) > 0 {
		return Decision{Effect: Deny, Rule: "scope", Reason: "the token lacks the scopes " + strings.Join(missing, " ")}, nil
	}
	if strings.TrimSpace(c.Tool.Condition) != "" {
		return Decision{Effect: Deny, Rule: "condition", Reason: fmt.Sprintf("the tool %q has a policy condition, which this server can't evaluate (no policy engine)", c.Tool.Name)}, nil
	}
	if c.Tool.Risk == tenants.RiskDestructive {
		n := DefaultApprovals
		if c.Tool.ApprovalsRequired != nil {
			n = *c.Tool.ApprovalsRequired
		}
		return Decision{Effect: NeedsApproval, Rule: "destructive tool", Approvals: n,
			Reason: fmt.Sprintf("needs %d approvals, and this server has no approvals service", n)}, nil
	}
	return Decision{Effect: Allow, Rule: "default", Reason: "enabled, scopes held"}, nil
}

// LogAudit is the stand-in audit trail of a Handler built without one: it
// writes intents and outcomes to the log (one line each). It never fails, so
// it never blocks a call, and it is not durable: production passes
// [DurableAudit].
type LogAudit struct {
	Logger *slog.Logger
}

// Intent implements [Audit].
func (a LogAudit) Intent(ctx context.Context, in Intent) (string, error) {
	id := uuid.NewString()
	a.Logger.LogAttrs(ctx, slog.LevelInfo, "audit intent",
		slog.String("audit_id", id), slog.String("tenant_id", in.TenantID.String()), slog.String("request_id", in.RequestID),
		slog.String("subject", in.Subject), slog.String("issuer", in.Issuer), slog.String("agent", in.Agent),
		slog.String("tool", in.Tool), slog.String("upstream", in.Upstream), slog.String("method", in.Method),
		slog.String("path_template", in.PathTemplate), slog.String("decision", in.Decision.Effect.String()),
		slog.String("rule", in.Decision.Rule), slog.String("reason", in.Decision.Reason))
	return id, nil
}

// Outcome implements [Audit].
func (a LogAudit) Outcome(ctx context.Context, _ uuid.UUID, id string, out Outcome) error {
	a.Logger.LogAttrs(ctx, slog.LevelInfo, "audit outcome",
		slog.String("audit_id", id), slog.String("result", out.Result), slog.Int("status", out.Status),
		slog.Duration("latency", out.Latency), slog.String("token_scopes", strings.Join(out.TokenScopes, " ")),
		slog.Bool("narrowed", out.Narrowed), slog.String("error", out.Error))
	return nil
}
