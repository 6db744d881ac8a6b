// Package consent holds Token B: the grants users give upstreams, the vault
// that keeps their tokens sealed in PostgreSQL, and the broker that hands a
// token to each tool call (from a sealed in-memory cache, by a single-flight
// refresh narrowed to the call's scopes, or by token exchange at the tenant's
// IdP). The consent web pages and end-user sign-in live in web: at the end
// of a flow they call Broker.ExchangeCode and Vault.SaveGrant, and "my
// connections" uses Vault.UserGrants and Broker.Revoke. The MCP endpoint
// (web/mcp) calls Broker.Token for each tool call and Broker.AfterUse when
// it is over. The River workers in jobs call Broker.RefreshGrant,
// Broker.RevokeAtUpstream and Vault.Purge.
//
// # Grants
//
//	          SaveGrant (consent, incremental: scopes merge)
//	               │
//	               ▼
//	┌──────────► active ──── invalid_grant / 2 lost refreshes / ────► needs_reauth
//	│              │         expired without refresh token                │
//	│              │ Revoke                                               │ Revoke
//	│              ▼                                                      ▼
//	│           revoked ◄──────────────────────────────────────────────────
//	│              │                      (tokens destroyed at once; the
//	└── SaveGrant ─┴───────────────────── upstream revocation is a job)
//
// A revoked or needs_reauth grant holds no token material. Both transitions
// NOTIFY NotifyChannel in their transaction; every broker drops the grant
// from its cache when the notification arrives (milliseconds).
//
// # Refresh of one grant (single flight)
//
// Within a process, callers for the same user, upstream and scope set share
// one flight (singleflight). Across instances, the grant row carries a lease
// (lease_owner, lease_expires_at) that is taken in a short transaction with
// the row locked (SELECT … FOR UPDATE), after re-reading it: if another
// instance refreshed meanwhile, its token is used and no lease is taken. No
// transaction or connection is held during the upstream call. Callers that
// find the lease taken poll the row (10 ms doubling to 250 ms, jittered)
// until the refresh settles, bounded by WaitTimeout.
//
// Taking the lease also sets refresh_started_at (the in-flight marker) and
// increments refresh_attempts (presentations of the current refresh token
// with an unknown outcome). Then, by the upstream's answer:
//
//	answer                          write (CAS on version AND lease_owner)            caller gets
//	──────────────────────────────  ───────────────────────────────────────────────  ─────────────────────
//	200 with tokens                 new refresh + access token, version+1,            the token
//	                                lease/marker/attempts cleared, next refresh
//	                                job enqueued — all before the token is used;
//	                                CAS fails → nothing written (ErrLeaseLost)        RetryableError
//	400 invalid_grant               needs_reauth, tokens destroyed, NOTIFY            ConsentRequiredError
//	other 4xx (invalid_client, …)   lease released, this attempt uncounted            OAuthError
//	5xx, 429, not sent (dial)       lease released, this attempt uncounted;           RetryableError
//	                                Retry-After blocks the upstream's refreshes         (RetryAfter)
//	sent, answer lost (timeout,     lease KEPT until it expires, marker kept;         RetryableError
//	reset, unreadable 200)          if this was the 2nd uncertain presentation:         (Uncertain)
//	                                needs_reauth, NOTIFY                              ConsentRequiredError
//
// Lost answer and crash. A refresh token presented once without an answer
// may have been consumed (rotated) by the upstream; presenting it again can
// make the upstream revoke the whole token family. So:
//
//	lease free, marker clear ──take lease──► attempt 1 ──answer lost──► lease kept, marker set
//	                                                    ──process dies──► lease, marker left behind
//	lease expired, marker set, attempts=1 ──take lease──► attempt 2 (the one retry)
//	      ├─ 200 → tokens written, all cleared (the token had not been consumed)
//	      ├─ invalid_grant (the upstream saw the reuse) → needs_reauth + consent URL
//	      └─ answer lost again → needs_reauth + consent URL
//	lease expired, marker set, attempts≥2 → needs_reauth (no upstream call)
//
// Thus a process killed between the upstream's answer and the commit leaves
// the lease and the marker; the next caller after the lease expires makes
// the one retry and ends either with a working token (the upstream had not
// rotated, or does not rotate) or with needs_reauth and a consent URL —
// never with a grant that silently fails forever. A grant needs_reauth
// because of lost answers also hands its last refresh token to the revoke
// job, which revokes the family the lost answer may have created. At most
// two presentations of one refresh token ever happen.
//
// # Narrowing
//
// When the upstream's refresh accepts a narrower scope (RefreshNarrows) and
// a call asks for a strict subset of the grant's scopes, the broker refreshes
// with scope= and caches that token for that scope set (Token.Narrowed).
// The rotated refresh token is written as above; the grant's own access
// token is kept. Otherwise the grant's own token is used (Narrowed false).
//
// # Revoke after use
//
// An upstream registered with RevokeAfterUse gets single-use tokens: every
// token the broker mints for a call — a narrowed refresh, or a token
// exchange — serves exactly one call and is then revoked. The grant's own
// access and refresh tokens are never revoked this way (revoking the
// refresh token would disconnect the user); a call that gets the grant's
// own token (no narrowing asked or possible) is served as usual.
//
//	Token ──mint──► Token{RevokeAfterUse: true}    not cached; callers don't share
//	                   │                           a flight (each mints its own;
//	                   │                           refreshes take turns on the lease)
//	                   ├─ one transaction: token sealed in grant_revocations
//	                   │  + RevokeJobArgs scheduled RevokeAfterUseBackstop later
//	                   │  (fails → token revoked at once, not handed out,
//	                   │   *RetryableError)
//	                   ▼ the upstream call
//	AfterUse ──goroutine──► POST revocation_url    token=…, token_type_hint=access_token,
//	(returns at once)        (RFC 7009, egress)     as the client the token was issued to
//	                   │
//	                   ├─ 2xx          → counted Revoked; row deleted (the job finds nothing)
//	                   └─ anything else → logged (never the token), counted Failed;
//	                                      the call's answer is unaffected; the row stays
//	                                      and the job revokes it, retried with backoff
//
// The revocation runs after the answer path, bounded by RefreshTimeout, at
// most 256 at a time per broker (beyond that it is left to the job, logged
// and counted as failed); Close waits for those in flight. The job is the
// backstop: a process that dies between handing the token out and revoking
// it leaves a row whose job, on any instance, revokes the token
// RevokeAfterUseBackstop after it was handed out. The cost is one small
// transaction per single-use token. The upstream's revocation endpoint is
// required to turn RevokeAfterUse on (tenants refuses the registration
// otherwise); for token exchange it is the IdP's, where Locksmith
// authenticates with its exchange client. The flag is read from the
// registration cache: turning it on takes effect within UpstreamTTL, and a
// minted token cached before is then dropped (not revoked: other calls may
// be using it) and expires on its own.
//
// # Cache
//
// Entries are keyed by tenant, upstream, user and scope set and hold the
// token sealed with AES-256-GCM under a key generated at process start, so
// a memory dump of the cache holds nothing usable; each use opens it. An
// entry is used until ExpiryMargin before the token expires. A warm hit does
// no database round trip (a minted token re-checks RevokeAfterUse in the
// registration cache). Fills that race an invalidation are discarded.
// Single-use tokens (RevokeAfterUse) are never cached.
//
// # Errors
//
// No grant, needs_reauth, missing scopes and revoked are a
// *ConsentRequiredError carrying the consent URL; upstream outages a
// *RetryableError (never needs_reauth); refusals an *OAuthError. Tokens,
// secrets and response bodies never appear in errors, logs or
// last_refresh_error.
package consent
