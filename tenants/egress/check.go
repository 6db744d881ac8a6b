package egress

import (
	"context"
	"net/netip"
	"net/url"
	"strings"
)

// Reasons reported in [Error.Reason] for [ErrForbiddenTarget].
const (
	reasonUnspecified   = "unspecified"
	reasonLoopback      = "loopback"
	reasonPrivate       = "private"
	reasonLinkLocal     = "link-local"
	reasonMetadata      = "the cloud metadata address"
	reasonCGNAT         = "carrier-grade NAT (shared address space)"
	reasonMulticast     = "multicast"
	reasonBroadcast     = "broadcast"
	reasonReserved      = "reserved"
	reasonDocumentation = "reserved for documentation"
	reasonBenchmarking  = "reserved for benchmarking"
)

type rule struct {
	prefix netip.Prefix
	reason string
}

// v4Rules is checked in order; the first match wins. Sources: RFC 6890 and
// the IANA IPv4 Special-Purpose Address Registry. Ranges that are globally
// reachable but special (AS112, AMT) are allowed.
var v4Rules = []rule{
	{netip.MustParsePrefix("0.0.0.0/32"), reasonUnspecified},
	{netip.MustParsePrefix("0.0.0.0/8"), reasonReserved}, // "this network"
	{netip.MustParsePrefix("10.0.0.0/8"), reasonPrivate},
	{netip.MustParsePrefix("100.64.0.0/10"), reasonCGNAT},
	{netip.MustParsePrefix("127.0.0.0/8"), reasonLoopback},
	{netip.MustParsePrefix("169.254.169.254/32"), reasonMetadata},
	{netip.MustParsePrefix("169.254.0.0/16"), reasonLinkLocal},
	{netip.MustParsePrefix("172.16.0.0/12"), reasonPrivate},
	{netip.MustParsePrefix("192.0.0.0/24"), reasonReserved}, // IETF protocol assignments (incl. Oracle metadata 192.0.0.192)
	{netip.MustParsePrefix("192.0.2.0/24"), reasonDocumentation},
	{netip.MustParsePrefix("192.88.99.0/24"), reasonReserved}, // deprecated 6to4 relay anycast
	{netip.MustParsePrefix("192.168.0.0/16"), reasonPrivate},
	{netip.MustParsePrefix("198.18.0.0/15"), reasonBenchmarking},
	{netip.MustParsePrefix("198.51.100.0/24"), reasonDocumentation},
	{netip.MustParsePrefix("203.0.113.0/24"), reasonDocumentation},
	{netip.MustParsePrefix("224.0.0.0/4"), reasonMulticast},
	{netip.MustParsePrefix("255.255.255.255/32"), reasonBroadcast},
	{netip.MustParsePrefix("240.0.0.0/4"), reasonReserved},
}

// v6Rules is checked in order after unmapping, loopback/unspecified and the
// embedded-IPv4 prefixes. Anything outside global unicast (2000::/3) that
// reaches the end of classify is refused as reserved, so this list only
// needs the exceptions inside 2000::/3 plus clearer reasons for the common
// non-global ranges.
var v6Rules = []rule{
	{netip.MustParsePrefix("fe80::/10"), reasonLinkLocal},
	{netip.MustParsePrefix("fc00::/7"), reasonPrivate},  // unique local (ULA), incl. AWS metadata fd00:ec2::254
	{netip.MustParsePrefix("fec0::/10"), reasonPrivate}, // deprecated site-local
	{netip.MustParsePrefix("ff00::/8"), reasonMulticast},
	{netip.MustParsePrefix("64:ff9b:1::/48"), reasonPrivate}, // local-use NAT64 (RFC 8215)
	{netip.MustParsePrefix("2001:db8::/32"), reasonDocumentation},
	{netip.MustParsePrefix("3fff::/20"), reasonDocumentation},
	{netip.MustParsePrefix("2001::/23"), reasonReserved}, // IETF protocol assignments, incl. Teredo 2001::/32
}

var (
	globalUnicast6 = netip.MustParsePrefix("2000::/3")
	nat64          = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour      = netip.MustParsePrefix("2002::/16")
)

// classify reports whether a is a forbidden target and why. It is total:
// every address, including the zero Addr, gets an answer.
func classify(a netip.Addr) (reason string, forbidden bool) {
	if !a.IsValid() {
		return reasonUnspecified, true
	}
	a = a.WithZone("")
	if a.Is4In6() {
		a = a.Unmap()
	}
	if a.Is4() {
		for _, r := range v4Rules {
			if r.prefix.Contains(a) {
				return r.reason, true
			}
		}
		return "", false
	}
	switch {
	case a.IsUnspecified():
		return reasonUnspecified, true
	case a.IsLoopback():
		return reasonLoopback, true
	case nat64.Contains(a):
		b := a.As16()
		return classify(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	case sixToFour.Contains(a):
		b := a.As16()
		if reason, bad := classify(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})); bad {
			return reason, true
		}
	}
	for _, r := range v6Rules {
		if r.prefix.Contains(a) {
			return r.reason, true
		}
	}
	if !globalUnicast6.Contains(a) {
		return reasonReserved, true
	}
	return "", false
}

// CheckAddr reports whether a may be dialled under the default policy
// (private targets not allowed). It returns nil or an [*Error] wrapping
// [ErrForbiddenTarget]. IPv4-mapped IPv6 addresses are unmapped first and
// NAT64/6to4 addresses are judged by the IPv4 address they embed.
func CheckAddr(a netip.Addr) error {
	if reason, bad := classify(a); bad {
		return forbidden("", a, reason)
	}
	return nil
}

// checkAddr applies the client's policy to addr, which host (possibly a
// literal) was resolved to.
func (c *Client) checkAddr(host string, addr netip.Addr) error {
	if c.allowPrivate {
		return nil
	}
	if reason, bad := classify(addr); bad {
		return forbidden(host, addr, reason)
	}
	return nil
}

// CheckURL is the pre-flight check for a tenant-supplied URL, meant for
// forms: it parses raw, requires the https scheme (http too when
// [Options.AllowPrivate] is set), refuses userinfo and empty hosts, reads
// numeric hosts the way inet_aton does (2130706433, 0177.0.0.1, 0x7f.1 and
// 127.1 are all 127.0.0.1), and resolves host names with ctx through
// [Options.Resolver], refusing the URL if any resolved address is
// forbidden. It returns nil or an [*Error] wrapping [ErrInvalidURL],
// [ErrResolve] or [ErrForbiddenTarget].
//
// Passing CheckURL does not make a later request safe by itself: DNS can
// change between check and use. The client's dialer re-checks every
// connection.
func (c *Client) CheckURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return invalidURL("", "the URL could not be parsed")
	}
	if err := c.checkShape(u); err != nil {
		return err
	}
	host := u.Hostname()
	addrs, err := c.lookup(ctx, host)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if err := c.checkAddr(host, a); err != nil {
			return err
		}
	}
	return nil
}

// checkShape validates the parts of u that need no DNS: scheme, userinfo
// and host. It runs for CheckURL, every request and every redirect.
func (c *Client) checkShape(u *url.URL) error {
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if !c.allowPrivate {
			return invalidURL(u.Hostname(), "the URL must use https")
		}
	case "":
		return invalidURL("", "the URL must be absolute and use https")
	default:
		return invalidURL(u.Hostname(), "the URL must use https")
	}
	if u.User != nil {
		return invalidURL(u.Hostname(), "the URL must not contain a user name or password")
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return invalidURL("", "the URL has no host")
	}
	return nil
}

// lookup turns host into addresses: literals (including inet_aton forms)
// directly, names through the resolver. A host that ends in a number but is
// not a valid address is refused rather than sent to DNS, where a system
// resolver might read it differently.
func (c *Client) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if host == "" {
		return nil, invalidURL("", "the URL has no host")
	}
	if a, ok := parseLiteral(host); ok {
		return []netip.Addr{a}, nil
	}
	if endsInNumber(host) {
		return nil, invalidURL(host, "the host looks like an IP address but is not a valid one")
	}
	addrs, err := c.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, resolveError(host, err)
	}
	if len(addrs) == 0 {
		return nil, resolveError(host, nil)
	}
	return addrs, nil
}

// isLiteral reports whether host is an IP address in any accepted notation.
func isLiteral(host string) bool {
	_, ok := parseLiteral(host)
	return ok
}

// parseLiteral parses host as an IP address: standard IPv4/IPv6 text (with
// an optional IPv6 zone), or the legacy inet_aton IPv4 notations, with one
// trailing dot tolerated as browsers do.
func parseLiteral(host string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a, true
	}
	if strings.Contains(host, ":") {
		return netip.Addr{}, false
	}
	return parseInetAton(strings.TrimSuffix(host, "."))
}

// parseInetAton parses s like the C library's inet_aton: one to four parts
// separated by dots, each decimal, octal (leading 0) or hexadecimal
// (leading 0x); the last part fills all remaining bytes. So 2130706433,
// 0177.0.0.1, 0x7f.1 and 127.1 are all 127.0.0.1.
func parseInetAton(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		v, ok := parseAtonPart(p)
		if !ok {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	// Every part but the last is one byte; the last fills the rest.
	last := len(vals) - 1
	for _, v := range vals[:last] {
		if v > 0xff {
			return netip.Addr{}, false
		}
	}
	if vals[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, false
	}
	var n uint64
	for _, v := range vals[:last] {
		n = n<<8 | v
	}
	n = n<<(8*(4-last)) | vals[last]
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// parseAtonPart parses one inet_aton component. It returns false for an
// empty part, a bad digit, or a value above 2^32-1.
func parseAtonPart(p string) (uint64, bool) {
	base := uint64(10)
	switch {
	case len(p) >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X'):
		base, p = 16, p[2:]
		if p == "" {
			return 0, true // "0x" is 0, as in inet_aton and browsers
		}
	case len(p) >= 2 && p[0] == '0':
		base, p = 8, p[1:]
	case p == "":
		return 0, false
	}
	var v uint64
	for i := 0; i < len(p); i++ {
		d, ok := digitValue(p[i])
		if !ok || d >= base {
			return 0, false
		}
		v = v*base + d
		if v > 0xffffffff {
			return 0, false
		}
	}
	return v, true
}

func digitValue(c byte) (uint64, bool) {
	switch {
	case '0' <= c && c <= '9':
		return uint64(c - '0'), true
	case 'a' <= c && c <= 'f':
		return uint64(c-'a') + 10, true
	case 'A' <= c && c <= 'F':
		return uint64(c-'A') + 10, true
	}
	return 0, false
}

// endsInNumber reports whether the last label of host (ignoring one
// trailing dot) is all decimal digits or 0x followed by hex digits — the
// WHATWG URL rule for hosts that must be IPv4 addresses. No real top-level
// domain looks like that.
func endsInNumber(host string) bool {
	host = strings.TrimSuffix(host, ".")
	label := host[strings.LastIndexByte(host, '.')+1:]
	if label == "" {
		return false
	}
	if len(label) >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X') {
		for i := 2; i < len(label); i++ {
			if _, ok := digitValue(label[i]); !ok {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(label); i++ {
		if label[i] < '0' || label[i] > '9' {
			return false
		}
	}
	return true
}
