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
//	    policy ─▶ audit intent (committed) ─▶ broker (Token B) ─▶ upstream ─▶ audit outcome
//
// Token A is never sent upstream: the only credential an upstream request
// carries is the Token B the [Broker] returned for that user and upstream.
//
// # Seams
//
// Pieces built elsewhere are reached through small interfaces declared here:
// [Registry] (tenants and their registrations), [Verifier] (Token A),
// [Broker] (Token B), [Policy] and [Audit]. [DefaultPolicy] and [LogAudit]
// are temporary stand-ins until the policy engine, approvals and the durable
// audit trail exist; they are documented as such.
//
// What belongs here: the MCP endpoint, its auth middleware, protected
// resource metadata, the mapping of tools to upstream requests and of
// upstream answers to tool results. What does not: token validation rules
// (tenants/tokena), grants and consent (consent), the catalog's storage
// (tenants).
package mcp
