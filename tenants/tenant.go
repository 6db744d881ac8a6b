package tenants

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Role is a member's role in a tenant: viewers read, admins change, owners
// also manage members and billing.
type Role string

// The roles, from least to most powerful.
const (
	RoleViewer Role = "viewer"
	RoleAdmin  Role = "admin"
	RoleOwner  Role = "owner"
)

// Can reports whether r is at least need.
func (r Role) Can(need Role) bool { return rank(r) >= rank(need) && rank(need) > 0 }

func rank(r Role) int {
	switch r {
	case RoleViewer:
		return 1
	case RoleAdmin:
		return 2
	case RoleOwner:
		return 3
	}
	return 0
}

// ParseRole validates a role name.
func ParseRole(s string) (Role, error) {
	r := Role(strings.TrimSpace(s))
	if rank(r) == 0 {
		return "", Invalid("role", "the role must be owner, admin or viewer")
	}
	return r, nil
}

// Tenant is a customer organisation.
type Tenant struct {
	ID        uuid.UUID
	Slug      string
	Name      string
	CreatedAt time.Time
}

// Membership is an account's role in a tenant.
type Membership struct {
	Tenant Tenant
	Role   Role
}

var slugRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$`)

// reservedSlugs can't be tenant slugs: they collide with routes, look
// official, or invite confusion.
var reservedSlugs = map[string]bool{
	"admin": true, "api": true, "app": true, "www": true, "static": true, "assets": true, "console": true,
	"login": true, "signin": true, "signup": true, "signout": true, "logout": true, "auth": true, "oauth": true,
	"mcp": true, "well-known": true, "healthz": true, "readyz": true, "metrics": true, "locksmith": true,
	"support": true, "help": true, "docs": true, "status": true, "billing": true, "settings": true, "new": true,
	"root": true, "system": true, "internal": true, "public": true, "test": true, "null": true, "undefined": true,
}

// ValidateSlug returns a user-facing error if s is not an acceptable slug.
func ValidateSlug(s string) error {
	switch {
	case len(s) < 3 || len(s) > 40:
		return Invalid("slug", "the slug must be 3 to 40 characters long")
	case !slugRE.MatchString(s) || strings.Contains(s, "--"):
		return Invalid("slug", "use lowercase letters, digits and single hyphens, starting and ending with a letter or digit")
	case reservedSlugs[s]:
		return Invalid("slug", "“"+s+"” is reserved; choose another slug")
	}
	return nil
}

// ValidateName returns a user-facing error for an empty or overlong name.
func ValidateName(field, s string) error {
	n := len([]rune(strings.TrimSpace(s)))
	switch {
	case n == 0:
		return Invalid(field, "enter a name")
	case n > 200:
		return Invalid(field, "use at most 200 characters")
	}
	return nil
}

// CreateTenant creates a tenant with ownerID as its owner.
func (s *Service) CreateTenant(ctx context.Context, ownerID uuid.UUID, slug, name string) (Tenant, error) {
	slug = strings.TrimSpace(slug)
	if err := ValidateSlug(slug); err != nil {
		return Tenant{}, err
	}
	if err := ValidateName("name", name); err != nil {
		return Tenant{}, err
	}
	t := Tenant{ID: uuid.New()}
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $3) RETURNING slug, name, created_at`,
			t.ID, slug, strings.TrimSpace(name)).Scan(&t.Slug, &t.Name, &t.CreatedAt)
	})
	if err := translate(err); err != nil {
		if errors.Is(err, ErrConflict) {
			return Tenant{}, &Error{Kind: ErrConflict, Field: "slug", Message: "that slug is taken; choose another"}
		}
		return Tenant{}, err
	}
	err = s.inTenant(ctx, t.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO tenant_members (tenant_id, account_id, role) VALUES ($1, $2, 'owner')", t.ID, ownerID)
		return err
	})
	return t, err
}

// TenantBySlug resolves a tenant from a URL.
func (s *Service) TenantBySlug(ctx context.Context, slug string) (Tenant, error) {
	if !slugRE.MatchString(slug) {
		return Tenant{}, ErrNotFound
	}
	var t Tenant
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT id, slug, name, created_at FROM tenants WHERE slug = $1", slug).Scan(&t.ID, &t.Slug, &t.Name, &t.CreatedAt)
	})
	return t, translate(err)
}

// TenantByID returns a tenant.
func (s *Service) TenantByID(ctx context.Context, id uuid.UUID) (Tenant, error) {
	var t Tenant
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT id, slug, name, created_at FROM tenants WHERE id = $1", id).Scan(&t.ID, &t.Slug, &t.Name, &t.CreatedAt)
	})
	return t, translate(err)
}

// RenameTenant changes a tenant's display name.
func (s *Service) RenameTenant(ctx context.Context, id uuid.UUID, name string) error {
	if err := ValidateName("name", name); err != nil {
		return err
	}
	return translate(s.db.InTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "UPDATE tenants SET name = $2 WHERE id = $1", id, strings.TrimSpace(name))
		if err == nil && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	}))
}

// Memberships lists the tenants an account belongs to, by name.
func (s *Service) Memberships(ctx context.Context, accountID uuid.UUID) ([]Membership, error) {
	var out []Membership
	err := s.db.InAccount(ctx, accountID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT t.id, t.slug, t.name, t.created_at, m.role FROM tenant_members m
			JOIN tenants t ON t.id = m.tenant_id WHERE m.account_id = $1 ORDER BY lower(t.name), t.slug`, accountID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Membership, error) {
			var m Membership
			err := r.Scan(&m.Tenant.ID, &m.Tenant.Slug, &m.Tenant.Name, &m.Tenant.CreatedAt, &m.Role)
			return m, err
		})
		return err
	})
	return out, translate(err)
}

// MemberRole returns the account's role in the tenant, or ErrNotFound if it
// is not a member (the tenant is then reported as not found).
func (s *Service) MemberRole(ctx context.Context, tenantID, accountID uuid.UUID) (Role, error) {
	var r Role
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT role FROM tenant_members WHERE tenant_id = $1 AND account_id = $2", tenantID, accountID).Scan(&r)
	})
	return r, err
}
