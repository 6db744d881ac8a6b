// Package mcp is Locksmith's per-tenant MCP endpoint, {BASE}/t/{tenant}/mcp:
// the door every agent comes through. It is a strict OAuth 2.0 resource
// server for Token A (the agent's access token from the tenant's own IdP) and
// an MCP server (Streamable HTTP, on the official Go SDK, stateless) whose
// tools are the tenant's catalog: REST tools that call an upstream API with
// the user's Token B, and tools relayed from upstream MCP servers.
//
// # One request
//
//	Host/Origin check ─▶ tenant (cached 5 s) ─▶ body ≤ 1 MiB, JSON-RPC shape,
//	MCP-Protocol-Version ─▶ Token A (401/403 challenges, RFC 9728) ─▶ SDK server
//	built for this request ─▶ tools/list | tools/call:
//	    policy (+ approvals) ─▶ broker (Token B) ─▶ audit intent (committed)
//	    ─▶ upstream ─▶ audit outcome (committed) ─▶ answer
//	    (a single-use Token B is handed back to Broker.AfterUse, which
//	    revokes it in the background)
//
// A tools/call of a catalog tool from a 2025-06-18 or 2025-11-25 client
// skips the per-request SDK server (see fastpath.go) and answers exactly as
// the SDK would; everything else goes through the SDK.
//
// Token A is never sent upstream: the only credential an upstream request
// carries is the Token B the [Broker] returned for that user and upstream.
//
// # Seams
//
// Pieces built elsewhere are reached through small interfaces declared here:
// [Registry] (tenants and their registrations), [Verifier] (Token A),
// [Broker] (Token B), [Policy] and [Audit]. Production wires the adapters
// [TenantsRegistry], [ConsentBroker], [PolicyEngine] (policy engine and
// two-person approvals) and [DurableAudit] (the audit trail's writer);
// [DefaultPolicy] and [LogAudit] are stand-ins for a Handler built without
// them (tests, tools without a database).
//
// What belongs here: the MCP endpoint, its auth middleware, protected
// resource metadata, the mapping of tools to upstream requests and of
// upstream answers to tool results. What does not: token validation rules
// (tenants/tokena), grants and consent (consent), the catalog's storage
// (tenants).
package mcp
