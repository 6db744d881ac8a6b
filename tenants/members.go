package tenants

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// inviteTTL is how long an invitation link works.
const inviteTTL = 7 * 24 * time.Hour

// Member is an account in a tenant.
type Member struct {
	AccountID uuid.UUID
	Email     string
	Role      Role
	CreatedAt time.Time
}

// Invite is a pending invitation (the token itself is only returned once).
type Invite struct {
	ID        uuid.UUID
	Role      Role
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Members lists a tenant's members.
func (s *Service) Members(ctx context.Context, tenantID uuid.UUID) ([]Member, error) {
	var out []Member
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT m.account_id, a.email, m.role, m.created_at FROM tenant_members m
			JOIN accounts a ON a.id = m.account_id WHERE m.tenant_id = $1 ORDER BY a.email`, tenantID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Member, error) {
			var m Member
			return m, r.Scan(&m.AccountID, &m.Email, &m.Role, &m.CreatedAt)
		})
		return err
	})
	return out, err
}

// CreateInvite makes an invitation link token for role. Only owners may
// invite owners (checked by the caller's role in the web layer via
// RequireRole; the domain refuses an owner invite from a non-owner too).
func (s *Service) CreateInvite(ctx context.Context, tenantID, by uuid.UUID, byRole Role, role Role) (string, Invite, error) {
	if !byRole.Can(RoleOwner) {
		return "", Invite{}, &Error{Kind: ErrForbidden, Message: "only owners can invite members"}
	}
	tok := "inv_" + randomSecret(24)
	inv := Invite{ID: uuid.New(), Role: role, CreatedAt: s.now(), ExpiresAt: s.now().Add(inviteTTL)}
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO tenant_invites (tenant_id, id, token_hash, role, created_by, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, tenantID, inv.ID, hashToken(tok), role, by, inv.CreatedAt, inv.ExpiresAt)
		return err
	})
	return tok, inv, err
}

// AcceptInvite makes the account a member with the invitation's role. The
// token works once and until it expires.
func (s *Service) AcceptInvite(ctx context.Context, tenantID, accountID uuid.UUID, token string) (Role, error) {
	var role Role
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE tenant_invites SET accepted_at = $2, accepted_by = $3
			WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > $2 RETURNING role`,
			hashToken(token), s.now(), accountID).Scan(&role)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO tenant_members (tenant_id, account_id, role) VALUES ($1, $2, $3)
			ON CONFLICT (tenant_id, account_id) DO NOTHING`, tenantID, accountID, role)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return "", &Error{Kind: ErrInvalid, Field: "token", Message: "this invitation has expired or was already used; ask for a new one"}
	}
	return role, err
}

// SetMemberRole changes a member's role; the last owner can't be demoted.
func (s *Service) SetMemberRole(ctx context.Context, tenantID, accountID uuid.UUID, role Role) error {
	return s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		if err := guardLastOwner(ctx, tx, tenantID, accountID, role); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, "UPDATE tenant_members SET role = $3 WHERE tenant_id = $1 AND account_id = $2", tenantID, accountID, role)
		if err == nil && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	})
}

// RemoveMember removes a member; the last owner can't be removed.
func (s *Service) RemoveMember(ctx context.Context, tenantID, accountID uuid.UUID) error {
	return s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		if err := guardLastOwner(ctx, tx, tenantID, accountID, ""); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, "DELETE FROM tenant_members WHERE tenant_id = $1 AND account_id = $2", tenantID, accountID)
		if err == nil && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	})
}

func guardLastOwner(ctx context.Context, tx pgx.Tx, tenantID, accountID uuid.UUID, newRole Role) error {
	if newRole == RoleOwner {
		return nil
	}
	var others int
	var isOwner bool
	err := tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE role = 'owner' AND account_id <> $2),
		COALESCE(bool_or(role = 'owner' AND account_id = $2), false)
		FROM (SELECT role, account_id FROM tenant_members WHERE tenant_id = $1 FOR UPDATE) m`, tenantID, accountID).Scan(&others, &isOwner)
	if err != nil {
		return err
	}
	if isOwner && others == 0 {
		return &Error{Kind: ErrConflict, Message: "a tenant needs at least one owner; make someone else owner first"}
	}
	return nil
}
