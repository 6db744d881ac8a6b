package web

import (
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

func TestMain(m *testing.M) { os.Exit(sqltest.Main(m)) }

// lockedWriter serialises writes from concurrent handlers in tests.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// newTenantsService builds the tenant domain on the package's test
// database; configure may adjust its Config (e.g. PasswordResets).
func newTenantsService(t testing.TB, logger *slog.Logger, baseURL string, configure ...func(*tenants.Config)) *tenants.Service {
	t.Helper()
	key, err := seal.GenerateMasterKey("test")
	require.NoError(t, err)
	mk, err := seal.ParseMasterKeys(key)
	require.NoError(t, err)
	db := sqltest.DB(t)
	sealer, err := seal.New(db, mk)
	require.NoError(t, err)
	eg, err := egress.New(egress.Options{AllowPrivate: true})
	require.NoError(t, err)
	cfg := tenants.Config{DB: db, Sealer: sealer, Egress: eg, Logger: logger, BaseURL: baseURL}
	for _, f := range configure {
		f(&cfg)
	}
	svc, err := tenants.New(cfg)
	require.NoError(t, err)
	return svc
}
