package tenants

import (
	"context"
	"crypto/subtle"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// APIKeyPrefix starts every tenant API key: lsk_<tenant id hex>_<secret>.
// The tenant id in the key lets the server find the tenant without a
// cross-tenant lookup; the secret is only ever stored hashed.
const APIKeyPrefix = "lsk_"

// APIKey describes a key (never its secret).
type APIKey struct {
	ID         uuid.UUID
	Name       string
	Role       Role
	Prefix     string
	CreatedAt  time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
}

// APIPrincipal is who an API request acts as.
type APIPrincipal struct {
	TenantID uuid.UUID
	KeyID    uuid.UUID
	Role     Role
}

// CreateAPIKey makes a key and returns its plaintext, shown once.
func (s *Service) CreateAPIKey(ctx context.Context, tenantID, by uuid.UUID, name string, role Role) (string, APIKey, error) {
	if err := ValidateName("name", name); err != nil {
		return "", APIKey{}, err
	}
	if role != RoleAdmin && role != RoleViewer {
		return "", APIKey{}, Invalid("role", "an API key is admin or viewer")
	}
	secret := randomSecret(32)
	key := APIKeyPrefix + strings.ReplaceAll(tenantID.String(), "-", "") + "_" + secret
	k := APIKey{ID: uuid.New(), Name: strings.TrimSpace(name), Role: role, Prefix: key[:len(APIKeyPrefix)+8] + "…" + secret[len(secret)-4:]}
	var byArg any
	if by != uuid.Nil {
		byArg = by
	}
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO api_keys (tenant_id, id, name, role, prefix, secret_hash, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING created_at`, tenantID, k.ID, k.Name, role, k.Prefix, hashToken(key), byArg).Scan(&k.CreatedAt)
	})
	return key, k, err
}

// APIKeys lists a tenant's keys, newest first.
func (s *Service) APIKeys(ctx context.Context, tenantID uuid.UUID) ([]APIKey, error) {
	var out []APIKey
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, name, role, prefix, created_at, last_used_at, revoked_at FROM api_keys
			WHERE tenant_id = $1 ORDER BY created_at DESC`, tenantID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (APIKey, error) {
			var k APIKey
			return k, r.Scan(&k.ID, &k.Name, &k.Role, &k.Prefix, &k.CreatedAt, &k.LastUsedAt, &k.RevokedAt)
		})
		return err
	})
	return out, err
}

// RevokeAPIKey revokes a key at once.
func (s *Service) RevokeAPIKey(ctx context.Context, tenantID, keyID uuid.UUID) error {
	return s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL", tenantID, keyID, s.now())
		if err == nil && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	})
}

// AuthenticateAPIKey resolves a presented key. Any malformed, unknown or
// revoked key gives ErrNotFound; callers answer 401 without saying which.
func (s *Service) AuthenticateAPIKey(ctx context.Context, key string) (APIPrincipal, error) {
	rest, ok := strings.CutPrefix(key, APIKeyPrefix)
	if !ok || len(key) > 200 {
		return APIPrincipal{}, ErrNotFound
	}
	hexID, _, ok := strings.Cut(rest, "_")
	tenantID, err := uuid.Parse(hexID)
	if !ok || err != nil || len(hexID) != 32 || tenantID == uuid.Nil {
		return APIPrincipal{}, ErrNotFound
	}
	p := APIPrincipal{TenantID: tenantID}
	var stored []byte
	var lastUsed *time.Time
	err = s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT id, role, secret_hash, last_used_at FROM api_keys
			WHERE tenant_id = $1 AND secret_hash = $2 AND revoked_at IS NULL`, tenantID, hashToken(key)).Scan(&p.KeyID, &p.Role, &stored, &lastUsed); err != nil {
			return err
		}
		if lastUsed == nil || s.now().Sub(*lastUsed) > time.Minute {
			_, err := tx.Exec(ctx, "UPDATE api_keys SET last_used_at = $3 WHERE tenant_id = $1 AND id = $2", tenantID, p.KeyID, s.now())
			return err
		}
		return nil
	})
	if err != nil {
		return APIPrincipal{}, err
	}
	if subtle.ConstantTimeCompare(stored, hashToken(key)) != 1 {
		return APIPrincipal{}, ErrNotFound
	}
	return p, nil
}
