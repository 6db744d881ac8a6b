// Package tenants is the tenant domain: tenants, members and roles, IdP
// registrations, upstream registrations, tools, policies, approvals, audit
// queries and plan state. It owns the shared error kinds (ErrNotFound,
// ErrConflict, ErrInvalid, ErrForbidden) and the Error type whose message is
// safe to show a user. Every tenant-scoped function takes the tenant id as an
// explicit parameter and runs its queries through sql.DB.InTenant.
package tenants
