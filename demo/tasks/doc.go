// Package tasks is "Acme Tasks", the demo upstream API that Locksmith brokers
// access to. It is a small REST API for per-user to-do items together with its
// own OAuth 2.0 authorization server, built on the standard library only.
//
// It belongs here because `locksmith dev` runs it as the upstream to demo
// against, and because tests of other packages (the token broker, the MCP
// endpoint) need a real, misbehaving-on-demand OAuth provider: every security
// rule an upstream may enforce (PKCE, exact redirect URIs, single-use codes,
// strict refresh-token rotation with reuse detection, downscoping, RFC 7009
// revocation) is implemented, every resource request is recorded, and faults
// can be injected from Go. Nothing in this package is meant for production.
//
// # Endpoints
//
//	GET  /.well-known/oauth-authorization-server  RFC 8414 metadata
//	GET  /.well-known/oauth-protected-resource    RFC 9728 metadata
//	GET  /authorize                               code + PKCE (S256), consent page
//	GET  /authorize/consent                       consent page with a user picked
//	POST /authorize/decision                      Allow / Deny
//	POST /token                                   authorization_code, refresh_token
//	POST /revoke                                  RFC 7009
//	GET  /openapi.json                            OpenAPI 3.0 for the resource API
//	GET|POST /tasks, GET|PATCH|DELETE /tasks/{id} resource API (bearer tokens)
//
// # Token families
//
// Every authorization (a code exchange, or [Server.IssueTokens]) starts a
// token family. All access and refresh tokens descending from it belong to
// the family, and revoking the family kills all of them at once:
//
//	consent ──► code ──(exchange once)──► family{AT1, RT1}
//	                  └─(exchange again)─► family revoked (code replay)
//
//	RT1 ──(refresh)──► RT1 rotated; AT2, RT2 issued (AT1 lives until expiry)
//	RT2 ──(refresh)──► RT2 rotated; AT3, RT3 issued
//	RT1 ──(refresh)──► reuse detected ──► family revoked: AT1..3, RT1..3 dead
//	RTn ──(revoke)───► family revoked
//	ATn ──(revoke)───► only ATn revoked
//
// Tokens are opaque random strings; only their SHA-256 (see [TokenHash]) is
// kept in memory. All state lives in one mutex-guarded, size-bounded store.
package tasks
