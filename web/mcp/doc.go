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
//	    ─▶ upstream gate ─▶ upstream ─▶ audit outcome (committed) ─▶ answer
//	    (a single-use Token B is handed back to Broker.AfterUse, which
//	    revokes it in the background)
//
// A tools/call of a catalog tool from a 2025-06-18 or 2025-11-25 client
// skips the per-request SDK server (see fastpath.go) and answers exactly as
// the SDK would; everything else goes through the SDK.
//
// # Slow and dead upstreams
//
// Every upstream request made for a call (REST tools on the fast and SDK
// paths, relayed MCP tools, and relayed lists and reads of upstream MCP
// servers) passes the upstream's gate first (breaker.go): a circuit breaker
// and a bound on calls in flight, per (tenant, upstream), in-process on
// each instance (egress.Breakers). Requests already carry the egress
// client's timeouts (10 s per request, 5 s to connect, 10 s to headers).
//
//   - After Config.BreakerThreshold (default 5) consecutive failures —
//     connection refused or reset, timeout, DNS or TLS failure, 5xx; never
//     a 4xx, which is the caller's problem — the circuit opens for
//     Config.BreakerCoolDown (default 30 s). A 429 neither opens nor closes
//     it: rate limits are often per user (Locksmith calls with each user's
//     own token), and one busy user must not stop the tenant's other users;
//     the agent gets the 429 as a retryable error with its Retry-After.
//   - While open, calls are refused without contacting the upstream. After
//     the cool-down exactly one probe call goes through (the others are
//     still refused): success closes the circuit, failure opens it again.
//   - At most Config.UpstreamMaxInFlight (default 64) calls to one upstream
//     are in flight from one instance; a call that finds no slot waits up
//     to Config.UpstreamSlotWait (default 2 s, or until the request ends).
//
// A refused tools/call is a retryable tool error (kind "retryable",
// retryable true, retry_after_seconds, reason "circuit_open" or
// "upstream_busy") saying which upstream is unavailable, that Locksmith
// stopped calling it and for how long, and when to retry; it speaks only of
// the tenant's own upstream. The call is audited like other failures before
// the upstream: its intent is committed, then an upstream_error outcome
// whose error begins "not called:". Relayed reads get the same message as a
// JSON-RPC error; a relayed list skips the upstream. Each opening is logged
// once ("mcp upstream circuit opened") and counted by
// [Handler.UpstreamCircuitOpens].
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
