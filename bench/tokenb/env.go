package tokenb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/jobs"
	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

// Issuer is the IdP issuer of the benchmark's end users.
const Issuer = "https://idp.bench.test"

// Config configures Open.
type Config struct {
	// OwnerURL is the connection string of a migrated database, as its
	// owner (the app pool assumes the app role). Required.
	OwnerURL string
	// MaxConns caps the app pool; 0 keeps pgxpool's default (max(4, CPUs)),
	// which is what `locksmith serve` uses.
	MaxConns int32
	// AcmeURL is the base URL of Acme Tasks (token endpoint AcmeURL+"/token").
	// Required.
	AcmeURL string
	// Logger receives the services' logs; nil discards them.
	Logger *slog.Logger
}

// Env is one tenant with an upstream registered for Acme Tasks (the
// default client, client_secret_basic), and the Token B services built as
// cmd/locksmith wires them.
type Env struct {
	DB       *lsql.DB
	Sealer   *seal.Sealer
	Egress   *egress.Client
	Tenants  *tenants.Service
	Inserter *river.Client[pgx.Tx]
	Vault    *consent.Vault
	Logger   *slog.Logger
	TenantID uuid.UUID
	Slug     string
	Upstream tenants.Upstream

	ownerURL string
}

// Open connects to cfg.OwnerURL and registers a tenant and the Acme Tasks
// upstream through the tenants service, as the console would.
func Open(ctx context.Context, cfg Config) (*Env, error) {
	switch {
	case cfg.OwnerURL == "":
		return nil, errors.New("tokenb: open: owner URL is required")
	case cfg.AcmeURL == "":
		return nil, errors.New("tokenb: open: Acme Tasks URL is required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	db, err := lsql.Open(ctx, lsql.Options{URL: cfg.OwnerURL, AssumeRole: true, MaxConns: cfg.MaxConns})
	if err != nil {
		return nil, fmt.Errorf("tokenb: open: %w", err)
	}
	e := &Env{DB: db, Logger: logger, ownerURL: cfg.OwnerURL}
	if err := e.init(ctx, cfg); err != nil {
		db.Close()
		return nil, fmt.Errorf("tokenb: open: %w", err)
	}
	return e, nil
}

func (e *Env) init(ctx context.Context, cfg Config) error {
	key, err := seal.GenerateMasterKey("bench")
	if err != nil {
		return err
	}
	mk, err := seal.ParseMasterKeys(key)
	if err != nil {
		return err
	}
	if e.Sealer, err = seal.New(e.DB, mk); err != nil {
		return err
	}
	if e.Egress, err = egress.New(egress.Options{AllowPrivate: true}); err != nil {
		return err
	}
	if e.Tenants, err = tenants.New(tenants.Config{DB: e.DB, Sealer: e.Sealer, Egress: e.Egress, Logger: e.Logger,
		BaseURL: "https://locksmith.bench.test"}); err != nil {
		return err
	}
	if e.Inserter, err = jobs.NewInserter(e.DB, e.Logger); err != nil {
		return err
	}
	if e.Vault, err = e.NewVault(nil); err != nil {
		return err
	}
	owner, err := e.Tenants.EnsureAccount(ctx, "owner@bench.test")
	if err != nil {
		return fmt.Errorf("owner account: %w", err)
	}
	e.Slug = "bench-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:10]
	t, err := e.Tenants.CreateTenant(ctx, owner.ID, e.Slug, "Token B benchmark")
	if err != nil {
		return fmt.Errorf("tenant: %w", err)
	}
	e.TenantID = t.ID
	secret := tasks.DefaultClientSecret
	e.Upstream, err = e.Tenants.CreateUpstream(ctx, t.ID, tenants.UpstreamInput{
		Slug: "acme-tasks", Name: "Acme Tasks", BaseURL: cfg.AcmeURL, AuthMode: tenants.AuthOAuth2,
		AuthorizeURL: cfg.AcmeURL + "/authorize", TokenURL: cfg.AcmeURL + "/token", RevocationURL: cfg.AcmeURL + "/revoke",
		ClientID: tasks.DefaultClientID, ClientSecret: &secret, ScopesOffered: tasks.SupportedScopes(),
	})
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	return nil
}

// Analyze refreshes the planner statistics of river_job and grants as the
// database owner, as autovacuum eventually would. Tables that grew from
// empty within a minute have none yet.
func (e *Env) Analyze(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, e.ownerURL)
	if err != nil {
		return fmt.Errorf("tokenb: analyze: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "ANALYZE river_job, grants"); err != nil {
		return fmt.Errorf("tokenb: analyze: %w", err)
	}
	return nil
}

// Close closes the app pool.
func (e *Env) Close() { e.DB.Close() }

// NewVault returns a vault on the environment's database; now nil means
// time.Now. A shifted clock changes only when refresh jobs are scheduled
// (see Scale).
func (e *Env) NewVault(now func() time.Time) (*consent.Vault, error) {
	return consent.NewVault(consent.VaultConfig{DB: e.DB, Sealer: e.Sealer, Inserter: e.Inserter, Logger: e.Logger, Now: now})
}

// NewBroker returns a broker with an empty cache, configured as
// cmd/locksmith does (defaults everywhere), over up (nil means the tenants
// service).
func (e *Env) NewBroker(up consent.Upstreams) (*consent.Broker, error) {
	if up == nil {
		up = e.Tenants
	}
	return consent.NewBroker(consent.BrokerConfig{
		Vault: e.Vault, Upstreams: up, Egress: e.Egress, Logger: e.Logger,
		ConsentURL: func(_ context.Context, _ uuid.UUID, up tenants.Upstream, scopes []string) string {
			return consent.ConsentURL("https://locksmith.bench.test", e.Slug, up.Slug, scopes)
		},
	})
}

// User is the end user named name.
func User(name string) consent.User {
	return consent.User{Issuer: Issuer, Subject: name, Email: name + "@acme.example"}
}

// UserName is the i-th benchmark user (also an Acme Tasks user).
func UserName(i int) string { return fmt.Sprintf("u%06d", i) }

// Users returns UserName(from) … UserName(from+n-1).
func Users(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = UserName(from + i)
	}
	return out
}

// SeedResult is how long seeding took.
type SeedResult struct {
	Grants int
	// Issue is the time Acme Tasks took to start the token families
	// (IssueTokens), Save the time of Vault.SaveGrant for all grants.
	Issue, Save time.Duration
}

// SeedGrants starts a token family at acme for each user and saves it as
// the user's grant through vault (one transaction per grant, with its
// refresh job), workers at a time, in batches of batch users. Every access
// token is stored as expiring at expiresAt, whatever Acme said.
func (e *Env) SeedGrants(ctx context.Context, acme Acme, vault *consent.Vault, users []string, expiresAt time.Time, workers, batch int) (SeedResult, error) {
	workers, batch = max(workers, 1), max(batch, 1)
	res := SeedResult{Grants: len(users)}
	type item struct {
		user string
		tok  tasks.TokenResponse
	}
	items := make(chan item, batch)
	var firstErr error
	var errOnce sync.Once
	var failed atomic.Bool
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		failed.Store(true)
	}
	var saveNanos atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for it := range items {
				if failed.Load() {
					continue
				}
				t0 := time.Now()
				_, err := vault.SaveGrant(ctx, e.TenantID, e.Upstream.ID, User(it.user), consent.Tokens{
					AccessToken: it.tok.AccessToken, RefreshToken: it.tok.RefreshToken,
					ExpiresAt: expiresAt, Scopes: strings.Fields(it.tok.Scope),
				})
				saveNanos.Add(int64(time.Since(t0)))
				if err != nil {
					fail(fmt.Errorf("tokenb: seed grant of %s: %w", it.user, err))
				}
			}
		})
	}
	start := time.Now()
	var issue time.Duration
	for i := 0; i < len(users) && !failed.Load(); i += batch {
		chunk := users[i:min(i+batch, len(users))]
		t0 := time.Now()
		toks, err := acme.Issue(ctx, chunk)
		issue += time.Since(t0)
		if err != nil {
			fail(err)
			break
		}
		for j, tok := range toks {
			items <- item{user: chunk[j], tok: tok}
		}
	}
	close(items)
	wg.Wait()
	res.Issue = issue
	res.Save = time.Since(start) - issue
	return res, firstErr
}

// CountingUpstreams counts the broker's lookups of upstream registrations,
// each of which is a database round trip.
type CountingUpstreams struct {
	Next  consent.Upstreams
	calls atomic.Int64
}

// Upstream counts and forwards.
func (c *CountingUpstreams) Upstream(ctx context.Context, tenantID, id uuid.UUID) (tenants.Upstream, error) {
	c.calls.Add(1)
	return c.Next.Upstream(ctx, tenantID, id)
}

// UpstreamClientSecret counts and forwards.
func (c *CountingUpstreams) UpstreamClientSecret(ctx context.Context, tenantID, id uuid.UUID) (string, error) {
	c.calls.Add(1)
	return c.Next.UpstreamClientSecret(ctx, tenantID, id)
}

// Calls reports the calls so far.
func (c *CountingUpstreams) Calls() int64 { return c.calls.Load() }
