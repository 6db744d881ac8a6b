package egress

import (
	"context"
	"net"
	"net/netip"
	"sync"
)

// resolverFunc adapts a function to Resolver.
type resolverFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

func (f resolverFunc) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f(ctx, network, host)
}

// mapResolver resolves from a fixed table; unknown names are NXDOMAIN. It
// never touches the network.
func mapResolver(table map[string][]string) Resolver {
	return resolverFunc(func(_ context.Context, _, host string) ([]netip.Addr, error) {
		raw, ok := table[host]
		if !ok {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		addrs := make([]netip.Addr, len(raw))
		for i, s := range raw {
			addrs[i] = netip.MustParseAddr(s)
		}
		return addrs, nil
	})
}

// loopbackDialer is the test seam for "public-looking" hosts: it dials
// 127.0.0.1 on the port of whatever already-checked address it is given,
// and records those addresses so tests can prove a refused address never
// reached the network.
type loopbackDialer struct {
	mu     sync.Mutex
	dialed []string
}

func (d *loopbackDialer) dial(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.dialed = append(d.dialed, address)
	d.mu.Unlock()
	_, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
}

func (d *loopbackDialer) addresses() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.dialed...)
}
