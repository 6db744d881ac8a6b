// Package sql owns Locksmith's PostgreSQL schema and the few primitives every
// store builds on: the embedded, numbered migrations and their runner, the
// application connection pool (which runs as the unprivileged role
// locksmith_app), the one helper that runs work inside a transaction scoped to
// a tenant, and the translation of driver errors into sentinel errors.
//
// Row-level security is the second wall behind the application's own scoping:
// every tenant-owned table has a tenant_id column, ROW LEVEL SECURITY enabled
// and FORCED, and a policy comparing tenant_id with
//
//	NULLIF(current_setting('app.tenant_id', true), '')::uuid
//
// The setting is only ever written transaction-scoped (set_config(..., true)),
// by InTenant, so it can never leak to the next borrower of a pooled
// connection. A query that forgets the tenant sees nothing.
package sql
