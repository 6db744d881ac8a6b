// Package tokenb measures Token B end to end: the broker's warm cache, the
// refresh path (lease, upstream refresh, compare-and-swap write) against a
// baseline of a bare refresh request, and grants refreshed at scale by the
// River jobs, all on a real PostgreSQL and a real Acme Tasks over loopback
// HTTP.
//
// It holds the harness only: Env (a migrated database and the services the
// composition root builds: sealer, egress client, tenants service, vault,
// broker), Acme (Acme Tasks, in this process or in a child process so that
// its token store does not count in Locksmith's memory), RefreshLatency and
// Scale. The Go benchmarks live in this package's tests; the load program
// is cmd/tokenload; docs/benchmarks-tokenb.md has the figures and how they
// were taken. Nothing here is imported by the product.
package tokenb
