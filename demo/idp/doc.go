// Package idp is the demo identity provider: "the tenant's IdP" in `locksmith dev` and in
// tests. It is a real OpenID provider built on github.com/zitadel/oidc/v3/pkg/op (an
// OpenID-certified library) with an in-memory storage, demo users and demo clients. Nothing
// here is for production: secrets are well known, state lives in memory, there are no
// passwords (the login page lets you pick a user).
//
// What belongs here: the provider, its storage, its login page, and test helpers that reach
// into it (minting and forging tokens, key rotation, counters). What does not: anything of
// Locksmith itself; Locksmith must treat this IdP like any other OIDC IdP.
//
// # Served endpoints
//
//	/.well-known/openid-configuration   discovery (code_challenge_methods_supported: S256)
//	/keys                               JWKS (RS256 keys, current and not yet retired)
//	/authorize, /authorize/callback     authorization code flow (+ PKCE, required for public clients)
//	/login                              server-rendered user picker (data-testid="login-<username>")
//	/oauth/token                        authorization_code, refresh_token (rotating),
//	                                    client_credentials, RFC 8693 token exchange
//	/userinfo, /oauth/introspect, /revoke, /end_session, /healthz, /ready
//
// # Access tokens
//
// Access tokens are JWTs in the RFC 9068 shape: header typ "at+jwt", RS256, claims iss,
// sub, aud, exp, iat, jti, client_id, scope (space separated, omitted when empty), auth_time
// for user logins, and for users email, email_verified, groups, preferred_username and name.
// aud is the RFC 8707 resource parameters (of the authorization request, narrowed by those
// of the token request), else the client id; a single audience is written as a string.
// client_credentials tokens have sub = client id and no user claims. Token exchange tokens
// have the subject token's sub, the exchanging client's client_id, aud = resource and
// audience parameters (else the client id) and act.sub when an actor_token was given.
//
// op signs its own JWT access tokens with typ "JWT" and offers no hook to change the header.
// So clients are registered with op's "Bearer" token type, for which op asks its Crypto to
// Encrypt "tokenID:subject". Storage.CreateAccessToken builds and signs the at+jwt JWT and
// records it under an "at_" token id; the IdP's Crypto (tokenCrypto) returns that JWT from
// Encrypt, and its Decrypt verifies such a JWT and returns "jti:sub", which is what op's
// userinfo, introspection, revocation and token exchange handlers expect. Authorization
// codes still go through op's AES-256-GCM crypto.
//
// # Token exchange
//
// Only a confidential client registered with GrantTokenExchange may exchange (else
// unauthorized_client). subject_token_type must be access_token and the subject token an
// unexpired at+jwt access token issued or minted by this IdP and not revoked (else
// invalid_request); only access tokens are issued. Without a scope parameter the subject
// token's scopes carry over. TokenExchangeCount counts every attempt.
//
// # Keys
//
// One RSA-2048 key is current and signs everything new. RotateKey adds a new current key;
// older keys stay in the JWKS until RetireKey or RetireOldKeys, after which tokens they
// signed fail for verifiers that refetch the JWKS. JWKSFetchCount counts JWKS requests so
// tests can check a verifier's refetch rate limit.
//
// # Test helpers
//
// NewTestServer starts an IdP on 127.0.0.1:0 for a test. MintAccessToken and MintIDToken
// sign tokens directly with any claims (override or remove claims through MintRequest.Extra,
// choose or omit the typ header, choose the signing key); SigningKeyForTests and JWKS expose
// the keys for forging. None of this is reachable over HTTP.
//
// Limits: the issuer has no path (serve Handler at the root); private_key_jwt, the JWT
// bearer grant, the device flow and refresh tokens from token exchange are not offered.
package idp
