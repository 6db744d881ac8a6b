package consent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/tasks"
	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

func TestMain(m *testing.M) { os.Exit(sqltest.Main(m)) }

// The tenant domain's service is the production implementation of Upstreams.
var _ consent.Upstreams = (*tenants.Service)(nil)

const testIssuer = "https://idp.example.test"

// issued records every token Acme Tasks issued in this package's tests, for
// the pg_dump test.
var issued struct {
	sync.Mutex
	tokens map[string]bool
}

func recordIssued(toks ...string) {
	issued.Lock()
	defer issued.Unlock()
	if issued.tokens == nil {
		issued.tokens = map[string]bool{}
	}
	for _, t := range toks {
		if t != "" {
			issued.tokens[t] = true
		}
	}
}

func issuedTokens() []string {
	issued.Lock()
	defer issued.Unlock()
	out := make([]string, 0, len(issued.tokens))
	for t := range issued.tokens {
		out = append(out, t)
	}
	return out
}

// recorder captures the tokens in token endpoint responses.
type recorder struct {
	http.ResponseWriter
	buf bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.buf.Write(b)
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func recording(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/token" {
			next.ServeHTTP(w, r)
			return
		}
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		var body struct {
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
		}
		if json.Unmarshal(rec.buf.Bytes(), &body) == nil {
			recordIssued(body.AccessToken, body.RefreshToken)
		}
	})
}

// acmeServer is Acme Tasks on a test server whose issued tokens are recorded.
type acmeServer struct {
	*tasks.Server
	url string
}

func startAcme(t testing.TB, users int) *acmeServer {
	t.Helper()
	cfg := tasks.Config{}
	if users > 0 {
		for i := range users {
			cfg.Users = append(cfg.Users, tasks.User{Name: userName(i), Email: userName(i) + "@acme.example"})
		}
	}
	return startAcmeConfig(t, cfg)
}

func startAcmeConfig(t testing.TB, cfg tasks.Config) *acmeServer {
	t.Helper()
	return startAcmeWrapped(t, cfg, nil)
}

// startAcmeWrapped is startAcmeConfig with wrap (when not nil) around Acme's
// handler, e.g. to slow an endpoint down.
func startAcmeWrapped(t testing.TB, cfg tasks.Config, wrap func(http.Handler) http.Handler) *acmeServer {
	t.Helper()
	s, err := tasks.New(cfg)
	require.NoError(t, err)
	h := recording(s.Handler())
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx) // releases hung responses
		srv.CloseClientConnections()
		srv.Close()
	})
	return &acmeServer{Server: s, url: srv.URL}
}

func userName(i int) string { return fmt.Sprintf("u%02d", i) }

func testUser(name string) consent.User {
	return consent.User{Issuer: testIssuer, Subject: name, Email: name + "@acme.example"}
}

// issue starts a token family at Acme for the user, as a consent would.
func (a *acmeServer) issue(t testing.TB, user string, scopes ...string) consent.Tokens {
	t.Helper()
	if len(scopes) == 0 {
		scopes = []string{tasks.ScopeRead, tasks.ScopeWrite}
	}
	resp, err := a.IssueTokens(user, tasks.DefaultClientID, scopes)
	require.NoError(t, err)
	recordIssued(resp.AccessToken, resp.RefreshToken)
	return consent.Tokens{
		AccessToken: resp.AccessToken, RefreshToken: resp.RefreshToken,
		ExpiresAt: time.Now().Add(time.Duration(resp.ExpiresIn) * time.Second), Scopes: strings.Fields(resp.Scope),
	}
}

// listTasks calls GET /tasks with tok and returns the status.
func (a *acmeServer) listTasks(t testing.TB, tok string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, a.url+"/tasks", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// env is one tenant with the shared package services.
type env struct {
	db        *lsql.DB
	sealer    *seal.Sealer
	egress    *egress.Client
	inserter  *river.Client[pgx.Tx]
	upstreams *tenants.Service
	vault     *consent.Vault
	logger    *slog.Logger
	tenantID  uuid.UUID
	slug      string
}

var (
	sharedOnce sync.Once
	shared     env
	sharedErr  error
)

func testLogger() *slog.Logger {
	if os.Getenv("LOCKSMITH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func setup(t testing.TB) *env {
	t.Helper()
	db := sqltest.DB(t)
	sharedOnce.Do(func() { shared, sharedErr = newEnv(db) })
	require.NoError(t, sharedErr)
	return shared.withTenant(t)
}

// setupOn is setup on another database (sqltest.NewDatabase), with
// services of its own, for tests that disturb their database.
func setupOn(t testing.TB, db *lsql.DB) *env {
	t.Helper()
	e, err := newEnv(db)
	require.NoError(t, err)
	return e.withTenant(t)
}

// newEnv builds the services on db, with a master key of its own.
func newEnv(db *lsql.DB) (env, error) {
	e := env{db: db, logger: testLogger()}
	key, err := seal.GenerateMasterKey("test")
	if err != nil {
		return e, err
	}
	mk, err := seal.ParseMasterKeys(key)
	if err != nil {
		return e, err
	}
	if e.sealer, err = seal.New(db, mk); err != nil {
		return e, err
	}
	if e.egress, err = egress.New(egress.Options{AllowPrivate: true, Timeout: 5 * time.Second}); err != nil {
		return e, err
	}
	if e.inserter, err = river.NewClient(riverpgxv5.New(db.Pool()), &river.Config{Logger: e.logger}); err != nil {
		return e, err
	}
	if e.upstreams, err = tenants.New(tenants.Config{DB: db, Sealer: e.sealer, Egress: e.egress,
		Logger: e.logger, BaseURL: "https://locksmith.example.test"}); err != nil {
		return e, err
	}
	e.vault, err = consent.NewVault(consent.VaultConfig{DB: db, Sealer: e.sealer, Inserter: e.inserter, Logger: e.logger})
	return e, err
}

// withTenant returns a copy of e with a new tenant.
func (e env) withTenant(t testing.TB) *env {
	t.Helper()
	e.tenantID = uuid.New()
	e.slug = "t-" + strings.ReplaceAll(e.tenantID.String(), "-", "")[:12]
	require.NoError(t, e.db.InTx(context.Background(), func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, 'Consent test')", e.tenantID, e.slug)
		return err
	}))
	return &e
}

// upstreamOpts configures addUpstream.
type upstreamOpts struct {
	authMode         string
	refreshNarrows   bool
	tokenURL         string
	revocationURL    string
	exchangeVariant  string
	exchangeAudience string
	resource         string
	revokeAfterUse   bool
}

// addUpstream registers an upstream the way the console would (sealed
// client secret), pointing at acme unless opts says otherwise.
func (e *env) addUpstream(t testing.TB, acme *acmeServer, opts upstreamOpts) tenants.Upstream {
	t.Helper()
	ctx := context.Background()
	id := uuid.New()
	if opts.authMode == "" {
		opts.authMode = tenants.AuthOAuth2
	}
	if opts.exchangeVariant == "" {
		opts.exchangeVariant = tenants.ExchangeRFC8693
	}
	base := "https://tasks.example.test"
	if acme != nil {
		base = acme.url
		if opts.tokenURL == "" {
			opts.tokenURL = acme.url + "/token"
		}
		if opts.revocationURL == "" {
			opts.revocationURL = acme.url + "/revoke"
		}
	}
	secret, err := e.sealer.Seal(ctx, e.tenantID, id, "client_secret", []byte(tasks.DefaultClientSecret))
	require.NoError(t, err)
	slug := "up-" + strings.ReplaceAll(id.String(), "-", "")[:10]
	require.NoError(t, e.db.InTenant(ctx, e.tenantID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO upstreams (tenant_id, id, slug, name, base_url, auth_mode, token_url, revocation_url,
			client_id, client_secret_sealed, scopes_offered, refresh_narrows, exchange_variant, exchange_audience, resource, revoke_after_use)
			VALUES ($1, $2, $3, 'Acme Tasks', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
			e.tenantID, id, slug, base, opts.authMode, opts.tokenURL, opts.revocationURL, tasks.DefaultClientID, secret,
			tasks.SupportedScopes(), opts.refreshNarrows, opts.exchangeVariant, opts.exchangeAudience, opts.resource, opts.revokeAfterUse)
		return err
	}))
	up, err := e.upstreams.Upstream(ctx, e.tenantID, id)
	require.NoError(t, err)
	return up
}

func (e *env) consentURL() consent.ConsentURLFunc {
	return func(_ context.Context, tenantID uuid.UUID, up tenants.Upstream, scopes []string) string {
		return consent.ConsentURL("https://locksmith.example.test", e.slug, up.Slug, scopes)
	}
}

// brokerOpts tunes newBroker.
type brokerOpts struct {
	instance       string
	lease          time.Duration
	timeout        time.Duration
	wait           time.Duration
	noSingleFlight bool
	afterUpstream  func() error
	exchange       consent.ExchangeClients
	vault          *consent.Vault
	flush          time.Duration
	start          bool
	logger         *slog.Logger
}

func (e *env) newBroker(t testing.TB, o brokerOpts) *consent.Broker {
	t.Helper()
	v := o.vault
	if v == nil {
		v = e.vault
	}
	logger := o.logger
	if logger == nil {
		logger = e.logger
	}
	cfg := consent.BrokerConfig{
		Vault: v, Upstreams: e.upstreams, Egress: e.egress, Exchange: o.exchange, ConsentURL: e.consentURL(),
		Logger: logger, Instance: o.instance, Lease: o.lease, RefreshTimeout: o.timeout, WaitTimeout: o.wait,
		ExpiryMargin: 5 * time.Second, FlushInterval: o.flush,
	}
	consent.SetTestOptions(&cfg, o.noSingleFlight, o.afterUpstream)
	b, err := consent.NewBroker(cfg)
	require.NoError(t, err)
	if o.start {
		require.NoError(t, b.Start(context.Background()))
		t.Cleanup(b.Close)
	}
	return b
}

// expire makes the grant's stored access token look expired (Acme's side is
// expired with ExpireAccessTokens).
func (e *env) expire(t testing.TB, grantID uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, e.db.InTenant(ctx, e.tenantID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE grants SET access_expires_at = now() - interval '1 second' WHERE id = $1", grantID)
		return err
	}))
}

// save stores a grant for user from a fresh Acme authorization.
func (e *env) save(t testing.TB, acme *acmeServer, up tenants.Upstream, user string, scopes ...string) consent.Grant {
	t.Helper()
	g, err := e.vault.SaveGrant(context.Background(), e.tenantID, up.ID, testUser(user), acme.issue(t, user, scopes...))
	require.NoError(t, err)
	return g
}

// jobCount counts River jobs of kind for the grant or revocation id in args.
func (e *env) jobCount(t testing.TB, kind string, id uuid.UUID) int {
	t.Helper()
	var n int
	require.NoError(t, e.db.Pool().QueryRow(context.Background(),
		"SELECT count(*) FROM river_job WHERE kind = $1 AND args::text LIKE '%' || $2 || '%'", kind, id.String()).Scan(&n))
	return n
}

// pgDump returns a plain-SQL dump of the package's test database.
func pgDump(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("pg_dump")
	if err != nil {
		matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_dump")
		if len(matches) == 0 {
			t.Skip("pg_dump not found on PATH or in /usr/lib/postgresql/*/bin")
		}
		sort.Strings(matches)
		bin = matches[len(matches)-1]
	}
	out, err := exec.Command(bin, "--no-owner", "--dbname", sqltest.OwnerURL(t)).Output()
	if ee, ok := err.(*exec.ExitError); ok {
		t.Fatalf("pg_dump: %v: %s", err, ee.Stderr)
	}
	require.NoError(t, err)
	return string(out)
}
