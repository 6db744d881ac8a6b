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

// DefaultPolicy is the temporary policy used until the policy issue lands
// (CEL conditions, agent allow-lists, kill switches, approvals). It enforces:
// the tool is enabled; the principal holds every scope the endpoint
// requires; destructive tools need approvals, which do not exist yet, so they
// are listed but every call is refused with a reason saying so. A tool's CEL
// Condition is not evaluated here: a tool that has one is refused, because
// allowing it would silently skip a rule an admin wrote.
type DefaultPolicy struct{}

// Decide implements [Policy].
func (DefaultPolicy) Decide(_ context.Context, c Call) (Decision, error) {
	if !c.Tool.Enabled {
		return Decision{Effect: Deny, Reason: fmt.Sprintf("the tool %q is disabled by the tenant's admin", c.Tool.Name)}, nil
	}
	if missing := c.Principal.MissingScopes(c.EndpointScopes...); len(missing) > 0 {
		return Decision{Effect: Deny, Reason: "the token lacks the scopes " + strings.Join(missing, " ")}, nil
	}
	if strings.TrimSpace(c.Tool.Condition) != "" {
		return Decision{Effect: Deny, Reason: fmt.Sprintf("the tool %q has a policy condition, and condition evaluation arrives with the policy issue", c.Tool.Name)}, nil
	}
	if c.Tool.Risk == tenants.RiskDestructive {
		n := DefaultApprovals
		if c.Tool.ApprovalsRequired != nil {
			n = *c.Tool.ApprovalsRequired
		}
		return Decision{Effect: NeedsApproval, Approvals: n,
			Reason: fmt.Sprintf("needs %d approvals (approvals arrive with the policy issue)", n)}, nil
	}
	return Decision{Effect: Allow, Reason: "enabled, scopes held"}, nil
}

// LogAudit is the temporary audit trail: it writes intents and outcomes to
// the log (one line each) until the durable audit trail of the audit issue
// exists. It never fails, so it never blocks a call, and it is not durable:
// do not rely on it for anything but reading logs.
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
		slog.String("reason", in.Decision.Reason))
	return id, nil
}

// Outcome implements [Audit].
func (a LogAudit) Outcome(ctx context.Context, id string, out Outcome) error {
	a.Logger.LogAttrs(ctx, slog.LevelInfo, "audit outcome",
		slog.String("audit_id", id), slog.String("result", out.Result), slog.Int("status", out.Status),
		slog.Duration("latency", out.Latency), slog.String("token_scopes", strings.Join(out.TokenScopes, " ")),
		slog.Bool("narrowed", out.Narrowed), slog.String("error", out.Error))
	return nil
}
