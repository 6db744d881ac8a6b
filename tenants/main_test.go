package tenants_test

import (
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

func TestMain(m *testing.M) { os.Exit(sqltest.Main(m)) }

// newService builds a tenants.Service on the package's test database. With
// allowPrivate false its egress client refuses loopback and private targets.
func newService(t testing.TB, allowPrivate bool) *tenants.Service {
	t.Helper()
	key, err := seal.GenerateMasterKey("test")
	require.NoError(t, err)
	mk, err := seal.ParseMasterKeys(key)
	require.NoError(t, err)
	db := sqltest.DB(t)
	sealer, err := seal.New(db, mk)
	require.NoError(t, err)
	eg, err := egress.New(egress.Options{AllowPrivate: allowPrivate})
	require.NoError(t, err)
	svc, err := tenants.New(tenants.Config{
		DB: db, Sealer: sealer, Egress: eg,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		BaseURL: "https://locksmith.example.com",
	})
	require.NoError(t, err)
	return svc
}
