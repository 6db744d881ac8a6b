package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/jobs"
	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/approvals"
	"github.com/locksmithhq/locksmith/tenants/audit"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/mail"
	"github.com/locksmithhq/locksmith/tenants/policy"
	"github.com/locksmithhq/locksmith/tenants/seal"
	"github.com/locksmithhq/locksmith/tenants/tokena"
	"github.com/locksmithhq/locksmith/web"
)

// testHooks lets in-package tests extend the server (e.g. a slow route for
// the graceful-shutdown test). Production passes nil.
type testHooks struct {
	routes func(*web.Server)
	ready  func(addr string)
}

// Main is the composition root: it opens the database, builds the domain
// services, the web server and the River client, and runs them until its
// context ends. End-to-end tests start it on port 0.
type Main struct {
	Config Config
	Logger *slog.Logger
	// Serve runs the HTTP server; Work runs River workers.
	Serve, Work bool

	hooks *testHooks

	DB       *lsql.DB
	Sealer   *seal.Sealer
	Egress   *egress.Client
	Tenants  *tenants.Service
	Vault    *consent.Vault
	Broker   *consent.Broker
	Policy   *policy.Engine
	Audit    *audit.Writer
	AuditLog *audit.Store
	Approval *approvals.Service
	// ApprovalWebhook sends the console's approval webhook test events;
	// the River worker builds its own Notifier over the same egress client.
	ApprovalWebhook *approvals.Notifier
	River           *river.Client[pgx.Tx]
	inserter        *river.Client[pgx.Tx]
	cancelBg        context.CancelFunc
	Server          *web.Server
	http            *http.Server
	listener        net.Listener

	// Mailer sends password-reset email; nil when LOCKSMITH_SMTP_URL is unset.
	Mailer *mail.Mailer

	closeOnce sync.Once
}

// Open connects to the database, checks the schema and builds every service.
func (m *Main) Open(ctx context.Context) error {
	dbURL, assume := m.Config.DatabaseURL, true
	if m.Config.AppDatabaseURL != "" {
		dbURL, assume = m.Config.AppDatabaseURL, false
	}
	db, err := lsql.Open(ctx, lsql.Options{URL: dbURL, AssumeRole: assume})
	if err != nil {
		return err
	}
	m.DB = db
	if err := lsql.CheckSchema(ctx, db.Pool()); err != nil {
		return err
	}
	if m.Sealer, err = seal.New(db, m.Config.MasterKeys); err != nil {
		return err
	}
	if m.Egress, err = egress.New(egress.Options{AllowPrivate: m.Config.AllowPrivate}); err != nil {
		return err
	}
	baseURL := ""
	if m.Config.BaseURL != nil {
		baseURL = m.Config.BaseURL.String()
	} else {
		baseURL = "http://localhost"
	}
	// Jobs enqueued inside domain transactions (password-reset email,
	// refresh after consent, revoke after disconnect, approval webhooks) go
	// through an insert-only client: the working client needs the domain
	// services first.
	if m.inserter, err = jobs.NewInserter(m.DB, m.Logger); err != nil {
		return err
	}
	tc := tenants.Config{DB: db, Sealer: m.Sealer, Egress: m.Egress, Logger: m.Logger, BaseURL: baseURL}
	if m.Config.SMTP != nil {
		hello := ""
		if m.Config.BaseURL != nil {
			hello = m.Config.BaseURL.Hostname()
		}
		if m.Mailer, err = mail.New(mail.Config{Server: *m.Config.SMTP, From: m.Config.MailFrom, HelloName: hello}); err != nil {
			return err
		}
		tc.PasswordResets = m.inserter
	}
	if m.Tenants, err = tenants.New(tc); err != nil {
		return err
	}
	if err := m.openDomain(ctx, baseURL); err != nil {
		return err
	}
	if m.Serve {
		// One Token A verifier (JWKS and verified-token caches) for the MCP
		// endpoint and the console's "test a token" box.
		verifier, err := tokena.New(tokena.Config{HTTP: m.Egress.HTTPClient(), Logger: m.Logger})
		if err != nil {
			return err
		}
		mcpHandler, err := m.openMCP(verifier)
		if err != nil {
			return err
		}
		if m.Server, err = web.New(web.Config{
			MCP:      mcpHandler,
			Verifier: verifier,
			Logger:   m.Logger,
			BaseURL:  m.Config.BaseURL,
			Ready:    readiness{db},
			Tenants:  m.Tenants,
			// End-user sign-in, consent, My connections and /oauth/callback.
			Consent: m.Broker,
			// The Policies, Approvals and Audit pages and their API routes.
			Policy: m.Policy, Approvals: m.Approval, AuditLog: m.AuditLog,
			// "Send a test event" on the approval settings page.
			ApprovalWebhook: m.ApprovalWebhook,
			// Set behind a trusted proxy so sign-in rate limits are per client.
			ClientIPHeader: m.Config.ClientIPHeader,
			Registry:       metricsRegistry(m.Broker, mcpHandler, m.Audit, m.DB),
		}); err != nil {
			return err
		}
		if m.hooks != nil && m.hooks.routes != nil {
			m.hooks.routes(m.Server)
		}
		m.http = m.Server.HTTPServer(m.Config.Addr)
		if m.listener == nil { // tests may hand in a listener on port 0
			if m.listener, err = net.Listen("tcp", m.Config.Addr); err != nil {
				return fmt.Errorf("listen on %s (LOCKSMITH_ADDR): %w", m.Config.Addr, err)
			}
		}
	}
	return nil
}

// Addr is the address the HTTP server listens on (useful with port 0).
func (m *Main) Addr() string {
	if m.listener == nil {
		return ""
	}
	return m.listener.Addr().String()
}

// Run serves until ctx ends, then shuts down gracefully: in-flight requests
// finish (up to 25 s), River stops fetching and lets running jobs finish.
func (m *Main) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	if m.Work {
		if err := m.River.Start(ctx); err != nil {
			return fmt.Errorf("start workers: %w", err)
		}
	}
	if m.Serve {
		go func() {
			if err := m.http.Serve(m.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		m.Logger.Info("serving", "addr", m.Addr(), "base_url", m.Config.BaseURL.String())
		if m.hooks != nil && m.hooks.ready != nil {
			m.hooks.ready(m.Addr())
		}
	}
	var runErr error
	select {
	case <-ctx.Done():
		m.Logger.Info("shutting down")
	case runErr = <-errc:
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 25*time.Second)
	defer cancel()
	if err := m.Close(shutdownCtx); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// Close stops the HTTP server (waiting for in-flight requests), River and
// the pool. It is safe to call more than once.
func (m *Main) Close(ctx context.Context) error {
	var errs []error
	m.closeOnce.Do(func() {
		if m.http != nil {
			if err := m.http.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("http shutdown: %w", err))
			}
		}
		if m.River != nil && m.Work {
			if err := m.River.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop workers: %w", err))
			}
		}
		if m.cancelBg != nil {
			m.cancelBg()
		}
		if m.Broker != nil {
			m.Broker.Close()
		}
		if m.Audit != nil {
			if err := m.Audit.Close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("flush audit: %w", err))
			}
		}
		if m.DB != nil {
			m.DB.Close()
		}
	})
	return errors.Join(errs...)
}

// readiness backs /readyz: the database answers and the schema is current.
type readiness struct{ db *lsql.DB }

func (r readiness) Ready(ctx context.Context) error {
	if err := r.db.Ping(ctx); err != nil {
		return err
	}
	return lsql.CheckSchema(ctx, r.db.Pool())
}

func cmdServe(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, hooks *testHooks, workerOnly bool) error {
	name := "serve"
	if workerOnly {
		name = "worker"
	}
	fs := newFlagSet(name, stderr)
	noWorker := false
	if !workerOnly {
		fs.BoolVar(&noWorker, "no-worker", false, "serve HTTP only; run workers in a separate `locksmith worker` process")
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// A worker needs the base URL too: the links it sends (approval
	// webhooks, password-reset email) are built from it.
	cfg, err := LoadConfig(getenv, need{database: true, baseURL: true, keys: true})
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg)
	logger.Info("starting", "command", name, "version", Version, "config", cfg.String())
	m := &Main{Config: cfg, Logger: logger, Serve: !workerOnly, Work: !noWorker, hooks: hooks}
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := m.Open(openCtx); err != nil {
		_ = m.Close(context.Background())
		return err
	}
	return m.Run(ctx)
}
