// Package sqltest gives each test package its own fresh, migrated PostgreSQL
// database, cloned from a template database that is migrated once per set of
// migrations, and drops it when the package's tests end. Packages therefore
// run in parallel safely against one PostgreSQL server.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(sqltest.Main(m)) }
//
// and in tests call sqltest.DB(t) for the application pool (running as the
// unprivileged app role) or sqltest.OwnerURL(t) for the owner's connection
// string. A test that disturbs its database takes one of its own with
// sqltest.NewDatabase(t); sqltest.Outage plays it a PostgreSQL restart. The server is taken from DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable).
package sqltest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	lsql "github.com/locksmithhq/locksmith/sql"
)

// DefaultURL is used when DATABASE_URL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

var (
	ownerURL string
	setupErr error
	// template is the migrated template database the package database was
	// cloned from (for NewDatabase).
	template string

	dbOnce sync.Once
	db     *lsql.DB
	dbErr  error
)

// ServerURL returns the connection string of the server tests use.
func ServerURL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// Main creates the package's database, runs the tests and drops the database.
// It returns the exit code for os.Exit. If PostgreSQL can't be reached, the
// tests still run and every call to DB or OwnerURL fails with the reason.
func Main(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	name, err := create(ctx)
	cancel()
	if err != nil {
		setupErr = err
		return m.Run()
	}
	code := m.Run()
	if db != nil {
		db.Close()
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := drop(ctx, name); err != nil {
		fmt.Fprintf(os.Stderr, "sqltest: drop %s: %v\n", name, err)
	}
	return code
}

// OwnerURL returns the connection string for the package database as its
// owner (the role in DATABASE_URL), for migrations and for tests that must
// act outside the app role.
func OwnerURL(t testing.TB) string {
	t.Helper()
	if setupErr != nil {
		t.Fatalf("sqltest: no test database: %v", setupErr)
	}
	if ownerURL == "" {
		t.Fatal("sqltest: no test database: call sqltest.Main from TestMain")
	}
	return ownerURL
}

// DB returns the application pool on the package database, shared by the
// package's tests and closed by Main.
func DB(t testing.TB) *lsql.DB {
	t.Helper()
	u := OwnerURL(t)
	dbOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db, dbErr = lsql.Open(ctx, lsql.Options{URL: u, AssumeRole: true, MaxConns: 20})
	})
	if dbErr != nil {
		t.Fatalf("sqltest: open app pool: %v", dbErr)
	}
	return db
}

// Outage plays a PostgreSQL restart to the clients of the database at dbURL
// (one from NewDatabase: never the package database, which the package's
// other tests share): from now on the database refuses new connections,
// and every backend connected to it is terminated now and again every
// 100 ms, until end is called, which lets connections in again and returns
// how many backends were terminated. end is also called when the test ends.
func Outage(t testing.TB, dbURL string) (end func() int) {
	t.Helper()
	if dbURL == OwnerURL(t) {
		t.Fatal("sqltest: an outage of the package database would disturb the package's other tests; use NewDatabase")
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("sqltest: outage: %v", err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if !strings.HasPrefix(name, "locksmith_test_") {
		t.Fatalf("sqltest: outage: %q is not a test database", name)
	}
	ctx := context.Background()
	// From the server's maintenance database: no one, superusers included,
	// connects to a database that refuses connections.
	admin, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		t.Fatalf("sqltest: outage: connect to %s: %v", redact(ServerURL()), err)
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" ALLOW_CONNECTIONS false"); err != nil {
		admin.Close(ctx)
		t.Fatalf("sqltest: outage: refuse connections: %v", err)
	}
	var terminated atomic.Int64
	terminate := func() error {
		var n int64
		err := admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = $1 AND pid <> pg_backend_pid()`, name).Scan(&n)
		terminated.Add(n)
		return err
	}
	if err := terminate(); err != nil {
		t.Errorf("sqltest: outage: terminate backends: %v", err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if err := terminate(); err != nil {
				t.Errorf("sqltest: outage: terminate backends: %v", err)
				return
			}
		}
	}()
	var once sync.Once
	end = func() int {
		once.Do(func() {
			close(stop)
			<-done
			if _, err := admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" ALLOW_CONNECTIONS true"); err != nil {
				t.Errorf("sqltest: outage: allow connections: %v", err)
			}
			admin.Close(ctx)
		})
		return int(terminated.Load())
	}
	t.Cleanup(func() { end() })
	return end
}

// WithDatabase replaces the database name in a connection string.
func WithDatabase(raw, name string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("sqltest: parse %q: %w", "DATABASE_URL", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

func templateName() (string, error) {
	ms, err := lsql.Migrations()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, m := range ms {
		io.WriteString(h, m.Name)
		io.WriteString(h, m.SQL)
	}
	return "locksmith_tpl_" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// create makes sure the template exists (migrating it once, under an advisory
// lock so concurrent packages don't race) and clones it.
func create(ctx context.Context) (string, error) {
	server := ServerURL()
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", redact(server), err)
	}
	defer admin.Close(ctx)

	tpl, err := templateName()
	if err != nil {
		return "", err
	}
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock(hashtext('locksmith_sqltest_template'))"); err != nil {
		return "", err
	}
	err = ensureTemplate(ctx, admin, server, tpl)
	_, _ = admin.Exec(ctx, "SELECT pg_advisory_unlock(hashtext('locksmith_sqltest_template'))")
	if err != nil {
		return "", err
	}

	name, err := clone(ctx, admin, tpl)
	if err != nil {
		return "", err
	}
	template = tpl
	ownerURL, err = WithDatabase(server, name)
	return name, err
}

// clone creates a fresh database from the template tpl and returns its name.
func clone(ctx context.Context, admin *pgx.Conn, tpl string) (string, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "locksmith_test_" + hex.EncodeToString(b[:])
	// Cloning fails while another session is connected to the template (for
	// example a concurrent clone); retry briefly.
	var err error
	for attempt := 0; ; attempt++ {
		_, err = admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, tpl))
		if err == nil || attempt >= 50 || !strings.Contains(err.Error(), "being accessed by other users") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return "", fmt.Errorf("clone template: %w", err)
	}
	return name, nil
}

// NewDatabase creates another fresh, migrated database for one test (a clone
// of the package database's template) and returns its owner's connection
// string; the database is dropped, its connections closed, when the test
// ends. It is for tests that disturb their database (terminate its
// connections, refuse new ones) without disturbing the package's other
// tests. Call sqltest.Main from TestMain first.
func NewDatabase(t testing.TB) string {
	t.Helper()
	OwnerURL(t) // fails the test when Main did not set up
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		t.Fatalf("sqltest: new database: connect to %s: %v", redact(ServerURL()), err)
	}
	defer admin.Close(ctx)
	name, err := clone(ctx, admin, template)
	if err != nil {
		t.Fatalf("sqltest: new database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := drop(ctx, name); err != nil {
			t.Errorf("sqltest: drop %s: %v", name, err)
		}
	})
	u, err := WithDatabase(ServerURL(), name)
	if err != nil {
		t.Fatalf("sqltest: new database: %v", err)
	}
	return u
}

func ensureTemplate(ctx context.Context, admin *pgx.Conn, server, tpl string) error {
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", tpl).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	building := tpl + "_build"
	_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+building+" WITH (FORCE)")
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+building); err != nil {
		return fmt.Errorf("create template: %w", err)
	}
	u, err := WithDatabase(server, building)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := lsql.Migrate(ctx, u, logger); err != nil {
		return fmt.Errorf("migrate template: %w", err)
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", building, tpl)); err != nil {
		return fmt.Errorf("rename template: %w", err)
	}
	return nil
}

func drop(ctx context.Context, name string) error {
	admin, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	_, err = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	return err
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "DATABASE_URL"
	}
	return u.Redacted()
}
