package mcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
)

// Every request the endpoint sends to an upstream on behalf of a call (a
// REST tool, a relayed MCP tool, a relayed list or read of an upstream MCP
// server) first passes the upstream's gate: a circuit breaker and a bound
// on calls in flight, per (tenant, upstream) and per instance
// (egress.Breakers). A dead or slow upstream of one tenant then costs that
// tenant's agents a fast, clear, retryable error instead of holding
// goroutines and connections, and other tenants never share its gate.

// upstreamKey names one tenant's upstream in the gates.
type upstreamKey struct{ tenant, upstream uuid.UUID }

// gate admits one call to up of tenantID, or refuses it (an
// *egress.UnavailableError) before anything is sent.
func (h *Handler) gate(ctx context.Context, tenantID uuid.UUID, up tenants.Upstream) (egress.Permit, error) {
	return h.gates.Acquire(ctx, upstreamKey{tenantID, up.ID})
}

// settle ends an admitted call with its verdict, logging once when the
// verdict opened the upstream's circuit.
func (h *Handler) settle(ctx context.Context, tenantID uuid.UUID, up tenants.Upstream, p egress.Permit, v egress.Verdict) {
	settleGate(ctx, h.log, h.gates, tenantID, up, p, v)
}

func settleGate(ctx context.Context, log *slog.Logger, gates *egress.Breakers[upstreamKey], tenantID uuid.UUID, up tenants.Upstream, p egress.Permit, v egress.Verdict) {
	if p.Done(v) {
		o := gates.Options()
		log.WarnContext(ctx, "mcp upstream circuit opened", "tenant_id", tenantID, "upstream", up.Slug,
			"verdict", v.String(), "threshold", o.Threshold, "cool_down", o.CoolDown)
	}
}

// UpstreamCircuitOpens counts how many times an upstream's circuit opened
// on this instance (all tenants; a failed probe counts again), for metrics.
func (h *Handler) UpstreamCircuitOpens() uint64 { return h.gates.Opens() }

// unavailableText is what the agent reads when the gate refused a call to
// up: which upstream, why Locksmith is not calling it and for how long,
// and when to retry. It speaks of this tenant's upstream only.
func unavailableText(up tenants.Upstream, err error) (msg string, after time.Duration, reason string) {
	var ue *egress.UnavailableError
	if !errors.As(err, &ue) {
		return up.Name + " is unavailable just now, so this call was not made; retry in a moment", time.Second, "unavailable"
	}
	after = ceilSeconds(ue.RetryAfter)
	switch {
	case errors.Is(err, egress.ErrTooBusy):
		return fmt.Sprintf("%s is answering slowly: %d calls to it are already in progress from this Locksmith server, so this call was not made; this is temporary, retry in a few seconds",
			up.Name, ue.InFlight), after, "upstream_busy"
	case ue.Probing:
		return fmt.Sprintf("%s is unavailable: after repeated failures Locksmith stopped calling it for %s and is now checking whether it is back, so this call was not made; retry in a moment",
			up.Name, seconds(ue.OpenFor)), after, "circuit_open"
	}
	return fmt.Sprintf("%s is unavailable: after %d failed calls in a row (unreachable, timing out or failing with server errors) Locksmith stopped calling it for %s, so this call was not made; this is temporary, retry later",
		up.Name, ue.Failures, seconds(ue.OpenFor)), after, "circuit_open"
}

// unavailable is the tool result for a call the gate refused: a retryable
// tool error with retry_after_seconds and the reason.
func unavailable(up tenants.Upstream, err error) *sdk.CallToolResult {
	msg, after, reason := unavailableText(up, err)
	res := retryable(msg, after)
	res.StructuredContent.(map[string]any)["error"].(map[string]any)["reason"] = reason
	return res
}

// gateOutcome is the audit outcome of a call the gate refused.
func gateOutcome(err error) Outcome {
	if errors.Is(err, egress.ErrTooBusy) {
		return Outcome{Result: "upstream_error", Error: "not called: too many calls in flight to the upstream"}
	}
	return Outcome{Result: "upstream_error", Error: "not called: upstream circuit open"}
}

// ceilSeconds rounds d up to whole seconds, at least one.
func ceilSeconds(d time.Duration) time.Duration {
	s := (d + time.Second - 1) / time.Second
	return max(s, 1) * time.Second
}

// seconds writes d for a reader: "30 s", "5 min", "0.2 s".
func seconds(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%d min", d/time.Minute)
	}
	return fmt.Sprintf("%d s", ceilSeconds(d)/time.Second)
}
