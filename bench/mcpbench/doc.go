// Package mcpbench benchmarks one MCP tools/call through Locksmith against
// the same call made straight to the upstream (Acme Tasks) and through a
// minimal MCP server (the Go SDK's stateless Streamable HTTP handler behind
// the SDK's bearer middleware with a go-oidc verifier) that calls the same
// upstream with the same Token B. Everything runs in one process on port-0
// listeners, on a real PostgreSQL (the durable audit trail commits there).
//
// Locksmith runs twice: with the durable audit trail (intent and outcome
// each committed before the call proceeds) and with a benchmark-only
// [nopAudit] that leaves the audit out. Nothing in production can select it.
//
// The package holds only benchmarks; docs/benchmarks.md has the commands
// and the figures.
package mcpbench
