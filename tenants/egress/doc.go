// Package egress is the one outbound HTTP client of Locksmith. Every URL a
// tenant can influence — IdP issuers, JWKS endpoints, upstream OAuth
// endpoints, upstream APIs and MCP servers, webhooks — is fetched through a
// [Client] built by [New], so that the server-side request forgery (SSRF)
// guard cannot be forgotten or bypassed.
//
// The guard sits in the client's dialer: every new connection resolves the
// host itself, refuses the connection if any resolved address is loopback,
// private, link-local (including the cloud metadata address
// 169.254.169.254), unspecified, carrier-grade NAT, multicast, broadcast,
// reserved or reserved for documentation, and then dials exactly the address
// it checked. IPv4-mapped IPv6 addresses are unmapped first, and the IPv4
// address embedded in NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses is
// checked too. Because the check runs per connection, redirects and DNS
// names that re-resolve to a different address (DNS rebinding) are covered.
// The client never uses an HTTP proxy, since a proxy would make the dial
// guard check the proxy instead of the target.
//
// [Client.CheckURL] is the pre-flight check for forms: it gives an admin a
// plain answer before a URL is stored. It is a convenience, not the
// defence; the dialer re-checks every connection.
//
// Everything the guard refuses is reported as an [*Error] wrapping one of
// the sentinels ([ErrForbiddenTarget], [ErrInvalidURL], [ErrResolve],
// [ErrResponseTooLarge], [ErrTooManyRedirects], [ErrInsecureRedirect]).
// Its Error text is written for an admin and safe to show.
//
// Only [Options.AllowPrivate] turns the guard off; it is for development
// and tests, and also permits plain http.
//
// [Breakers] is the other half of outbound policy: a circuit breaker and a
// bound on calls in flight per key (for Locksmith, a tenant's upstream), so
// a dead or slow target fails fast and cannot hold every goroutine and
// connection. [Judge] turns one exchange into the breaker's [Verdict]. Its
// refusals are an [*UnavailableError] wrapping [ErrCircuitOpen] or
// [ErrTooBusy], separate from the guard's [*Error].
//
// What belongs here: outbound transport policy (address rules, timeouts,
// size and redirect limits, circuit breaking and concurrency bounds). What does not: protocol logic (OIDC discovery,
// OAuth, MCP), which lives with its callers and takes the *http.Client from
// [Client.HTTPClient].
package egress
