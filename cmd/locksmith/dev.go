package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/inbox"
	"github.com/locksmithhq/locksmith/demo/tasks"
	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

// The dev stack's fixed loopback addresses and demo identities.
const (
	devStateDir   = ".locksmith"
	devIdPAddr    = "127.0.0.1:8764"
	devTasksAddr  = tasks.DevAddr
	devMailAddr   = "127.0.0.1:8766"
	devMailURL    = "smtp+insecure://" + devMailAddr
	devMailFrom   = "Locksmith dev <locksmith@localhost>"
	devAddr       = "127.0.0.1:8080"
	devBaseURL    = "http://localhost:8080"
	devTenantSlug = "acme"
	devTenantName = "Acme"
	devAdminEmail = "admin@acme.example"
)

func cmdDev(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "token" {
		return cmdDevToken(ctx, args[1:], getenv, stdout, stderr)
	}
	fs := newFlagSet("dev", stderr)
	stateDir := fs.String("state", devStateDir, "directory for the dev stack's state (master key, passwords)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	env, err := loadDevState(*stateDir)
	if err != nil {
		return err
	}
	// The dev stack's own defaults; the environment still wins.
	get := func(k string) string {
		if v := getenv(k); v != "" {
			return v
		}
		switch k {
		case "LOCKSMITH_MASTER_KEY":
			return env["LOCKSMITH_MASTER_KEY"]
		case "LOCKSMITH_BASE_URL":
			return devBaseURL
		case "LOCKSMITH_ADDR":
			return devAddr
		case "LOCKSMITH_ALLOW_PRIVATE_TARGETS":
			return "true"
		case "LOCKSMITH_SMTP_URL":
			return devMailURL
		case "LOCKSMITH_MAIL_FROM":
			return devMailFrom
		}
		return ""
	}
	if get("DATABASE_URL") == "" {
		return &ConfigError{"DATABASE_URL", "not set: run `make dev`, which finds or starts PostgreSQL and sets it"}
	}
	cfg, err := LoadConfig(get, need{database: true, baseURL: true, keys: true})
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg)
	say := func(format string, a ...any) { fmt.Fprintf(stderr, "==> "+format+"\n", a...) }

	say("migrating the database")
	migrateCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	_, err = lsql.Migrate(migrateCtx, cfg.DatabaseURL, logger)
	cancel()
	if err != nil {
		return err
	}

	quiet := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	say("starting the demo IdP on http://%s", devIdPAddr)
	demoIdP, err := idp.New(idp.Config{
		Issuer:  "http://" + devIdPAddr,
		Logger:  quiet,
		Clients: idp.DefaultClients(env["DEV_IDP_LOCKSMITH_SECRET"]),
	})
	if err != nil {
		return err
	}
	if err := demoIdP.Start(devIdPAddr); err != nil {
		return portHint(err, devIdPAddr)
	}
	defer demoIdP.Close(context.Background())

	say("starting Acme Tasks (demo upstream) on http://%s", devTasksAddr)
	acme, err := tasks.New(tasks.Config{
		Issuer:              "http://" + devTasksAddr,
		Logger:              quiet,
		DefaultClientSecret: env["DEV_TASKS_CLIENT_SECRET"],
	})
	if err != nil {
		return err
	}
	if err := acme.Start(devTasksAddr); err != nil {
		return portHint(err, devTasksAddr)
	}
	defer acme.Close(context.Background())

	mailNote := "LOCKSMITH_SMTP_URL (from the environment)"
	if get("LOCKSMITH_SMTP_URL") == devMailURL {
		say("starting the mail catcher on smtp://%s (every mail is printed here)", devMailAddr)
		catcher, err := inbox.New(inbox.Config{Logger: quiet, OnMail: func(m inbox.Mail) {
			say("mail to %s: %s", strings.Join(m.To, ", "), mailSummary(m))
		}})
		if err != nil {
			return err
		}
		if err := catcher.Start(devMailAddr); err != nil {
			return portHint(err, devMailAddr)
		}
		defer catcher.Close()
		mailNote = "smtp://" + devMailAddr + " (mails print here as ==> mail to …)"
	}

	m := &Main{Config: cfg, Logger: logger, Serve: true, Work: true}
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = m.Open(openCtx)
	cancel()
	if err != nil {
		_ = m.Close(context.Background())
		return portHint(err, cfg.Addr)
	}
	say("seeding the demo tenant %q", devTenantSlug)
	seed, err := seedDemo(ctx, m.Tenants, env, demoIdP, acme)
	if err != nil {
		_ = m.Close(context.Background())
		return fmt.Errorf("seed demo tenant: %w", err)
	}
	printDevBanner(stdout, cfg.BaseURL.String(), env, seed, demoIdP, acme, mailNote)
	return m.Run(ctx)
}

// devSeed is what the seed created or found.
type devSeed struct {
	Tenant tenants.Tenant
	Notes  []string
}

// seedDemo creates (or finds) the admin account and the demo tenant. It is
// idempotent: re-running `make dev` reuses the same data.
func seedDemo(ctx context.Context, svc *tenants.Service, env map[string]string, demoIdP *idp.IdP, acme *tasks.Server) (devSeed, error) {
	var out devSeed
	acct, err := svc.SignUp(ctx, devAdminEmail, env["DEV_ADMIN_PASSWORD"])
	if errors.Is(err, tenants.ErrConflict) {
		if acct, err = svc.AccountByEmail(ctx, devAdminEmail); err == nil {
			// Keep the printed password true even if the state file was reset.
			if _, err = svc.SignIn(ctx, devAdminEmail, env["DEV_ADMIN_PASSWORD"]); errors.Is(err, tenants.ErrInvalid) {
				var tok string
				if tok, err = svc.SetPasswordToken(ctx, acct.ID); err == nil {
					_, err = svc.SetPasswordWithToken(ctx, tok, env["DEV_ADMIN_PASSWORD"])
				}
			}
		}
	}
	if err != nil {
		return out, fmt.Errorf("admin account: %w", err)
	}
	t, err := svc.TenantBySlug(ctx, devTenantSlug)
	if errors.Is(err, tenants.ErrNotFound) {
		t, err = svc.CreateTenant(ctx, acct.ID, devTenantSlug, devTenantName)
	}
	if err != nil {
		return out, fmt.Errorf("tenant: %w", err)
	}
	out.Tenant = t
	out.Notes = append(out.Notes, seedRegistrations(ctx, svc, t, env, demoIdP, acme)...)
	return out, nil
}

// mailSummary is a caught mail on one line: its subject and the links in it.
func mailSummary(m inbox.Mail) string {
	parts := []string{m.Subject}
	parts = append(parts, mailLink.FindAllString(m.Text, -1)...)
	return strings.Join(parts, " ")
}

var mailLink = regexp.MustCompile(`https?://[^\s<>"]+`)

func printDevBanner(w io.Writer, base string, env map[string]string, seed devSeed, demoIdP *idp.IdP, acme *tasks.Server, mailNote string) {
	mcpURL := base + "/t/" + seed.Tenant.Slug + "/mcp"
	fmt.Fprintf(w, `
Locksmith dev stack is running. Ctrl-C stops everything.

  Console          %s/signin
                   sign in as %s / %s
  MCP endpoint     %s
  Resource meta    %s/.well-known/oauth-protected-resource/t/%s/mcp
  Demo IdP         %s/.well-known/openid-configuration
                   (users: engineer, approver, approver2, finance)
  Acme Tasks       %s/openapi.json  (the demo upstream)
  Mail             %s
                   ("Forgot your password?" on the sign-in page sends a reset link)
  Health           %s/healthz · %s/readyz · %s/metrics

A fresh Token A for a demo user:
  ./bin/locksmith dev token --user engineer

MCP client configuration (the client discovers the demo IdP from the MCP URL):
  Claude Code      claude mcp add --transport http locksmith-acme %s
  Claude Desktop   claude_desktop_config.json:
                   {"mcpServers": {"locksmith-acme": {"command": "npx", "args": ["-y", "mcp-remote", "%s"]}}}
  Cursor           ~/.cursor/mcp.json:
                   {"mcpServers": {"locksmith-acme": {"url": "%s"}}}
  VS Code          .vscode/mcp.json:
                   {"servers": {"locksmith-acme": {"type": "http", "url": "%s"}}}
`, base, devAdminEmail, env["DEV_ADMIN_PASSWORD"], mcpURL, base, seed.Tenant.Slug,
		demoIdP.URL(), acme.URL(), mailNote, base, base, base, mcpURL, mcpURL, mcpURL, mcpURL)
	for _, n := range seed.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	fmt.Fprintln(w)
}

func cmdDevToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev token", stderr)
	user := fs.String("user", "engineer", "demo user: engineer, approver, approver2 or finance")
	resource := fs.String("resource", devBaseURL+"/t/"+devTenantSlug+"/mcp", "the audience (RFC 8707 resource) of the token")
	scopes := fs.String("scopes", "email profile", "space-separated scopes to request")
	issuer := fs.String("issuer", "http://"+devIdPAddr, "the demo IdP's URL")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tok, err := idp.HeadlessLogin{Issuer: *issuer, Username: *user, Resource: *resource, Scopes: strings.Fields(*scopes)}.Run(ctx)
	if err != nil {
		return fmt.Errorf("%w (is `make dev` running?)", err)
	}
	fmt.Fprintln(stdout, tok.AccessToken)
	return nil
}

// loadDevState reads .locksmith/dev.env, creating it (with a fresh master key
// and passwords) on first run, so re-running reuses the same data.
func loadDevState(dir string) (map[string]string, error) {
	path := filepath.Join(dir, "dev.env")
	env := map[string]string{}
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok && !strings.HasPrefix(k, "#") {
				env[k] = v
			}
		}
		f.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	changed := false
	fill := func(k string, gen func() (string, error)) error {
		if env[k] != "" {
			return nil
		}
		v, err := gen()
		if err != nil {
			return err
		}
		env[k], changed = v, true
		return nil
	}
	secret := func() (string, error) {
		b := make([]byte, 18)
		_, err := rand.Read(b)
		return base64.RawURLEncoding.EncodeToString(b), err
	}
	for _, f := range []struct {
		k   string
		gen func() (string, error)
	}{
		{"LOCKSMITH_MASTER_KEY", func() (string, error) { return seal.GenerateMasterKey("dev1") }},
		{"DEV_ADMIN_PASSWORD", secret},
		{"DEV_IDP_LOCKSMITH_SECRET", secret},
		{"DEV_TASKS_CLIENT_SECRET", secret},
	} {
		if err := fill(f.k, f.gen); err != nil {
			return nil, err
		}
	}
	if changed {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(env))
		for k := range env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		b.WriteString("# locksmith dev stack state: secrets for local development only.\n")
		for _, k := range keys {
			b.WriteString(k + "=" + env[k] + "\n")
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
	}
	return env, nil
}

// portHint adds what to do when a fixed dev port is taken.
func portHint(err error, addr string) error {
	var opErr *net.OpError
	if errors.As(err, &opErr) || strings.Contains(err.Error(), "address already in use") {
		return fmt.Errorf("%w: is another `make dev` running? stop it, or free %s", err, addr)
	}
	return err
}
