package egress

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// testHosts is the fake DNS used by the CheckURL tests.
var testHosts = map[string][]string{
	"idp.example.com":      {"8.8.8.8", "2606:4700:4700::1111"},
	"internal.example.com": {"10.0.0.5"},
	"localhost":            {"127.0.0.1", "::1"},
	"mixed.example.com":    {"8.8.8.8", "127.0.0.1"}, // one bad address is enough
	"metadata.example.com": {"169.254.169.254"},
	"mapped.example.com":   {"::ffff:10.1.2.3"},
	"ula.example.com":      {"fd00:ec2::254"},
}

func TestCheckURL(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		url     string
		wantErr error  // with the default policy; nil means allowed
		addr    string // the refused address reported, for ErrForbiddenTarget
		// shapeOnly marks errors that AllowPrivate does not lift.
		shapeOnly bool
	}{
		// Allowed.
		{name: "public ipv4", url: "https://8.8.8.8/"},
		{name: "public ipv4 with port and path", url: "https://1.1.1.1:8443/.well-known/openid-configuration"},
		{name: "public ipv6", url: "https://[2606:4700:4700::1111]/"},
		{name: "public name", url: "https://idp.example.com/realms/x"},
		{name: "public decimal", url: "https://134744072/"}, // 8.8.8.8
		{name: "public hex dotted", url: "https://0x8.0x8.0x8.0x8/"},
		{name: "public octal", url: "https://010.010.010.010/"},
		{name: "public trailing dot", url: "https://8.8.8.8./"},
		{name: "nat64 of public", url: "https://[64:ff9b::808:808]/"},
		{name: "6to4 of public", url: "https://[2002:808:808::1]/"},
		{name: "as112 v4", url: "https://192.31.196.1/"},
		{name: "upper-case scheme", url: "HTTPS://8.8.8.8/"},

		// Loopback in every spelling.
		{name: "loopback", url: "https://127.0.0.1/", wantErr: ErrForbiddenTarget, addr: "127.0.0.1"},
		{name: "loopback other", url: "https://127.255.0.9:8080/", wantErr: ErrForbiddenTarget, addr: "127.255.0.9"},
		{name: "loopback decimal", url: "https://2130706433/", wantErr: ErrForbiddenTarget, addr: "127.0.0.1"},
		{name: "loopback octal", url: "https://0177.0.0.1/", wantErr: ErrForbiddenTarget, addr: "127.0.0.1"},
		{name: "loopback octal whole", url: "https://017700000001/", wantErr: ErrForbiddenTarget, addr: "127.0.0.1"},
		{name: "loopback hex short", url: "https://0x7f.1/", wantErr: ErrForbiddenTarget, addr: "127.0.0.1"},
		{name: "loopback hex whole", url: "https://0x7F000001/", wantErr: ErrForbiddenTarget, addr: "127.0.0.1"},
		{name: "loopback short", url: "https://127.1/", wantErr: ErrForbiddenTarget, addr: "127.0.0.1"},
		{name: "loopback three parts", url: "https://127.0.1/", wantErr: ErrForbiddenTarget, addr: "127.0.0.1"},
		{name: "loopback trailing dot", url: "https://127.0.0.1./", wantErr: ErrForbiddenTarget, addr: "127.0.0.1"},
		{name: "loopback percent-encoded", url: "https://%31%32%37.0.0.1/", wantErr: ErrInvalidURL, shapeOnly: true}, // net/url refuses it
		{name: "loopback ipv6", url: "https://[::1]/", wantErr: ErrForbiddenTarget, addr: "::1"},
		{name: "loopback ipv6 long", url: "https://[0:0:0:0:0:0:0:1]/", wantErr: ErrForbiddenTarget, addr: "::1"},
		{name: "mapped loopback", url: "https://[::ffff:127.0.0.1]/", wantErr: ErrForbiddenTarget, addr: "::ffff:127.0.0.1"},
		{name: "mapped loopback hex", url: "https://[::ffff:7f00:1]/", wantErr: ErrForbiddenTarget, addr: "::ffff:127.0.0.1"},
		{name: "ipv4-compatible loopback", url: "https://[::127.0.0.1]/", wantErr: ErrForbiddenTarget, addr: "::7f00:1"},

		// Unspecified and "this network".
		{name: "zero", url: "https://0.0.0.0/", wantErr: ErrForbiddenTarget, addr: "0.0.0.0"},
		{name: "zero short", url: "https://0/", wantErr: ErrForbiddenTarget, addr: "0.0.0.0"},
		{name: "zero hex", url: "https://0x0/", wantErr: ErrForbiddenTarget, addr: "0.0.0.0"},
		{name: "this network", url: "https://0.1.2.3/", wantErr: ErrForbiddenTarget, addr: "0.1.2.3"},
		{name: "ipv6 unspecified", url: "https://[::]/", wantErr: ErrForbiddenTarget, addr: "::"},

		// Private.
		{name: "rfc1918 10", url: "https://10.0.0.1/", wantErr: ErrForbiddenTarget, addr: "10.0.0.1"},
		{name: "rfc1918 172", url: "https://172.16.5.4/", wantErr: ErrForbiddenTarget, addr: "172.16.5.4"},
		{name: "rfc1918 172 top", url: "https://172.31.255.255/", wantErr: ErrForbiddenTarget, addr: "172.31.255.255"},
		{name: "rfc1918 192", url: "https://192.168.1.1/", wantErr: ErrForbiddenTarget, addr: "192.168.1.1"},
		{name: "rfc1918 decimal", url: "https://167772161/", wantErr: ErrForbiddenTarget, addr: "10.0.0.1"},
		{name: "rfc1918 two parts", url: "https://10.1/", wantErr: ErrForbiddenTarget, addr: "10.0.0.1"},
		{name: "ula fc", url: "https://[fc00::1]/", wantErr: ErrForbiddenTarget, addr: "fc00::1"},
		{name: "ula fd", url: "https://[fd12:3456::1]/", wantErr: ErrForbiddenTarget, addr: "fd12:3456::1"},
		{name: "site-local", url: "https://[fec0::1]/", wantErr: ErrForbiddenTarget, addr: "fec0::1"},
		{name: "mapped private", url: "https://[::ffff:192.168.0.1]/", wantErr: ErrForbiddenTarget, addr: "::ffff:192.168.0.1"},
		{name: "nat64 private", url: "https://[64:ff9b::a00:1]/", wantErr: ErrForbiddenTarget, addr: "64:ff9b::a00:1"},
		{name: "nat64 loopback", url: "https://[64:ff9b::127.0.0.1]/", wantErr: ErrForbiddenTarget, addr: "64:ff9b::7f00:1"},
		{name: "nat64 local-use", url: "https://[64:ff9b:1::808:808]/", wantErr: ErrForbiddenTarget, addr: "64:ff9b:1::808:808"},
		{name: "6to4 private", url: "https://[2002:c0a8:101::1]/", wantErr: ErrForbiddenTarget, addr: "2002:c0a8:101::1"},
		{name: "6to4 loopback", url: "https://[2002:7f00:1::]/", wantErr: ErrForbiddenTarget, addr: "2002:7f00:1::"},
		{name: "teredo", url: "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", wantErr: ErrForbiddenTarget, addr: "2001:0:4136:e378:8000:63bf:3fff:fdd2"},

		// Link-local and metadata.
		{name: "metadata", url: "https://169.254.169.254/latest/meta-data/", wantErr: ErrForbiddenTarget, addr: "169.254.169.254"},
		{name: "metadata decimal", url: "https://2852039166/", wantErr: ErrForbiddenTarget, addr: "169.254.169.254"},
		{name: "metadata hex", url: "https://0xa9.0xfe.0xa9.0xfe/", wantErr: ErrForbiddenTarget, addr: "169.254.169.254"},
		{name: "metadata mapped", url: "https://[::ffff:169.254.169.254]/", wantErr: ErrForbiddenTarget, addr: "::ffff:169.254.169.254"},
		{name: "link-local v4", url: "https://169.254.1.1/", wantErr: ErrForbiddenTarget, addr: "169.254.1.1"},
		{name: "link-local v6", url: "https://[fe80::1]/", wantErr: ErrForbiddenTarget, addr: "fe80::1"},
		{name: "link-local v6 zone", url: "https://[fe80::1%25eth0]/", wantErr: ErrForbiddenTarget, addr: "fe80::1%eth0"},
		{name: "oracle metadata", url: "https://192.0.0.192/", wantErr: ErrForbiddenTarget, addr: "192.0.0.192"},

		// CGNAT, multicast, broadcast, reserved, documentation.
		{name: "cgnat", url: "https://100.64.0.1/", wantErr: ErrForbiddenTarget, addr: "100.64.0.1"},
		{name: "cgnat alibaba metadata", url: "https://100.100.100.200/", wantErr: ErrForbiddenTarget, addr: "100.100.100.200"},
		{name: "multicast v4", url: "https://224.0.0.1/", wantErr: ErrForbiddenTarget, addr: "224.0.0.1"},
		{name: "multicast v6", url: "https://[ff02::1]/", wantErr: ErrForbiddenTarget, addr: "ff02::1"},
		{name: "broadcast", url: "https://255.255.255.255/", wantErr: ErrForbiddenTarget, addr: "255.255.255.255"},
		{name: "broadcast decimal", url: "https://4294967295/", wantErr: ErrForbiddenTarget, addr: "255.255.255.255"},
		{name: "class e", url: "https://240.0.0.1/", wantErr: ErrForbiddenTarget, addr: "240.0.0.1"},
		{name: "test-net-1", url: "https://192.0.2.10/", wantErr: ErrForbiddenTarget, addr: "192.0.2.10"},
		{name: "test-net-3", url: "https://203.0.113.7/", wantErr: ErrForbiddenTarget, addr: "203.0.113.7"},
		{name: "benchmarking", url: "https://198.18.0.1/", wantErr: ErrForbiddenTarget, addr: "198.18.0.1"},
		{name: "documentation v6", url: "https://[2001:db8::1]/", wantErr: ErrForbiddenTarget, addr: "2001:db8::1"},
		{name: "discard v6", url: "https://[100::1]/", wantErr: ErrForbiddenTarget, addr: "100::1"},

		// Names that resolve to forbidden addresses.
		{name: "name to private", url: "https://internal.example.com/", wantErr: ErrForbiddenTarget, addr: "10.0.0.5"},
		{name: "localhost", url: "https://localhost:8080/", wantErr: ErrForbiddenTarget, addr: "127.0.0.1"},
		{name: "one of several private", url: "https://mixed.example.com/", wantErr: ErrForbiddenTarget, addr: "127.0.0.1"},
		{name: "name to metadata", url: "https://metadata.example.com/", wantErr: ErrForbiddenTarget, addr: "169.254.169.254"},
		{name: "name to mapped private", url: "https://mapped.example.com/", wantErr: ErrForbiddenTarget, addr: "::ffff:10.1.2.3"},
		{name: "name to ula", url: "https://ula.example.com/", wantErr: ErrForbiddenTarget, addr: "fd00:ec2::254"},
		{name: "unknown name", url: "https://nope.example.com/", wantErr: ErrResolve, shapeOnly: true},

		// Shape.
		{name: "http public", url: "http://8.8.8.8/", wantErr: ErrInvalidURL},
		{name: "http private", url: "http://127.0.0.1/", wantErr: ErrInvalidURL},
		{name: "ftp", url: "ftp://8.8.8.8/", wantErr: ErrInvalidURL, shapeOnly: true},
		{name: "file", url: "file:///etc/passwd", wantErr: ErrInvalidURL, shapeOnly: true},
		{name: "relative", url: "/just/a/path", wantErr: ErrInvalidURL, shapeOnly: true},
		{name: "userinfo", url: "https://user:pw@8.8.8.8/", wantErr: ErrInvalidURL, shapeOnly: true},
		{name: "userinfo name only", url: "https://admin@idp.example.com/", wantErr: ErrInvalidURL, shapeOnly: true},
		{name: "no host", url: "https:///path", wantErr: ErrInvalidURL, shapeOnly: true},
		{name: "opaque", url: "https:8.8.8.8", wantErr: ErrInvalidURL, shapeOnly: true},
		{name: "unparsable", url: "https://[::1/", wantErr: ErrInvalidURL, shapeOnly: true},
		{name: "bad numeric host", url: "https://999.0.0.1/", wantErr: ErrInvalidURL, shapeOnly: true},
		{name: "bad octal host", url: "https://08.0.0.1/", wantErr: ErrInvalidURL, shapeOnly: true},
		{name: "too many parts", url: "https://1.2.3.4.5/", wantErr: ErrInvalidURL, shapeOnly: true},
		{name: "hex overflow", url: "https://0x100000000/", wantErr: ErrInvalidURL, shapeOnly: true},
	}

	strict, err := New(Options{Resolver: mapResolver(testHosts)})
	require.NoError(t, err)
	lax, err := New(Options{Resolver: mapResolver(testHosts), AllowPrivate: true})
	require.NoError(t, err)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()

			err := strict.CheckURL(ctx, tt.url)
			if tt.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tt.wantErr)
				var e *Error
				require.ErrorAs(t, err, &e)
				require.NotEmpty(t, e.Error())
				if tt.addr != "" {
					require.Equal(t, tt.addr, e.Addr.String())
					require.Contains(t, e.Error(), "not allowed")
				}
			}

			err = lax.CheckURL(ctx, tt.url)
			if tt.shapeOnly {
				require.ErrorIs(t, err, tt.wantErr)
			} else {
				require.NoError(t, err, "AllowPrivate allows every address")
			}
		})
	}
}

func TestErrorMessages(t *testing.T) {
	t.Parallel()

	c, err := New(Options{Resolver: mapResolver(testHosts)})
	require.NoError(t, err)
	ctx := context.Background()

	tests := []struct {
		url  string
		want string
	}{
		{"https://127.0.0.1/", "that address is loopback and not allowed (127.0.0.1)"},
		{"https://0x7f.1/", "that address is loopback and not allowed (0x7f.1 is 127.0.0.1)"},
		{"https://10.0.0.1/", "that address is private and not allowed (10.0.0.1)"},
		{"https://internal.example.com/", "that address is private and not allowed (internal.example.com resolves to 10.0.0.5)"},
		{"https://169.254.169.254/", "that address is the cloud metadata address and not allowed (169.254.169.254)"},
		{"http://8.8.8.8/", "the URL must use https"},
		{"https://u:secret@8.8.8.8/", "the URL must not contain a user name or password"},
		{"https://nope.example.com/", `the host name "nope.example.com" could not be resolved`},
	}
	for _, tt := range tests {
		err := c.CheckURL(ctx, tt.url)
		require.EqualError(t, err, tt.want, tt.url)
		require.NotContains(t, err.Error(), "secret")
	}

	var e *Error
	require.ErrorAs(t, c.CheckURL(ctx, "https://nope.example.com/"), &e)
	var dnsErr interface{ Timeout() bool }
	require.ErrorAs(t, e, &dnsErr, "the DNS cause is kept for logs")
}

func TestCheckAddr(t *testing.T) {
	t.Parallel()

	tests := []struct {
		addr       string
		wantReason string // empty means allowed
	}{
		{"8.8.8.8", ""},
		{"2606:4700:4700::1111", ""},
		{"::ffff:8.8.8.8", ""},
		{"64:ff9b::8.8.8.8", ""},
		{"127.0.0.1", reasonLoopback},
		{"::ffff:127.0.0.1", reasonLoopback},
		{"::1", reasonLoopback},
		{"0.0.0.0", reasonUnspecified},
		{"::", reasonUnspecified},
		{"::ffff:0.0.0.0", reasonUnspecified},
		{"10.255.255.255", reasonPrivate},
		{"172.15.255.255", ""},
		{"172.32.0.0", ""},
		{"fc00::", reasonPrivate},
		{"64:ff9b::192.168.1.1", reasonPrivate},
		{"2002:a9fe:a9fe::", reasonMetadata},
		{"169.254.169.254", reasonMetadata},
		{"fe80::abcd%eth0", reasonLinkLocal},
		{"100.127.255.255", reasonCGNAT},
		{"100.128.0.0", ""},
		{"239.255.255.250", reasonMulticast},
		{"ff05::1:3", reasonMulticast},
		{"255.255.255.255", reasonBroadcast},
		{"192.0.2.1", reasonDocumentation},
		{"3fff::1", reasonDocumentation},
		{"198.19.255.255", reasonBenchmarking},
		{"::7f00:1", reasonReserved},
		{"5f00::1", reasonReserved},
	}
	for _, tt := range tests {
		err := CheckAddr(netip.MustParseAddr(tt.addr))
		if tt.wantReason == "" {
			require.NoError(t, err, tt.addr)
			continue
		}
		var e *Error
		require.ErrorAs(t, err, &e, tt.addr)
		require.True(t, errors.Is(err, ErrForbiddenTarget))
		require.Equal(t, tt.wantReason, e.Reason, tt.addr)
	}
	require.ErrorIs(t, CheckAddr(netip.Addr{}), ErrForbiddenTarget, "the zero Addr is refused")
}

func TestParseInetAton(t *testing.T) {
	t.Parallel()

	tests := []struct {
		in   string
		want string // empty means not an address
	}{
		{"1.2.3.4", "1.2.3.4"},
		{"2130706433", "127.0.0.1"},
		{"0177.0.0.1", "127.0.0.1"},
		{"0x7f.1", "127.0.0.1"},
		{"0X7F.0.0.1", "127.0.0.1"},
		{"127.1", "127.0.0.1"},
		{"127.0.1", "127.0.0.1"},
		{"1.0x10203", "1.1.2.3"},
		{"1.2.0x0304", "1.2.3.4"},
		{"0x", "0.0.0.0"},
		{"0", "0.0.0.0"},
		{"00", "0.0.0.0"},
		{"4294967295", "255.255.255.255"},
		{"037777777777", "255.255.255.255"},
		{"0xffffffff", "255.255.255.255"},
		{"4294967296", ""},
		{"0x100000000", ""},
		{"256.0.0.1", ""},
		{"1.256.0.1", ""},
		{"1.2.65536", ""},
		{"1.16777216", ""},
		{"08", ""},
		{"0x1g", ""},
		{"1..2", ""},
		{".1", ""},
		{"", ""},
		{"1.2.3.4.5", ""},
		{"+1", ""},
		{"1_0", ""},
		{"a.b.c.d", ""},
		{"99999999999999999999999", ""},
	}
	for _, tt := range tests {
		got, ok := parseInetAton(tt.in)
		if tt.want == "" {
			require.False(t, ok, "%q parsed as %v", tt.in, got)
			continue
		}
		require.True(t, ok, tt.in)
		require.Equal(t, tt.want, got.String(), tt.in)
	}
}
