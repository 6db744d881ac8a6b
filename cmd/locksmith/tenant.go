package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/locksmithhq/locksmith/tenants"
)

// cmdTenant implements `locksmith tenant create`: it creates a tenant and its
// owner and prints JSON with the tenant id, a fresh admin API key (shown
// once) and a one-time link for the owner to set a password.
func cmdTenant(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return &usageError{"expected `tenant create --slug S --name N --owner-email E`"}
	}
	fs := newFlagSet("tenant create", stderr)
	slug := fs.String("slug", "", "tenant slug: 3-40 lowercase letters, digits and hyphens (required)")
	name := fs.String("name", "", "tenant display name (required)")
	owner := fs.String("owner-email", "", "the owner's email; the account is created if it doesn't exist (required)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	for flagName, v := range map[string]string{"--slug": *slug, "--name": *name, "--owner-email": *owner} {
		if v == "" {
			return &usageError{flagName + " is required"}
		}
	}
	m, ctx, done, err := openForCommand(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer done()

	svc := m.Tenants
	acct, err := svc.EnsureAccount(ctx, *owner)
	if err != nil {
		return publicErr(err)
	}
	t, err := svc.CreateTenant(ctx, acct.ID, *slug, *name)
	if err != nil {
		return publicErr(err)
	}
	key, _, err := svc.CreateAPIKey(ctx, t.ID, acct.ID, "bootstrap", tenants.RoleAdmin)
	if err != nil {
		return err
	}
	out := map[string]any{
		"tenant_id":   t.ID,
		"tenant_slug": t.Slug,
		"owner_email": acct.Email,
		"api_key":     key,
		"mcp_url":     m.Config.BaseURL.String() + "/t/" + t.Slug + "/mcp",
	}
	if !acct.HasPassword {
		tok, err := svc.SetPasswordToken(ctx, acct.ID)
		if err != nil {
			return err
		}
		out["set_password_url"] = svc.SetPasswordURL(tok)
	}
	return printJSON(stdout, out)
}

// openForCommand loads the configuration a one-shot command needs (the
// database, the base URL for the links it prints, the master keys) and
// opens Main with a 30 s deadline; done closes both.
func openForCommand(ctx context.Context, getenv func(string) string, stderr io.Writer) (*Main, context.Context, func(), error) {
	cfg, err := LoadConfig(getenv, need{database: true, baseURL: true, keys: true})
	if err != nil {
		return nil, nil, nil, err
	}
	m := &Main{Config: cfg, Logger: newLogger(stderr, cfg)}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if err := m.Open(ctx); err != nil {
		_ = m.Close(context.Background())
		cancel()
		return nil, nil, nil, err
	}
	return m, ctx, func() { _ = m.Close(context.Background()); cancel() }, nil
}

// printJSON writes v to w as indented JSON (a command's result).
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// publicErr turns a domain error into a usage error (exit 2) with its
// message, so the operator sees what to fix.
func publicErr(err error) error {
	var pe *tenants.Error
	if errors.As(err, &pe) && pe.Field != "" {
		return &usageError{fmt.Sprintf("--%s: %s", flagFor(pe.Field), pe.Message)}
	}
	if errors.As(err, &pe) {
		return &usageError{pe.Message}
	}
	return err
}

func flagFor(field string) string {
	switch field {
	case "email":
		return "owner-email"
	}
	return field
}
