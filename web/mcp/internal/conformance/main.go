// Command conformance is the harness scripts/conformance.sh runs: it starts
// Locksmith's MCP endpoint for one tenant whose IdP is the demo IdP and
// whose only upstream is an MCP server (the Go SDK's conformance
// everything-server), mints a Token A for that tenant, writes URL= and
// TOKEN= lines to -env, and serves until it is signalled.
//
// It is a test harness, not a way to run Locksmith: it generates a
// throw-away master key and relays the upstream's tools unprefixed
// (Config.UnprefixedSingleUpstream) so the suite's fixed tool names work.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/locksmithhq/locksmith/demo/idp"
	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/seal"
	"github.com/locksmithhq/locksmith/tenants/tokena"
	webmcp "github.com/locksmithhq/locksmith/web/mcp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to serve Locksmith on")
	upstream := flag.String("upstream", "", "URL of the upstream MCP server (required)")
	envFile := flag.String("env", "", "file to write URL= and TOKEN= to (required)")
	flag.Parse()
	if err := run(*addr, *upstream, *envFile); err != nil {
		fmt.Fprintln(os.Stderr, "conformance harness:", err)
		os.Exit(1)
	}
}

func run(addr, upstream, envFile string) error {
	if upstream == "" || envFile == "" {
		return errors.New("-upstream and -env are required")
	}
	dbURL := os.Getenv("DATABASE_URL")
	if dbURL == "" {
		return errors.New("DATABASE_URL is not set")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	if _, err := lsql.Migrate(ctx, dbURL, logger); err != nil {
		return err
	}
	db, err := lsql.Open(ctx, lsql.Options{URL: dbURL, AssumeRole: true})
	if err != nil {
		return err
	}
	defer db.Close()
	key, err := seal.GenerateMasterKey("conf")
	if err != nil {
		return err
	}
	mk, err := seal.ParseMasterKeys(key)
	if err != nil {
		return err
	}
	sealer, err := seal.New(db, mk)
	if err != nil {
		return err
	}
	eg, err := egress.New(egress.Options{AllowPrivate: true, Timeout: 30 * time.Second})
	if err != nil {
		return err
	}

	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	base := "http://" + l.Addr().String()
	baseURL, _ := url.Parse(base)
	svc, err := tenants.New(tenants.Config{DB: db, Sealer: sealer, Egress: eg, Logger: logger, BaseURL: base})
	if err != nil {
		return err
	}

	demo, err := idp.New(idp.Config{Logger: logger})
	if err != nil {
		return err
	}
	if err := demo.Start("127.0.0.1:0"); err != nil {
		return err
	}
	defer demo.Close(context.Background())

	id := uuid.New()
	slug := "conf-" + strings.ReplaceAll(id.String(), "-", "")[:10]
	if err := db.InTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, 'Conformance')", id, slug)
		return err
	}); err != nil {
		return err
	}
	if _, err := svc.SaveIdP(ctx, id, tenants.IdPInput{Issuer: demo.URL(), RequiredScopes: []string{"mcp:tools"}}); err != nil {
		return err
	}
	if _, err := svc.CreateUpstream(ctx, id, tenants.UpstreamInput{Slug: "everything", Name: "Everything server", Kind: tenants.UpstreamMCP, BaseURL: upstream, AuthMode: tenants.AuthNone}); err != nil {
		return err
	}
	resource := base + "/t/" + slug + "/mcp"
	token, err := demo.MintAccessToken(idp.MintRequest{User: idp.UsernameEngineer, Audience: []string{resource}, Scopes: []string{"mcp:tools"}, Lifetime: 4 * time.Hour})
	if err != nil {
		return err
	}

	verifier, err := tokena.New(tokena.Config{HTTP: eg.HTTPClient(), Logger: logger})
	if err != nil {
		return err
	}
	h, err := webmcp.New(webmcp.Config{BaseURL: baseURL, Logger: logger, Registry: webmcp.TenantsRegistry{Service: svc}, Verifier: verifier,
		HTTPClient: eg.HTTPClient(), Sealer: sealer, UnprefixedSingleUpstream: true})
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	if err := os.WriteFile(envFile, []byte("URL="+resource+"\nTOKEN="+token+"\n"), 0o600); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
