package tokena

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"time"
)

// agentAct is the Agent mapping value that takes the agent from the act
// claim instead of a client id claim.
const agentAct = "act"

// checkType applies the typ rule: at+jwt when the registration requires
// RFC 9068 tokens; otherwise at+jwt, JWT or no typ, and nothing else (an
// explicitly typed JWT of another kind — logout, ID-JAG, DPoP proof — is
// never an access token).
func checkType(h header, requireAT bool) *Error {
	if requireAT {
		if !h.hasTyp || !isATJWT(h.typ) {
			got := "absent"
			if h.hasTyp {
				got = quote(h.typ)
			}
			return refuse(ReasonNotAccessToken, "the token's typ header is %s; this identity provider is registered to issue RFC 9068 access tokens with typ \"at+jwt\" (an ID token is not an access token)", got)
		}
		return nil
	}
	if h.hasTyp && !isATJWT(h.typ) && !isPlainJWT(h.typ) {
		return refuse(ReasonNotAccessToken, "the token's typ header %s is not an access token type", quote(h.typ))
	}
	return nil
}

// checkClaims decodes the claims set and checks iss, aud, exp, nbf and iat
// (with skew), refuses ID-token traits, and maps the claims to a Principal.
// The claims are not authenticated yet: this may only refuse.
func (v *Verifier) checkClaims(seg string, h header, rk regKey) (Principal, time.Time, *Error) {
	b, err := b64.DecodeString(seg)
	if err != nil {
		return Principal{}, time.Time{}, refuse(ReasonMalformed, "the token's claims are not base64url without padding")
	}
	c, err := strictObject(b)
	if err != nil {
		return Principal{}, time.Time{}, &Error{Reason: ReasonMalformed, Message: "the token's claims are not a JSON object", Err: err}
	}

	iss, ok, err := stringMember(c, "iss")
	switch {
	case err != nil || !ok:
		return Principal{}, time.Time{}, refuse(ReasonWrongIssuer, "the token has no iss claim; expected %q", rk.issuer)
	case iss != rk.issuer:
		return Principal{}, time.Time{}, refuse(ReasonWrongIssuer, "the token was issued by %s; expected %q", quote(iss), rk.issuer)
	}

	if rerr := checkAudience(c, rk.audience); rerr != nil {
		return Principal{}, time.Time{}, rerr
	}

	now := v.now()
	exp, ok, err := dateMember(c, "exp")
	switch {
	case err != nil:
		return Principal{}, time.Time{}, refuse(ReasonMalformed, "the token's exp claim is not a NumericDate")
	case !ok:
		return Principal{}, time.Time{}, refuse(ReasonMalformed, "the token has no exp claim; access tokens must expire")
	case !now.Before(exp.Add(v.skew)):
		return Principal{}, time.Time{}, refuse(ReasonExpired, "the token expired at %s; get a new one from the identity provider", exp.Format(time.RFC3339))
	}
	for _, name := range [...]string{"nbf", "iat"} {
		t, ok, err := dateMember(c, name)
		switch {
		case err != nil:
			return Principal{}, time.Time{}, refuse(ReasonMalformed, "the token's %s claim is not a NumericDate", name)
		case ok && t.After(now.Add(v.skew)):
			return Principal{}, time.Time{}, refuse(ReasonNotYetValid, "the token's %s (%s) is in the future; it is not valid yet, or the identity provider's clock is ahead", name, t.Format(time.RFC3339))
		}
	}

	if rerr := checkIDTokenTraits(c, h, rk.audience); rerr != nil {
		return Principal{}, time.Time{}, rerr
	}
	p, rerr := mapClaims(c, rk)
	if rerr != nil {
		return Principal{}, time.Time{}, rerr
	}
	p.Issuer, p.ExpiresAt = iss, exp
	return p, exp, nil
}

// checkAudience requires aud (a string or an array of strings) to contain
// audience exactly.
func checkAudience(c map[string]json.RawMessage, audience string) *Error {
	raw, ok := c["aud"]
	if !ok {
		return refuse(ReasonWrongAudience, "the token has no aud claim; expected %s", audience)
	}
	var auds []string
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return refuse(ReasonMalformed, "the token's aud claim is not a string or an array of strings")
		}
		auds = []string{s}
	} else if err := json.Unmarshal(raw, &auds); err != nil || (len(raw) > 0 && raw[0] != '[') {
		return refuse(ReasonMalformed, "the token's aud claim is not a string or an array of strings")
	}
	if !slices.Contains(auds, audience) && !slices.ContainsFunc(auds, func(a string) bool { return sameResource(a, audience) }) {
		return refuse(ReasonWrongAudience, "the token was issued for a different audience (expected %s)", audience)
	}
	return nil
}

// sameResource reports whether two absolute URLs name the same resource
// up to the case of scheme and host, which are case-insensitive (RFC 3986
// section 6.2.2.1; the MCP spec asks servers to accept upper-case scheme
// and host in resource URIs). Everything else, trailing slash included,
// must match exactly.
func sameResource(a, b string) bool {
	if len(a) != len(b) || !strings.EqualFold(a, b) {
		return false
	}
	ua, err := url.Parse(a)
	if err != nil || !ua.IsAbs() || ua.Opaque != "" {
		return false
	}
	ub, err := url.Parse(b)
	if err != nil {
		return false
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host) &&
		ua.User == nil && ub.User == nil &&
		ua.EscapedPath() == ub.EscapedPath() && ua.RawQuery == ub.RawQuery && ua.Fragment == ub.Fragment
}

// checkIDTokenTraits refuses tokens that carry what only OpenID Connect ID
// tokens carry: nonce, at_hash or c_hash; a Keycloak payload typ of "ID";
// or, unless typed at+jwt, an azp equal to the expected audience (an ID
// token is issued to the client named by its aud, and azp repeats it).
func checkIDTokenTraits(c map[string]json.RawMessage, h header, audience string) *Error {
	for _, name := range [...]string{"nonce", "at_hash", "c_hash"} {
		if _, ok := c[name]; ok {
			return refuse(ReasonNotAccessToken, "the token carries a %s claim, which marks an OpenID Connect ID token; present an access token", name)
		}
	}
	if typ, _, _ := stringMember(c, "typ"); strings.EqualFold(typ, "ID") {
		return refuse(ReasonNotAccessToken, "the token's typ claim is \"ID\", which marks an ID token; present an access token")
	}
	if !isATJWT(h.typ) {
		if azp, _, _ := stringMember(c, "azp"); azp == audience {
			return refuse(ReasonNotAccessToken, "the token's azp equals its audience, which marks an ID token issued to that client; present an access token")
		}
	}
	return nil
}

// mapClaims builds the Principal from the registration's claim mapping.
func mapClaims(c map[string]json.RawMessage, rk regKey) (Principal, *Error) {
	m := rk.claims
	var p Principal
	sub, _, err := stringMember(c, m.Subject)
	if err != nil || sub == "" {
		return Principal{}, refuse(ReasonMalformed, "the token has no %s claim naming its subject (a non-empty string)", quote(m.Subject))
	}
	p.Subject = sub
	if m.Email != "" {
		if p.Email, _, err = stringMember(c, m.Email); err != nil {
			return Principal{}, refuse(ReasonMalformed, "the token's %s claim (email) is not a string", quote(m.Email))
		}
	}
	if p.Groups, err = stringsMember(c, m.Groups); err != nil {
		return Principal{}, refuse(ReasonMalformed, "the token's %s claim (groups) is not a list of strings or a space-separated string", quote(m.Groups))
	}
	if p.Scopes, err = stringsMember(c, m.Scopes); err != nil {
		return Principal{}, refuse(ReasonMalformed, "the token's %s claim (scopes) is not a space-separated string or a list of strings", quote(m.Scopes))
	}
	act, rerr := actChain(c)
	if rerr != nil {
		return Principal{}, rerr
	}
	p.Act = act
	switch {
	case m.Agent == agentAct:
		if len(act) > 0 {
			p.AgentClientID = act[0]
		}
	case m.Agent != "":
		if p.AgentClientID, _, err = stringMember(c, m.Agent); err != nil {
			return Principal{}, refuse(ReasonMalformed, "the token's %s claim (the agent's client id) is not a string", quote(m.Agent))
		}
	}
	if p.TokenID, _, err = stringMember(c, "jti"); err != nil {
		return Principal{}, refuse(ReasonMalformed, "the token's jti claim is not a string")
	}
	return p, nil
}

// actChain reads the RFC 8693 act claim: an object with the actor's sub and
// optionally a nested act for the prior actor. The chain is returned
// outermost (current actor) first and may be at most maxActDepth long.
func actChain(c map[string]json.RawMessage) ([]string, *Error) {
	raw, ok := c["act"]
	if !ok {
		return nil, nil
	}
	var chain []string
	for len(raw) > 0 {
		if len(chain) == maxActDepth {
			return nil, refuse(ReasonMalformed, "the token's delegation chain (act) is deeper than %d actors", maxActDepth)
		}
		if raw[0] != '{' {
			return nil, refuse(ReasonMalformed, "the token's act claim is not an object")
		}
		actor, err := strictObject(raw)
		if err != nil {
			return nil, refuse(ReasonMalformed, "the token's act claim is not a JSON object")
		}
		sub, _, err := stringMember(actor, "sub")
		if err != nil || sub == "" {
			return nil, refuse(ReasonMalformed, "an actor in the token's act claim has no sub")
		}
		chain = append(chain, sub)
		raw = actor["act"]
	}
	return chain, nil
}
