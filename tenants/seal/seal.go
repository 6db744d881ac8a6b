// Package seal seals and opens secrets (upstream client secrets, Token B
// access and refresh tokens, webhook keys) with AES-256-GCM.
//
// Key hierarchy:
//
//	LOCKSMITH_MASTER_KEY (kid:key, ...; first is current)
//	   └─ wraps ─▶ per-tenant data key (tenant_data_keys row, names its master kid)
//	                 └─ seals ─▶ secret, bound to (tenant id, row id, field)
//
// The tenant id, the owning row's id and the field name are the associated
// data of every sealed secret, so a ciphertext copied to another row, another
// column or another tenant fails to open. Rotating the master key re-wraps the
// data keys (Rewrap) without touching any secret; until that is done, data keys
// wrapped by any master key still listed in the environment keep opening.
// Unwrapped data keys are cached in memory per process; secrets are not.
package seal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	lsql "github.com/locksmithhq/locksmith/sql"
)

// Errors returned by Open and Rewrap. Their messages are safe to show.
var (
	// ErrTampered means the ciphertext does not authenticate: it was altered,
	// or it belongs to another row, field or tenant.
	ErrTampered = errors.New("seal: secret could not be opened: it was altered or belongs to another row or tenant")
	// ErrUnknownDataKey means the ciphertext names a data key this tenant
	// does not have (typically a ciphertext moved from another tenant).
	ErrUnknownDataKey = errors.New("seal: secret names a data key this tenant does not have")
	// ErrUnknownMasterKey means a data key is wrapped by a master key id that
	// is not in LOCKSMITH_MASTER_KEY.
	ErrUnknownMasterKey = errors.New("seal: data key is wrapped by a master key that is not configured in LOCKSMITH_MASTER_KEY")
	// ErrMalformed means the value is not a sealed secret of a known format.
	ErrMalformed = errors.New("seal: not a sealed secret (bad format or version)")
)

const (
	formatV1  byte = 1
	headerLen      = 1 + 16 + 12 // version, data key id, nonce
	keyLen         = 32
)

// MasterKeys is the parsed LOCKSMITH_MASTER_KEY: named 256-bit keys, the
// first one current (used to wrap new data keys and for re-wrapping).
type MasterKeys struct {
	current string
	keys    map[string][]byte
	order   []string
}

// ParseMasterKeys parses "kid:base64-32-bytes[,kid:base64-32-bytes...]". Key
// ids are 1–64 characters of letters, digits, '-', '_' or '.'. The error says
// what is wrong without echoing key material.
func ParseMasterKeys(s string) (*MasterKeys, error) {
	mk := &MasterKeys{keys: map[string][]byte{}}
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("expected one or more keyid:base64-32-bytes, comma separated; got nothing")
	}
	for i, part := range strings.Split(s, ",") {
		kid, b64, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return nil, fmt.Errorf("entry %d: expected keyid:base64-32-bytes", i+1)
		}
		if !validKeyID(kid) {
			return nil, fmt.Errorf("entry %d: key id must be 1-64 letters, digits, '-', '_' or '.'", i+1)
		}
		key, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			key, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(b64, "="))
		}
		if err != nil {
			return nil, fmt.Errorf("entry %d (key id %q): key is not valid base64", i+1, kid)
		}
		if len(key) != keyLen {
			return nil, fmt.Errorf("entry %d (key id %q): key must decode to 32 bytes, got %d", i+1, kid, len(key))
		}
		if _, dup := mk.keys[kid]; dup {
			return nil, fmt.Errorf("entry %d: key id %q appears twice", i+1, kid)
		}
		mk.keys[kid] = key
		mk.order = append(mk.order, kid)
	}
	mk.current = mk.order[0]
	return mk, nil
}

func validKeyID(kid string) bool {
	if kid == "" || len(kid) > 64 {
		return false
	}
	for _, r := range kid {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// GenerateMasterKey returns a fresh "kid:base64" entry for LOCKSMITH_MASTER_KEY.
func GenerateMasterKey(kid string) (string, error) {
	if !validKeyID(kid) {
		return "", fmt.Errorf("seal: key id %q: must be 1-64 letters, digits, '-', '_' or '.'", kid)
	}
	b := make([]byte, keyLen)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("seal: generate master key: %w", err)
	}
	return kid + ":" + base64.StdEncoding.EncodeToString(b), nil
}

// Current returns the id of the current master key.
func (mk *MasterKeys) Current() string { return mk.current }

// IDs returns the configured key ids, current first.
func (mk *MasterKeys) IDs() []string { return append([]string(nil), mk.order...) }

// String never prints key material.
func (mk *MasterKeys) String() string { return "MasterKeys(" + strings.Join(mk.order, ",") + ")" }

// Sealer seals and opens secrets for any tenant. It is safe for concurrent use.
type Sealer struct {
	db   *lsql.DB
	keys *MasterKeys

	mu    sync.RWMutex
	cache map[uuid.UUID]*tenantKeys
}

type tenantKeys struct {
	current uuid.UUID
	aeads   map[uuid.UUID]cipher.AEAD
}

// New returns a Sealer over db's tenant_data_keys and the master keys.
func New(db *lsql.DB, keys *MasterKeys) (*Sealer, error) {
	if db == nil {
		return nil, errors.New("seal: db is required")
	}
	if keys == nil || len(keys.keys) == 0 {
		return nil, errors.New("seal: master keys are required")
	}
	return &Sealer{db: db, keys: keys, cache: map[uuid.UUID]*tenantKeys{}}, nil
}

// associated binds a sealed value to its place.
func associated(tenantID, rowID uuid.UUID, field string) []byte {
	ad := make([]byte, 0, 64+len(field))
	ad = append(ad, "locksmith/seal/v1\x00"...)
	ad = append(ad, tenantID[:]...)
	ad = append(ad, rowID[:]...)
	return append(ad, field...)
}

func wrapAD(tenantID, dkID uuid.UUID, masterID string) []byte {
	ad := append([]byte("locksmith/dek/v1\x00"), tenantID[:]...)
	ad = append(ad, dkID[:]...)
	return append(ad, masterID...)
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts plaintext for (tenantID, rowID, field) under the tenant's
// current data key, creating that key on first use.
func (s *Sealer) Seal(ctx context.Context, tenantID, rowID uuid.UUID, field string, plaintext []byte) ([]byte, error) {
	tk, err := s.tenant(ctx, tenantID, uuid.Nil)
	if err != nil {
		return nil, fmt.Errorf("seal: tenant %s: %w", tenantID, err)
	}
	aead := tk.aeads[tk.current]
	out := make([]byte, headerLen, headerLen+len(plaintext)+aead.Overhead())
	out[0] = formatV1
	copy(out[1:17], tk.current[:])
	if _, err := rand.Read(out[17:headerLen]); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return aead.Seal(out, out[17:headerLen], plaintext, associated(tenantID, rowID, field)), nil
}

// Open decrypts a value made by Seal for the same (tenantID, rowID, field).
func (s *Sealer) Open(ctx context.Context, tenantID, rowID uuid.UUID, field string, sealed []byte) ([]byte, error) {
	if len(sealed) < headerLen+16 || sealed[0] != formatV1 {
		return nil, ErrMalformed
	}
	dkID, _ := uuid.FromBytes(sealed[1:17])
	tk, err := s.tenant(ctx, tenantID, dkID)
	if err != nil {
		return nil, err
	}
	aead, ok := tk.aeads[dkID]
	if !ok {
		return nil, ErrUnknownDataKey
	}
	pt, err := aead.Open(nil, sealed[17:headerLen], sealed[headerLen:], associated(tenantID, rowID, field))
	if err != nil {
		return nil, ErrTampered
	}
	return pt, nil
}

// tenant returns the tenant's unwrapped keys, loading them when the cache has
// no current key or lacks want.
func (s *Sealer) tenant(ctx context.Context, tenantID, want uuid.UUID) (*tenantKeys, error) {
	s.mu.RLock()
	tk := s.cache[tenantID]
	s.mu.RUnlock()
	if tk != nil && ((want == uuid.Nil && tk.current != uuid.Nil) || (want != uuid.Nil && tk.aeads[want] != nil)) {
		return tk, nil
	}
	tk, err := s.load(ctx, tenantID, want == uuid.Nil)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.cache[tenantID] = tk
	s.mu.Unlock()
	return tk, nil
}

type keyRow struct {
	id       uuid.UUID
	masterID string
	wrapped  []byte
	current  bool
}

func (s *Sealer) load(ctx context.Context, tenantID uuid.UUID, create bool) (*tenantKeys, error) {
	var rows []keyRow
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		if rows, err = keyRows(ctx, tx, false); err != nil {
			return err
		}
		hasCurrent := false
		for _, r := range rows {
			hasCurrent = hasCurrent || r.current
		}
		if hasCurrent || !create {
			return nil
		}
		if err := s.insertDataKey(ctx, tx, tenantID); err != nil {
			return err
		}
		rows, err = keyRows(ctx, tx, false)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("seal: load data keys: %w", lsql.Translate(err))
	}
	tk := &tenantKeys{aeads: map[uuid.UUID]cipher.AEAD{}}
	for _, r := range rows {
		key, err := s.unwrap(tenantID, r)
		if err != nil {
			return nil, err
		}
		aead, err := newAEAD(key)
		if err != nil {
			return nil, fmt.Errorf("seal: data key %s: %w", r.id, err)
		}
		tk.aeads[r.id] = aead
		if r.current {
			tk.current = r.id
		}
	}
	if create && tk.current == uuid.Nil {
		return nil, errors.New("seal: tenant has no current data key")
	}
	return tk, nil
}

func keyRows(ctx context.Context, tx pgx.Tx, forUpdate bool) ([]keyRow, error) {
	q := "SELECT id, master_key_id, wrapped, current FROM tenant_data_keys"
	if forUpdate {
		q += " FOR UPDATE"
	}
	rows, err := tx.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (keyRow, error) {
		var r keyRow
		err := row.Scan(&r.id, &r.masterID, &r.wrapped, &r.current)
		return r, err
	})
}

// insertDataKey creates the tenant's current data key unless a concurrent
// caller already did (the partial unique index allows one current key).
func (s *Sealer) insertDataKey(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) error {
	dk := make([]byte, keyLen)
	if _, err := rand.Read(dk); err != nil {
		return fmt.Errorf("generate data key: %w", err)
	}
	id := uuid.New()
	wrapped, err := s.wrap(tenantID, id, s.keys.current, dk)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO tenant_data_keys (tenant_id, id, master_key_id, wrapped, current)
		VALUES ($1, $2, $3, $4, true) ON CONFLICT (tenant_id) WHERE current DO NOTHING`, tenantID, id, s.keys.current, wrapped)
	return err
}

func (s *Sealer) wrap(tenantID, dkID uuid.UUID, masterID string, dk []byte) ([]byte, error) {
	aead, err := newAEAD(s.keys.keys[masterID])
	if err != nil {
		return nil, fmt.Errorf("seal: master key %q: %w", masterID, err)
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return aead.Seal(nonce, nonce, dk, wrapAD(tenantID, dkID, masterID)), nil
}

func (s *Sealer) unwrap(tenantID uuid.UUID, r keyRow) ([]byte, error) {
	mkey, ok := s.keys.keys[r.masterID]
	if !ok {
		return nil, fmt.Errorf("%w (data key %s names master key id %q; configured: %s)", ErrUnknownMasterKey, r.id, r.masterID, strings.Join(s.keys.order, ", "))
	}
	aead, err := newAEAD(mkey)
	if err != nil {
		return nil, err
	}
	ns := aead.NonceSize()
	if len(r.wrapped) < ns+aead.Overhead() {
		return nil, fmt.Errorf("seal: data key %s: wrapped key is truncated", r.id)
	}
	dk, err := aead.Open(nil, r.wrapped[:ns], r.wrapped[ns:], wrapAD(tenantID, r.id, r.masterID))
	if err != nil {
		return nil, fmt.Errorf("seal: data key %s does not open with master key %q: the key material under that id differs from the one that wrapped it", r.id, r.masterID)
	}
	return dk, nil
}

// Rewrap re-wraps every data key of the tenant that is not under the current
// master key, and returns how many it re-wrapped. Secrets are untouched: the
// data keys themselves don't change. It is idempotent.
func (s *Sealer) Rewrap(ctx context.Context, tenantID uuid.UUID) (int, error) {
	n := 0
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := keyRows(ctx, tx, true)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if r.masterID == s.keys.current {
				continue
			}
			dk, err := s.unwrap(tenantID, r)
			if err != nil {
				return err
			}
			wrapped, err := s.wrap(tenantID, r.id, s.keys.current, dk)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE tenant_data_keys SET master_key_id = $1, wrapped = $2, rewrapped_at = now()
				WHERE tenant_id = $3 AND id = $4`, s.keys.current, wrapped, tenantID, r.id); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("seal: rewrap tenant %s: %w", tenantID, err)
	}
	return n, nil
}

// RewrapAll re-wraps the data keys of every tenant (see Rewrap) and returns
// the total re-wrapped.
func (s *Sealer) RewrapAll(ctx context.Context) (int, error) {
	ids, err := s.db.TenantIDs(ctx)
	if err != nil {
		return 0, fmt.Errorf("seal: list tenants: %w", err)
	}
	total := 0
	for _, id := range ids {
		n, err := s.Rewrap(ctx, id)
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}
