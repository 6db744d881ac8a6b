package tenants

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/locksmithhq/locksmith/tenants/egress"
)

// maxMetadataBytes caps a discovery document or a JWKS: 1 MiB.
const maxMetadataBytes = 1 << 20

// IdPCheck is the result of a live check of an IdP issuer ([Service.CheckIdP]).
// Problems and Warnings are sentences written for the admin; OK is true
// when there are no Problems.
type IdPCheck struct {
	OK       bool
	Problems []string
	// Warnings don't stop Token A validation but will bite, e.g. a discovery
	// document without code_challenge_methods_supported, which MCP clients
	// refuse to use.
	Warnings  []string
	Found     IdPFound
	CheckedAt time.Time
}

// IdPFound is what the check read from the issuer's discovery document and
// JWKS. Fields are empty when the check stopped before reaching them.
type IdPFound struct {
	DiscoveryURL string
	// Issuer is the issuer as written in the discovery document.
	Issuer  string
	JWKSURI string
	// KeyCount is the number of usable public signing keys in the JWKS.
	KeyCount int
	KeyIDs   []string
	// Algorithms are the keys' alg values, or the discovery document's
	// id_token_signing_alg_values_supported when keys name none.
	Algorithms            []string
	AuthorizationEndpoint string
	TokenEndpoint         string
	UserinfoEndpoint      string
	RevocationEndpoint    string
	IntrospectionEndpoint string
	EndSessionEndpoint    string
	ScopesSupported       []string
	CodeChallengeMethods  []string
	GrantTypes            []string
}

// authServerMetadata holds the fields Locksmith reads from an OpenID
// Connect discovery document or RFC 8414 authorization server metadata.
type authServerMetadata struct {
	Issuer                string   `json:"issuer"`
	JWKSURI               string   `json:"jwks_uri"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	UserinfoEndpoint      string   `json:"userinfo_endpoint"`
	RevocationEndpoint    string   `json:"revocation_endpoint"`
	IntrospectionEndpoint string   `json:"introspection_endpoint"`
	EndSessionEndpoint    string   `json:"end_session_endpoint"`
	ScopesSupported       []string `json:"scopes_supported"`
	CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
	GrantTypes            []string `json:"grant_types_supported"`
	SigningAlgs           []string `json:"id_token_signing_alg_values_supported"`
}

// fetchProblem is why a metadata fetch failed: msg is for the admin,
// refused says the egress guard refused the URL before any request, err is
// the detail for logs.
type fetchProblem struct {
	msg     string
	refused bool
	err     error
}

// fetchJSON GETs raw through the egress client and decodes a JSON object
// into into. what names the document in messages ("discovery", "JWKS").
func (s *Service) fetchJSON(ctx context.Context, what, raw string, into any) *fetchProblem {
	if err := s.egress.CheckURL(ctx, raw); err != nil {
		return &fetchProblem{msg: err.Error(), refused: true, err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return &fetchProblem{msg: "the URL could not be read", refused: true, err: err}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.egress.Do(req)
	if err != nil {
		return &fetchProblem{msg: transportMessage(what, raw, err), err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	if err != nil {
		return &fetchProblem{msg: transportMessage(what, raw, err), err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return &fetchProblem{msg: fmt.Sprintf("%s returned HTTP %d at %s", what, resp.StatusCode, raw)}
	}
	if len(body) > maxMetadataBytes {
		return &fetchProblem{msg: fmt.Sprintf("%s at %s is larger than 1 MiB", what, raw)}
	}
	if !json.Valid(body) {
		return &fetchProblem{msg: fmt.Sprintf("%s at %s is not JSON", what, raw)}
	}
	if err := json.Unmarshal(body, into); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return &fetchProblem{msg: fmt.Sprintf("%s at %s has a malformed %q field", what, raw, te.Field), err: err}
		}
		return &fetchProblem{msg: fmt.Sprintf("%s at %s is not a JSON object", what, raw), err: err}
	}
	return nil
}

// transportMessage turns a failed request into a sentence for the admin.
func transportMessage(what, raw string, err error) string {
	var eg *egress.Error
	if errors.As(err, &eg) {
		return eg.Error()
	}
	var cve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var rh tls.RecordHeaderError
	var alert tls.AlertError
	switch {
	case errors.As(err, &cve):
		return "TLS error: " + cve.Err.Error()
	case errors.As(err, &ua):
		return "TLS error: " + ua.Error()
	case errors.As(err, &he):
		return "TLS error: " + he.Error()
	case errors.As(err, &ci):
		return "TLS error: " + ci.Error()
	case errors.As(err, &rh):
		return "TLS error: the server did not answer with TLS (is it plain http?)"
	case errors.As(err, &alert):
		return "TLS error: " + alert.Error()
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Sprintf("timed out fetching %s at %s", what, raw)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Sprintf("could not connect to fetch %s at %s: connection refused", what, raw)
	}
	return fmt.Sprintf("could not fetch %s at %s", what, raw)
}

// CheckIdP checks an issuer live, through the egress client: it fetches
// the OpenID Connect discovery document (issuer + /.well-known/openid-configuration),
// requires its issuer to equal issuer exactly and a jwks_uri, fetches the
// JWKS and counts its usable public signing keys. Nothing is stored. It
// never fails: every problem is reported in the result.
func (s *Service) CheckIdP(ctx context.Context, issuer string) IdPCheck {
	check, _ := s.checkIdP(ctx, issuer)
	return check
}

// checkIdP is CheckIdP that also reports whether the issuer URL itself was
// refused (unparsable, not allowed by egress, or not resolvable); SaveIdP
// refuses such an issuer instead of storing it.
func (s *Service) checkIdP(ctx context.Context, issuer string) (IdPCheck, bool) {
	c := IdPCheck{CheckedAt: s.now()}
	done := func(refused bool) (IdPCheck, bool) {
		c.OK = len(c.Problems) == 0
		return c, refused
	}
	issuer = strings.TrimSpace(issuer)
	if msg := issuerShape(issuer); msg != "" {
		c.Problems = append(c.Problems, msg)
		return done(true)
	}
	c.Found.DiscoveryURL = strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	var md authServerMetadata
	if p := s.fetchJSON(ctx, "discovery", c.Found.DiscoveryURL, &md); p != nil {
		c.Problems = append(c.Problems, p.msg)
		if p.err != nil {
			s.logger.DebugContext(ctx, "idp check: discovery failed", "err", p.err)
		}
		return done(p.refused)
	}
	c.Found.Issuer = md.Issuer
	c.Found.JWKSURI = md.JWKSURI
	c.Found.AuthorizationEndpoint = md.AuthorizationEndpoint
	c.Found.TokenEndpoint = md.TokenEndpoint
	c.Found.UserinfoEndpoint = md.UserinfoEndpoint
	c.Found.RevocationEndpoint = md.RevocationEndpoint
	c.Found.IntrospectionEndpoint = md.IntrospectionEndpoint
	c.Found.EndSessionEndpoint = md.EndSessionEndpoint
	c.Found.ScopesSupported = md.ScopesSupported
	c.Found.CodeChallengeMethods = md.CodeChallengeMethods
	c.Found.GrantTypes = md.GrantTypes

	if md.Issuer != issuer {
		c.Problems = append(c.Problems, fmt.Sprintf("the issuer in the discovery document doesn't match (found %s, expected %s)", md.Issuer, issuer))
	}
	switch {
	case len(md.CodeChallengeMethods) == 0:
		c.Warnings = append(c.Warnings, "the discovery document doesn't list code_challenge_methods_supported; MCP clients refuse to sign in without it (the IdP should advertise S256)")
	case !slices.Contains(md.CodeChallengeMethods, "S256"):
		c.Warnings = append(c.Warnings, fmt.Sprintf("the IdP doesn't advertise PKCE with S256 (code_challenge_methods_supported is %s); MCP clients require it", strings.Join(md.CodeChallengeMethods, ", ")))
	}
	if md.JWKSURI == "" {
		c.Problems = append(c.Problems, "the discovery document has no jwks_uri")
		return done(false)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if p := s.fetchJSON(ctx, "JWKS", md.JWKSURI, &set); p != nil {
		msg := p.msg
		if p.refused {
			msg = "the jwks_uri is not allowed: " + msg
		}
		c.Problems = append(c.Problems, msg)
		return done(false)
	}
	var unusable, private int
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			unusable++
			continue
		}
		if !k.IsPublic() {
			private++
			continue
		}
		if k.Use == "enc" {
			unusable++
			continue
		}
		c.Found.KeyCount++
		if k.KeyID != "" {
			c.Found.KeyIDs = append(c.Found.KeyIDs, k.KeyID)
		}
		if k.Algorithm != "" && !slices.Contains(c.Found.Algorithms, k.Algorithm) {
			c.Found.Algorithms = append(c.Found.Algorithms, k.Algorithm)
		}
	}
	if len(c.Found.Algorithms) == 0 {
		c.Found.Algorithms = md.SigningAlgs
	}
	if private > 0 {
		c.Problems = append(c.Problems, fmt.Sprintf("the JWKS publishes private or symmetric key material (%d keys); rotate those keys at once", private))
	}
	if c.Found.KeyCount == 0 {
		c.Problems = append(c.Problems, "JWKS has no signing keys")
	} else if unusable > 0 {
		c.Warnings = append(c.Warnings, fmt.Sprintf("%d keys in the JWKS can't be used to check signatures and are ignored", unusable))
	}
	return done(false)
}

// issuerShape returns why raw is not an acceptable issuer URL, or "". The
// scheme rules (https, or http when private targets are allowed) are the
// egress client's.
func issuerShape(raw string) string {
	if raw == "" {
		return "enter the issuer URL"
	}
	if len(raw) > 2000 {
		return "the issuer URL is too long"
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return "the issuer must be an absolute https URL, e.g. https://idp.example.com"
	case u.RawQuery != "" || u.Fragment != "" || strings.Contains(raw, "#"):
		return "the issuer URL can't have a query or fragment"
	case u.User != nil:
		return "the issuer URL must not contain a user name or password"
	}
	return ""
}

// UpstreamDiscovery is what [Service.DiscoverUpstream] found about an
// upstream's authorization server.
type UpstreamDiscovery struct {
	Issuer string
	// MetadataURL is the document the endpoints came from.
	MetadataURL          string
	AuthorizeURL         string
	TokenURL             string
	RevocationURL        string
	ScopesSupported      []string
	CodeChallengeMethods []string
	// PKCE is true when S256 is advertised.
	PKCE     bool
	Warnings []string
}

// DiscoverUpstream reads an upstream authorization server's metadata
// through the egress client: RFC 8414 (/.well-known/oauth-authorization-server
// inserted before the issuer's path) first, then OpenID Connect discovery
// (issuer + /.well-known/openid-configuration). The metadata's issuer must
// equal issuer exactly and name authorization and token endpoints. Errors
// are *Error with Field "issuer" and a message for the admin.
func (s *Service) DiscoverUpstream(ctx context.Context, issuer string) (UpstreamDiscovery, error) {
	issuer = strings.TrimSpace(issuer)
	if msg := issuerShape(issuer); msg != "" {
		return UpstreamDiscovery{}, Invalid("issuer", msg)
	}
	u, _ := url.Parse(issuer)
	rfc8414 := u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + strings.TrimSuffix(u.EscapedPath(), "/")
	oidc := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"

	var md authServerMetadata
	from := rfc8414
	p1 := s.fetchJSON(ctx, "metadata", rfc8414, &md)
	if p1 != nil && p1.refused {
		return UpstreamDiscovery{}, &Error{Kind: ErrInvalid, Field: "issuer", Message: p1.msg, Err: p1.err}
	}
	if p1 != nil {
		md = authServerMetadata{}
		from = oidc
		if p2 := s.fetchJSON(ctx, "discovery", oidc, &md); p2 != nil {
			return UpstreamDiscovery{}, &Error{Kind: ErrInvalid, Field: "issuer",
				Message: "no authorization server metadata found: " + p1.msg + "; " + p2.msg, Err: errors.Join(p1.err, p2.err)}
		}
	}
	if md.Issuer != issuer {
		return UpstreamDiscovery{}, Invalid("issuer", fmt.Sprintf("the issuer in the metadata doesn't match (found %s, expected %s)", md.Issuer, issuer))
	}
	if md.AuthorizationEndpoint == "" || md.TokenEndpoint == "" {
		return UpstreamDiscovery{}, Invalid("issuer", "the metadata at "+from+" lacks an authorization or token endpoint")
	}
	d := UpstreamDiscovery{
		Issuer: md.Issuer, MetadataURL: from,
		AuthorizeURL: md.AuthorizationEndpoint, TokenURL: md.TokenEndpoint, RevocationURL: md.RevocationEndpoint,
		ScopesSupported: md.ScopesSupported, CodeChallengeMethods: md.CodeChallengeMethods,
		PKCE: slices.Contains(md.CodeChallengeMethods, "S256"),
	}
	if !d.PKCE {
		d.Warnings = append(d.Warnings, "the authorization server doesn't advertise PKCE with S256")
	}
	if d.RevocationURL == "" {
		d.Warnings = append(d.Warnings, "the authorization server has no revocation endpoint; disconnecting can't revoke its tokens")
	}
	return d, nil
}
