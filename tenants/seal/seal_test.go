package seal_test

import (
	"context"
	"os"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

func TestMain(m *testing.M) { os.Exit(sqltest.Main(m)) }

type testBundle struct {
	ctx    context.Context
	sealer *seal.Sealer
	tenant uuid.UUID
	other  uuid.UUID
}

func newTenant(t *testing.T) uuid.UUID {
	t.Helper()
	id := uuid.New()
	err := sqltest.DB(t).InTx(context.Background(), func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, 'seal test')", id, "seal-"+id.String()[:8])
		return err
	})
	require.NoError(t, err)
	return id
}

func mustKeys(t *testing.T, kids ...string) *seal.MasterKeys {
	t.Helper()
	var entries []string
	for _, kid := range kids {
		entries = append(entries, keyFor(t, kid))
	}
	mk, err := seal.ParseMasterKeys(join(entries))
	require.NoError(t, err)
	return mk
}

// keyFor returns a stable generated key per kid within a test binary run.
var generated = map[string]string{}

func keyFor(t *testing.T, kid string) string {
	if k, ok := generated[kid]; ok {
		return k
	}
	k, err := seal.GenerateMasterKey(kid)
	require.NoError(t, err)
	generated[kid] = k
	return k
}

func join(s []string) string {
	out := ""
	for i, e := range s {
		if i > 0 {
			out += ","
		}
		out += e
	}
	return out
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	s, err := seal.New(sqltest.DB(t), mustKeys(t, "k1"))
	require.NoError(t, err)
	return &testBundle{ctx: context.Background(), sealer: s, tenant: newTenant(t), other: newTenant(t)}
}

func TestSealOpen(t *testing.T) {
	// Not parallel at the top: keyFor's map is filled here first.
	keyFor(t, "k1")
	keyFor(t, "k2")

	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		row := uuid.New()
		ct, err := b.sealer.Seal(b.ctx, b.tenant, row, "refresh_token", []byte("s3cret-refresh"))
		require.NoError(t, err)
		require.NotContains(t, string(ct), "s3cret")
		pt, err := b.sealer.Open(b.ctx, b.tenant, row, "refresh_token", ct)
		require.NoError(t, err)
		require.Equal(t, "s3cret-refresh", string(pt))

		// Two seals of the same value differ (random nonce).
		ct2, err := b.sealer.Seal(b.ctx, b.tenant, row, "refresh_token", []byte("s3cret-refresh"))
		require.NoError(t, err)
		require.NotEqual(t, ct, ct2)

		// A fresh Sealer (another instance) opens it from the database.
		other, err := seal.New(sqltest.DB(t), mustKeys(t, "k1"))
		require.NoError(t, err)
		pt, err = other.Open(b.ctx, b.tenant, row, "refresh_token", ct)
		require.NoError(t, err)
		require.Equal(t, "s3cret-refresh", string(pt))
	})

	t.Run("Tampered", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		row := uuid.New()
		ct, err := b.sealer.Seal(b.ctx, b.tenant, row, "f", []byte("value"))
		require.NoError(t, err)
		ct[len(ct)-1] ^= 1
		_, err = b.sealer.Open(b.ctx, b.tenant, row, "f", ct)
		require.ErrorIs(t, err, seal.ErrTampered)

		_, err = b.sealer.Open(b.ctx, b.tenant, row, "f", []byte("not sealed"))
		require.ErrorIs(t, err, seal.ErrMalformed)
	})

	t.Run("MovedToAnotherRowOrField", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		row := uuid.New()
		ct, err := b.sealer.Seal(b.ctx, b.tenant, row, "access_token", []byte("value"))
		require.NoError(t, err)
		_, err = b.sealer.Open(b.ctx, b.tenant, uuid.New(), "access_token", ct)
		require.ErrorIs(t, err, seal.ErrTampered)
		_, err = b.sealer.Open(b.ctx, b.tenant, row, "refresh_token", ct)
		require.ErrorIs(t, err, seal.ErrTampered)
	})

	t.Run("MovedToAnotherTenant", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		row := uuid.New()
		ct, err := b.sealer.Seal(b.ctx, b.tenant, row, "f", []byte("value"))
		require.NoError(t, err)
		// The other tenant has no such data key (RLS hides the first tenant's).
		_, err = b.sealer.Open(b.ctx, b.other, row, "f", ct)
		require.ErrorIs(t, err, seal.ErrUnknownDataKey)
		// Even once the other tenant has keys of its own.
		_, err = b.sealer.Seal(b.ctx, b.other, row, "f", []byte("x"))
		require.NoError(t, err)
		_, err = b.sealer.Open(b.ctx, b.other, row, "f", ct)
		require.ErrorIs(t, err, seal.ErrUnknownDataKey)
	})

	t.Run("RotationRewrap", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		row := uuid.New()
		ct, err := b.sealer.Seal(b.ctx, b.tenant, row, "f", []byte("survives rotation"))
		require.NoError(t, err)

		// Rotate: k2 becomes current, k1 still listed. Old data keys open.
		rotated, err := seal.New(sqltest.DB(t), mustKeys(t, "k2", "k1"))
		require.NoError(t, err)
		pt, err := rotated.Open(b.ctx, b.tenant, row, "f", ct)
		require.NoError(t, err)
		require.Equal(t, "survives rotation", string(pt))

		n, err := rotated.Rewrap(b.ctx, b.tenant)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		n, err = rotated.Rewrap(b.ctx, b.tenant)
		require.NoError(t, err)
		require.Zero(t, n, "rewrap is idempotent")

		// After the re-wrap, k1 can be dropped: the secret (unchanged) opens.
		onlyNew, err := seal.New(sqltest.DB(t), mustKeys(t, "k2"))
		require.NoError(t, err)
		pt, err = onlyNew.Open(b.ctx, b.tenant, row, "f", ct)
		require.NoError(t, err)
		require.Equal(t, "survives rotation", string(pt))

		// And a process that only knows k1 now gets a clear error.
		onlyOld, err := seal.New(sqltest.DB(t), mustKeys(t, "k1"))
		require.NoError(t, err)
		_, err = onlyOld.Open(b.ctx, b.tenant, row, "f", ct)
		require.ErrorIs(t, err, seal.ErrUnknownMasterKey)
		require.ErrorContains(t, err, `"k2"`)
	})

	t.Run("UnknownMasterKeyID", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		row := uuid.New()
		ct, err := b.sealer.Seal(b.ctx, b.tenant, row, "f", []byte("v"))
		require.NoError(t, err)
		other, err := seal.New(sqltest.DB(t), mustKeys(t, "k2"))
		require.NoError(t, err)
		_, err = other.Open(b.ctx, b.tenant, row, "f", ct)
		require.ErrorIs(t, err, seal.ErrUnknownMasterKey)
		require.ErrorContains(t, err, `"k1"`)
	})

	t.Run("ConcurrentFirstUse", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		errs := make(chan error, 8)
		for range 8 {
			go func() {
				s, err := seal.New(sqltest.DB(t), mustKeys(t, "k1"))
				if err == nil {
					_, err = s.Seal(b.ctx, b.tenant, uuid.New(), "f", []byte("v"))
				}
				errs <- err
			}()
		}
		for range 8 {
			require.NoError(t, <-errs)
		}
	})
}

func TestParseMasterKeys(t *testing.T) {
	t.Parallel()
	good, err := seal.GenerateMasterKey("2026-11")
	require.NoError(t, err)
	tests := []struct {
		name, in, wantErr string
	}{
		{"empty", "", "got nothing"},
		{"no colon", "abc", "expected keyid:base64"},
		{"bad kid", "a b:AAAA", "key id must be"},
		{"not base64", "k1:!!!", "not valid base64"},
		{"short", "k1:AAAA", "must decode to 32 bytes, got 3"},
		{"duplicate", good + "," + good, "appears twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := seal.ParseMasterKeys(tt.in)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
	mk, err := seal.ParseMasterKeys(good)
	require.NoError(t, err)
	require.Equal(t, "2026-11", mk.Current())
	require.NotContains(t, mk.String(), good[8:])
}
