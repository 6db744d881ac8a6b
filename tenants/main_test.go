package tenants_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

func TestMain(m *testing.M) { os.Exit(sqltest.Main(m)) }

// testBaseURL is the public URL of the services built by setupReg.
const testBaseURL = "https://locksmith.example.com"

// publicIP is what fakeResolver answers for names it doesn't know: a
// public address that the tests never dial.
const publicIP = "93.184.215.14"

// fakeResolver resolves from a table, so tests never need real DNS. Names
// under .invalid are NXDOMAIN; other unknown names resolve to publicIP.
type fakeResolver map[string]string

func (r fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if strings.HasSuffix(host, ".invalid") {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	if a, ok := r[host]; ok {
		return []netip.Addr{netip.MustParseAddr(a)}, nil
	}
	return []netip.Addr{netip.MustParseAddr(publicIP)}, nil
}

var testResolver = fakeResolver{
	"internal.example.com": "10.0.0.5",
	"metadata.example.com": "169.254.169.254",
}

// masterKeys is one master key shared by the package's services.
var masterKeys = sync.OnceValues(func() (*seal.MasterKeys, error) {
	k, err := seal.GenerateMasterKey("test1")
	if err != nil {
		return nil, err
	}
	return seal.ParseMasterKeys(k)
})

// regBundle is what the registration tests share: a service whose egress
// client allows private targets (the demo servers listen on 127.0.0.1), a
// strict service with the production egress policy, and two tenants.
type regBundle struct {
	ctx context.Context
	// svc allows private targets and plain http.
	svc *tenants.Service
	// strict refuses loopback, private, link-local and metadata addresses.
	strict *tenants.Service
	a, b   tenants.Tenant
}

// newService builds a tenants.Service on the package's test database. With
// allowPrivate false its egress client refuses loopback and private targets.
// Host names resolve through testResolver, never real DNS.
func newService(t testing.TB, allowPrivate bool) *tenants.Service {
	t.Helper()
	keys, err := masterKeys()
	require.NoError(t, err)
	db := sqltest.DB(t)
	sl, err := seal.New(db, keys)
	require.NoError(t, err)
	eg, err := egress.New(egress.Options{AllowPrivate: allowPrivate, Resolver: testResolver, Timeout: 5 * time.Second})
	require.NoError(t, err)
	svc, err := tenants.New(tenants.Config{DB: db, Sealer: sl, Egress: eg, Logger: slog.New(slog.DiscardHandler), BaseURL: testBaseURL})
	require.NoError(t, err)
	return svc
}

// newTenant inserts a tenant directly (no owner account is needed here).
func newTenant(t testing.TB) tenants.Tenant {
	t.Helper()
	tn := tenants.Tenant{ID: uuid.New()}
	tn.Slug = "reg-" + strings.ReplaceAll(tn.ID.String(), "-", "")[:12]
	tn.Name = "registrations test"
	err := sqltest.DB(t).InTx(context.Background(), func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $3)", tn.ID, tn.Slug, tn.Name)
		return err
	})
	require.NoError(t, err)
	return tn
}

func setupReg(t testing.TB) *regBundle {
	t.Helper()
	return &regBundle{
		ctx:    context.Background(),
		svc:    newService(t, true),
		strict: newService(t, false),
		a:      newTenant(t),
		b:      newTenant(t),
	}
}

// startTasks runs Acme Tasks on 127.0.0.1:0 for the test.
func startTasks(t testing.TB) *tasks.Server {
	t.Helper()
	srv, err := tasks.New(tasks.Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, srv.Start("127.0.0.1:0"))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Close(ctx))
	})
	return srv
}

// requireFieldError asserts err is a *tenants.Error of kind kind on field,
// whose message contains each of contains.
func requireFieldError(t testing.TB, err error, kind error, field string, contains ...string) {
	t.Helper()
	require.Error(t, err)
	var fe *tenants.Error
	require.True(t, errors.As(err, &fe), "want *tenants.Error, got %T: %v", err, err)
	require.ErrorIs(t, err, kind)
	require.Equal(t, field, fe.Field, "message: %s", fe.Message)
	for _, c := range contains {
		require.Contains(t, fe.Message, c)
	}
}

func ptr[T any](v T) *T { return &v }
