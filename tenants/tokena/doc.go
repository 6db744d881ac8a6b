// Package tokena verifies Token A: the JWT access token an agent presents
// to a tenant's MCP endpoint, issued by the tenant's own identity provider.
// Locksmith is a resource server only; it checks such tokens and never
// issues them. [Verifier.Verify] is on the hot path of every MCP request and
// also backs the console's "test a token" box.
//
// # What is checked
//
// In this order, cheapest first, each refusal an [*Error] with a public
// message and a [Reason]:
//
//  1. size: at most [MaxTokenBytes] (16 KiB), header at most 2 KiB,
//     signature at most 1400 characters — before anything is decoded;
//  2. the verified-token cache (see below);
//  3. exactly three base64url segments (no padding, canonical);
//  4. the header, parsed as a strict JSON object (no duplicate members):
//     alg must be RS256, PS256, ES256 or EdDSA ("none" and every HMAC alg
//     are refused); jku, x5u, jwk, x5c and crit are refused outright, so a
//     token can never name its own key and no URL it contains is ever
//     fetched; kid is at most 256 plain ASCII characters without quotes,
//     backslashes, spaces, "%" or "..", and is only ever a map key;
//  5. typ: at+jwt (or application/at+jwt) when the registration sets
//     RequireATJWT; otherwise at+jwt, JWT or absent;
//  6. the claims, before any key is looked up, so that a foreign, expired
//     or malformed token never causes a JWKS fetch or an RSA operation:
//     iss equals the registration's issuer exactly; aud (string or array)
//     contains the audience; exp is present and now < exp+skew; nbf and
//     iat are not after now+skew; no ID-token traits (nonce, at_hash,
//     c_hash, a payload typ "ID", or azp equal to the audience on a token
//     not typed at+jwt); the mapped subject is a non-empty string and the
//     other mapped claims have the right shapes; act nests at most 8 deep;
//  7. the key: from the registration's JWKS, matched by kid and by type
//     (RSA for RS256/PS256, EC P-256 for ES256, Ed25519 for EdDSA; a JWK
//     alg must equal the token's) — which is what defeats an HS256 token
//     "signed" with the RSA public key, besides the allow-list;
//  8. the signature.
//
// The skew (Config.Skew, default 30 s) applies in both directions.
//
// # JWKS
//
// Keys are fetched from the registration's JWKS URI with the injected
// (SSRF-guarded) HTTP client and cached per URI. Keys with use "enc",
// key_ops without "verify", symmetric keys, private keys, RSA keys under
// 2048 bits and EC keys off P-256 are ignored. A token whose kid is not
// cached causes at most one refetch per Config.RefetchInterval (default
// 30 s) per URI; concurrent callers share one fetch (single flight). Keys
// older than Config.KeysMaxAge (default 10 min) are refreshed by the next
// verification that needs them, without making other callers wait. When a
// fetch fails the cached keys keep verifying, however old; failed fetches
// are not retried for RefetchInterval. Only when no keys were ever fetched
// is a token refused with [ReasonJWKSUnavailable] (wrapping
// [ErrUnavailable], a 503 rather than a 401). A token without kid is
// accepted only if exactly one published key fits its alg.
//
// # Cache
//
// A verified token is cached under the SHA-256 of the raw token (the token
// itself is not kept) together with the registration's issuer, JWKS URI,
// audience, typ rule and effective claim mapping — so a token verified for
// one tenant is never served from the cache to a registration that differs
// in any of them. An entry is served only before exp+skew and only while
// its signing key is still published in the last fetched JWKS: a key
// retired at the IdP stops its cached tokens at the next refetch. The cache
// is bounded (Config.CacheSize, default 10000) with near-random eviction.
//
// # Claim mapping
//
// [tenants.ClaimMapping] names the claims a [Principal] is built from;
// empty fields come from the registration's [Preset] (see [Presets] for
// the facts each preset relies on). Scopes and groups may be a JSON array
// or a space-separated string under any claim name. Agent "act" takes the
// agent from the act claim: the outermost actor, which RFC 8693 section
// 4.1 defines as the current actor; [Principal.Act] holds the whole chain,
// outermost first.
//
// What belongs here: parsing and verifying Token A, JWKS caching, claim
// mapping and presets. What does not: finding the tenant or its IdP
// registration (tenants), bearer extraction and WWW-Authenticate
// challenges (web), scope hierarchies and policy (the policy engine).
package tokena
