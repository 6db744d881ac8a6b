package egress

import (
	"context"
	"errors"
	"hash/fnv"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzCheckURL: CheckURL never panics, every refusal is an *Error, and
// nothing it accepts points at a private address by any independent reading
// of the host (net.ParseIP, a strconv-based inet_aton, or the addresses the
// fake resolver handed out).
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"https://8.8.8.8/", "https://127.0.0.1/", "https://2130706433/", "https://0177.0.0.1/",
		"https://0x7f.1/", "https://127.1/", "https://[::1]/", "https://[::ffff:127.0.0.1]/",
		"https://[::ffff:7f00:1]/", "https://[64:ff9b::a00:1]/", "https://[2002:a00:1::]/",
		"https://[fc00::1]/", "https://[fe80::1%25eth0]/", "https://169.254.169.254/",
		"https://0.0.0.0/", "https://[::]/", "https://100.64.0.1/", "https://224.0.0.1/",
		"https://255.255.255.255/", "https://0/", "https://0x/", "https://127.0.0.1./",
		"https://a.public.test/", "https://b.mixed.test/", "https://c.example/", "http://8.8.8.8/",
		"https://user@8.8.8.8/", "https://999.1.1.1/", "https://1.2.3.4.5/", "HTTPS://0X08.8.8.8:443/x?y#z",
		"https://[2606:4700::1111]/", "https://[64:ff9b::808:808]/", "https://134744072/", "",
	} {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, raw string) {
		var handedOut []netip.Addr
		res := resolverFunc(func(_ context.Context, _, host string) ([]netip.Addr, error) {
			var out []netip.Addr
			switch {
			case strings.HasSuffix(host, ".public.test"):
				out = []netip.Addr{netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("2606:4700::1111")}
			case strings.HasSuffix(host, ".mixed.test"):
				out = []netip.Addr{netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("::ffff:10.0.0.1")}
			default:
				pool := []string{"127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "fd00::1", "64:ff9b::c0a8:1", "0.0.0.0"}
				h := fnv.New32a()
				_, _ = h.Write([]byte(host))
				out = []netip.Addr{netip.MustParseAddr(pool[h.Sum32()%uint32(len(pool))])}
			}
			handedOut = append(handedOut, out...)
			return out, nil
		})
		strict, err := New(Options{Resolver: res})
		require.NoError(t, err)
		lax, err := New(Options{Resolver: res, AllowPrivate: true})
		require.NoError(t, err)
		ctx := context.Background()

		laxErr := lax.CheckURL(ctx, raw)
		require.False(t, errors.Is(laxErr, ErrForbiddenTarget), "AllowPrivate never refuses an address: %v", laxErr)

		handedOut = nil
		err = strict.CheckURL(ctx, raw)
		if err != nil {
			var e *Error
			require.ErrorAs(t, err, &e)
			require.NotEmpty(t, e.Error())
			return
		}

		u, perr := url.Parse(raw)
		require.NoError(t, perr)
		require.Equal(t, "https", strings.ToLower(u.Scheme))
		require.Nil(t, u.User)
		host := u.Hostname()
		require.NotEmpty(t, host)

		if ip := net.ParseIP(host); ip != nil {
			a, _ := netip.AddrFromSlice(ip)
			require.False(t, refForbidden(a), "accepted %q: host %s", raw, a)
		}
		if a, err := netip.ParseAddr(host); err == nil {
			require.False(t, refForbidden(a), "accepted %q: host %s", raw, a)
		}
		if a, ok := refAton(strings.TrimSuffix(host, ".")); ok {
			require.False(t, refForbidden(a), "accepted %q: host %s", raw, a)
		}
		for _, a := range handedOut {
			require.False(t, refForbidden(a), "accepted %q: resolved to %s", raw, a)
		}
	})
}

// refForbidden is an independent oracle built on net.IP's classifiers. It
// covers less than classify, which is fine: it only has to catch accepted
// addresses that are clearly not public.
func refForbidden(a netip.Addr) bool {
	ip := net.IP(a.AsSlice())
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() || ip.IsLinkLocalUnicast() ||
		ip.IsMulticast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() {
		return true
	}
	if v4 := ip.To4(); v4 != nil {
		return v4[0] == 0 || v4[0] >= 240 || (v4[0] == 100 && v4[1]&0xc0 == 64) ||
			(v4[0] == 169 && v4[1] == 254)
	}
	b := a.As16()
	switch {
	case netip.MustParsePrefix("64:ff9b::/96").Contains(a):
		return refForbidden(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	case netip.MustParsePrefix("2002::/16").Contains(a):
		return refForbidden(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
	case netip.MustParsePrefix("::/96").Contains(a):
		return true // IPv4-compatible, deprecated
	}
	return false
}

// refAton is a second inet_aton, on top of strconv.ParseUint's base
// prefixes, restricted to the forms inet_aton knows.
func refAton(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if s == "" || len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		lp := strings.ToLower(p)
		if strings.ContainsAny(p, "_+-") || strings.HasPrefix(lp, "0b") || strings.HasPrefix(lp, "0o") {
			return netip.Addr{}, false
		}
		if lp == "0x" {
			continue
		}
		v, err := strconv.ParseUint(p, 0, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var out [4]byte
	last := len(vals) - 1
	for i := range last {
		if vals[i] > 255 {
			return netip.Addr{}, false
		}
		out[i] = byte(vals[i])
	}
	rest := vals[last]
	if rest >= 1<<(8*(4-last)) {
		return netip.Addr{}, false
	}
	for i := 3; i >= last; i-- {
		out[i] = byte(rest)
		rest >>= 8
	}
	return netip.AddrFrom4(out), true
}
