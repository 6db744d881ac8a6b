// Package policy decides whether one MCP tools/call may run: allow, deny, or
// hold it for two-person approval. It owns the tenant-level rules (the agent
// allow-list and kill switches), the tenant's policy settings, and the CEL
// conditions attached to tools.
//
// # Decisions
//
// [Engine.Decide] applies, in order, and stops at the first rule that
// refuses; the rule's name travels with the decision into the audit trail
// and, for refusals, into the agent's error message:
//
//	"kill switch: agent"     the agent (client id) is switched off
//	"kill switch: user"      the user (issuer + subject) is switched off
//	"kill switch: upstream"  the tool's upstream is switched off
//	"agent not allowed"      the tenant denies unknown agents and this one is not listed
//	"tool disabled"          the tool is disabled
//	"scope"                  the principal's scopes don't cover the tool's scopes
//	"condition"              the tool's CEL condition said no, or could not be evaluated
//	"destructive tool"       the tool is destructive: approval by N approvers
//	"default"                nothing objected: allow
//
// A condition may also ask for approval; destructive tools always need it.
// N comes from the tool (ToolInfo.ApprovalsRequired) or the tenant default
// (2). Reasons are written for the agent and its user: they name the rule,
// never another tenant's data or the text of a condition.
//
// # Conditions
//
// A tool's condition is a CEL expression over these variables:
//
//	principal  issuer, subject, email, groups (list), scopes (list), agent (client id), act (delegation chain, list)
//	tool       name, risk ("read", "write", "destructive"), upstream (slug), scopes (list)
//	args       the call's arguments (map; whole-number JSON numbers are ints)
//	now        the time of the call (timestamp)
//	tz         the tenant's IANA time zone, e.g. "Europe/Paris", for now.getHours(tz) and friends
//
// It evaluates to true (allow), false (deny), or the string "approval"
// (require approval); the strings "allow" and "deny" are accepted too, so
// both branches of a ?: can be strings (CEL needs one type there). Any
// other value, or an evaluation error such as a missing argument, denies:
// conditions fail closed. Examples:
//
//	"finance" in principal.groups                                   only the finance group
//	args.amount < 1000                                              amount under 1000
//	args.amount < 1000 ? "allow" : "approval"                       larger amounts need approval
//	now.getDayOfWeek(tz) >= 1 && now.getDayOfWeek(tz) <= 5 &&
//	    now.getHours(tz) >= 9 && now.getHours(tz) < 18              working hours, tenant time zone
//	principal.agent == "claude-desktop"                             only that agent
//
// [CompileCondition] checks an expression when it is saved and reports the
// first problem with its line and column. Compiled programs are cached by
// expression text. Evaluation is bounded by a cost limit ([CostLimit]) and a
// timeout ([EvalTimeout]); an expression that can exceed the limit whatever
// the arguments (nested loops over constant lists) is refused at save.
//
// # Rules cache
//
// Each Engine caches a tenant's rules in memory. Every change to the rule
// tables fires a trigger that NOTIFYs the channel "locksmith_policy" with the
// tenant id, and [Engine.Run] LISTENs on it and drops that tenant's entry, so
// a kill switch takes effect on every instance within the NOTIFY latency
// (milliseconds). While Run is not connected the cache is bypassed and every
// decision reads the rules from the database; entries also expire after
// [RulesTTL] as a fallback.
//
// What belongs here: decision logic, tenant-level rule storage and CEL. What
// does not: approval requests (package approvals), the audit trail (package
// audit), and the MCP protocol (package web/mcp).
package policy
