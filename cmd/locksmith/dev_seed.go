package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/tenants"
)

// devUpstreamSlug is Acme Tasks' slug in the demo tenant.
const devUpstreamSlug = "acme-tasks"

// seedRegistrations registers the demo IdP, Acme Tasks and its tools (from
// its OpenAPI document) in the demo tenant. Each step is skipped when it was
// done before, so re-running `make dev` keeps what an admin changed. It
// returns notes for the banner; a failed step is a note, not a crash.
func seedRegistrations(ctx context.Context, svc *tenants.Service, t tenants.Tenant, env map[string]string, demoIdP *idp.IdP, acme *tasks.Server) []string {
	var notes []string
	note := func(format string, a ...any) { notes = append(notes, fmt.Sprintf(format, a...)) }

	if _, err := svc.IdP(ctx, t.ID); errors.Is(err, tenants.ErrNotFound) {
		secret := env["DEV_IDP_LOCKSMITH_SECRET"]
		if _, err := svc.SaveIdP(ctx, t.ID, tenants.IdPInput{
			Issuer:       demoIdP.URL(),
			Preset:       "generic",
			ClientID:     idp.ClientLocksmith,
			ClientSecret: &secret,
		}); err != nil {
			note("could not register the demo IdP: %v", err)
		}
	} else if err != nil {
		note("could not read the IdP registration: %v", err)
	}

	up, err := svc.UpstreamBySlug(ctx, t.ID, devUpstreamSlug)
	if errors.Is(err, tenants.ErrNotFound) {
		secret := env["DEV_TASKS_CLIENT_SECRET"]
		up, err = svc.CreateUpstream(ctx, t.ID, tenants.UpstreamInput{
			Slug:           devUpstreamSlug,
			Name:           "Acme Tasks",
			Kind:           tenants.UpstreamREST,
			BaseURL:        acme.URL(),
			AuthMode:       tenants.AuthOAuth2,
			Issuer:         acme.URL(),
			ClientID:       tasks.DefaultClientID,
			ClientSecret:   &secret,
			ScopesOffered:  tasks.SupportedScopes(),
			PKCE:           true,
			RefreshNarrows: true,
		})
	}
	if err != nil {
		note("could not register Acme Tasks: %v", err)
		return notes
	}

	existing, err := svc.Tools(ctx, t.ID)
	if err != nil {
		note("could not list tools: %v", err)
		return notes
	}
	if len(existing) == 0 {
		preview, _, err := svc.ImportPreview(ctx, t.ID, up.ID, tasks.OpenAPIDocument(acme.URL()))
		if err == nil {
			_, err = svc.ImportTools(ctx, t.ID, up.ID, preview)
		}
		if err != nil {
			note("could not import Acme Tasks' tools: %v", err)
		}
	}
	return notes
}
