package tokena

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Size limits, checked on the raw string before anything is decoded.
const (
	// MaxTokenBytes is the largest token accepted: 16 KiB.
	MaxTokenBytes = 16 << 10
	// maxHeaderChars caps the encoded header. Real headers are under 200
	// characters; x5c chains, which are refused anyway, are what gets big.
	maxHeaderChars = 2048
	// maxSignatureChars caps the encoded signature: an RSA-8192 signature
	// is 1366 characters.
	maxSignatureChars = 1400
	// maxKIDLen caps the kid used as a map key.
	maxKIDLen = 256
	// maxActDepth caps the nested act (delegation) chain.
	maxActDepth = 8
	// maxListLen caps the entries of a groups or scopes claim.
	maxListLen = 1024
)

// Accepted signature algorithms. Everything else, including none and every
// HMAC algorithm, is refused before a key is looked up.
const (
	algRS256 = "RS256"
	algPS256 = "PS256"
	algES256 = "ES256"
	algEdDSA = "EdDSA"
)

// latestDate is the largest NumericDate accepted (9999-12-31T23:59:59Z);
// larger values are refused rather than overflowing time arithmetic.
const latestDate = 253402300799

var b64 = base64.RawURLEncoding.Strict()

// header is the part of the JOSE header the verifier uses.
type header struct {
	alg    string
	kid    string
	typ    string
	hasTyp bool
}

// parts are the three segments of a compact JWS.
type parts struct {
	header, payload, signature string
	signingInput               string
}

// split applies the size limits and splits raw into exactly three
// segments, without decoding anything.
func split(raw string) (parts, *Error) {
	if raw == "" {
		return parts{}, refuse(ReasonMissing, "no token was presented")
	}
	if len(raw) > MaxTokenBytes {
		return parts{}, refuse(ReasonTooLarge, "the token is %d bytes long; at most %d bytes are accepted", len(raw), MaxTokenBytes)
	}
	i := strings.IndexByte(raw, '.')
	j := strings.LastIndexByte(raw, '.')
	if i < 0 || i == j || strings.IndexByte(raw[i+1:j], '.') >= 0 {
		n := strings.Count(raw, ".") + 1
		if n == 5 {
			return parts{}, refuse(ReasonMalformed, "the token is an encrypted JWT (JWE); a signed JWT access token is required")
		}
		return parts{}, refuse(ReasonMalformed, "the token is not a JWT: it has %d dot-separated parts instead of 3", n)
	}
	p := parts{header: raw[:i], payload: raw[i+1 : j], signature: raw[j+1:], signingInput: raw[:j]}
	switch {
	case len(p.header) > maxHeaderChars:
		return parts{}, refuse(ReasonTooLarge, "the token header is %d characters long; at most %d are accepted", len(p.header), maxHeaderChars)
	case len(p.signature) > maxSignatureChars:
		return parts{}, refuse(ReasonTooLarge, "the token signature is %d characters long; at most %d are accepted", len(p.signature), maxSignatureChars)
	case p.header == "" || p.payload == "":
		return parts{}, refuse(ReasonMalformed, "the token has an empty header or claims part")
	}
	return p, nil
}

// parseHeader decodes and checks the JOSE header: strict base64url, a JSON
// object without duplicate members, string alg/kid/typ, alg in the
// allow-list, no key-carrying or key-locating parameters, and a kid that is
// only ever a short, plain map key.
func parseHeader(seg string) (header, *Error) {
	b, err := b64.DecodeString(seg)
	if err != nil {
		return header{}, refuse(ReasonMalformed, "the token header is not base64url without padding")
	}
	members, err := strictObject(b)
	if err != nil {
		return header{}, &Error{Reason: ReasonMalformed, Message: "the token header is not a JSON object", Err: err}
	}
	// Refuse key-locating parameters first: their presence alone says the
	// token is trying something, whatever else the header claims.
	for _, name := range [...]string{"jku", "x5u", "jwk", "x5c"} {
		if _, ok := members[name]; ok {
			return header{}, refuse(ReasonForbiddenHeader, "the token header carries %q; keys are only ever taken from the identity provider's registered JWKS", name)
		}
	}
	if _, ok := members["crit"]; ok {
		return header{}, refuse(ReasonForbiddenHeader, "the token header carries \"crit\"; JWS extensions are not supported")
	}
	var h header
	var ok bool
	if h.alg, ok, err = stringMember(members, "alg"); err != nil || !ok {
		return header{}, refuse(ReasonUnsupportedAlg, "the token header has no alg string; accepted algorithms are RS256, PS256, ES256 and EdDSA")
	}
	switch h.alg {
	case algRS256, algPS256, algES256, algEdDSA:
	default:
		return header{}, refuse(ReasonUnsupportedAlg, "the token is signed with alg %s; accepted algorithms are RS256, PS256, ES256 and EdDSA", quote(h.alg))
	}
	if h.typ, h.hasTyp, err = stringMember(members, "typ"); err != nil {
		return header{}, refuse(ReasonMalformed, "the token header's typ is not a string")
	}
	var hasKID bool
	if h.kid, hasKID, err = stringMember(members, "kid"); err != nil || (hasKID && !validKID(h.kid)) {
		return header{}, refuse(ReasonMalformed, "the token header's kid is not acceptable: it must be a string of at most %d printable ASCII characters without quotes, backslashes, spaces or \"..\"", maxKIDLen)
	}
	return h, nil
}

// validKID allows the characters seen in real key ids (base64, base64url,
// hex, UUIDs, URNs) and nothing that could matter if a kid ever reached a
// path, a URL, a log line or a query: no quotes, backslashes, spaces,
// control characters, percent signs or "..".
func validKID(kid string) bool {
	if kid == "" || len(kid) > maxKIDLen || strings.Contains(kid, "..") {
		return false
	}
	for i := 0; i < len(kid); i++ {
		c := kid[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~+/=:#@", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isATJWT reports whether typ names an RFC 9068 access token. Media type
// names compare case-insensitively (RFC 7515 section 4.1.9).
func isATJWT(typ string) bool {
	return strings.EqualFold(typ, "at+jwt") || strings.EqualFold(typ, "application/at+jwt")
}

// isPlainJWT reports whether typ is the untyped JWT of IdPs that don't use
// RFC 9068 typing (Entra, Keycloak, Auth0's default profile).
func isPlainJWT(typ string) bool {
	return strings.EqualFold(typ, "JWT") || strings.EqualFold(typ, "application/jwt")
}

// errDuplicate reports a JSON object with a member name twice.
var errDuplicate = errors.New("duplicate member name")

// strictObject parses b as one JSON object and returns its members, without
// decoding their values. Duplicate member names and trailing data are
// refused, so that no two parsers can disagree about what a token says.
func strictObject(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	members := make(map[string]json.RawMessage, 16)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("member name is not a string")
		}
		if _, dup := members[name]; dup {
			return nil, errDuplicate
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		members[name] = v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the JSON object")
	}
	return members, nil
}

// errType reports a member of the wrong JSON type.
var errType = errors.New("wrong JSON type")

// stringMember returns the string value of members[name]. A present member
// that is not a JSON string (null included) is an error.
func stringMember(members map[string]json.RawMessage, name string) (string, bool, error) {
	v, ok := members[name]
	if !ok {
		return "", false, nil
	}
	if len(v) == 0 || v[0] != '"' {
		return "", true, errType
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", true, err
	}
	return s, true, nil
}

// stringsMember returns members[name] as a list: a JSON array of strings,
// or a string split on spaces (the scope claim's shape, also used by some
// IdPs for groups). Absent is nil.
func stringsMember(members map[string]json.RawMessage, name string) ([]string, error) {
	v, ok := members[name]
	if !ok || name == "" {
		return nil, nil
	}
	switch {
	case len(v) > 0 && v[0] == '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, err
		}
		f := strings.Fields(s)
		if len(f) > maxListLen {
			return nil, errors.New("too many entries")
		}
		return nilIfEmpty(f), nil
	case len(v) > 0 && v[0] == '[':
		var list []string
		if err := json.Unmarshal(v, &list); err != nil {
			return nil, errType
		}
		if len(list) > maxListLen {
			return nil, errors.New("too many entries")
		}
		return nilIfEmpty(slices.DeleteFunc(list, func(s string) bool { return s == "" })), nil
	default:
		return nil, errType
	}
}

// dateMember returns a NumericDate (RFC 7519 section 2): a JSON number of
// seconds since the epoch, possibly fractional, between 0 and year 9999.
func dateMember(members map[string]json.RawMessage, name string) (time.Time, bool, error) {
	v, ok := members[name]
	if !ok {
		return time.Time{}, false, nil
	}
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return time.Time{}, true, errType
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > latestDate {
		return time.Time{}, true, errors.New("not a NumericDate")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true, nil
}
