package main

import (
	"context"

	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/tenants"
)

// seedRegistrations registers the demo IdP, Acme Tasks and its tools in the
// demo tenant, as far as those features exist. It returns notes for the banner.
func seedRegistrations(ctx context.Context, svc *tenants.Service, t tenants.Tenant, env map[string]string, demoIdP *idp.IdP, acme *tasks.Server) []string {
	return nil
}
