package tenants_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/tenants"
)

// uniqueEmail keeps parallel tests apart in the shared accounts table.
func uniqueEmail(prefix string) string {
	return prefix + "-" + strings.ReplaceAll(uuid.NewString()[:8], "-", "") + "@example.com"
}

func uniqueSlug(prefix string) string { return prefix + "-" + uuid.NewString()[:8] }

type acctBundle struct {
	ctx   context.Context
	svc   *tenants.Service
	owner tenants.Account
	t     tenants.Tenant
}

func setupTenant(t *testing.T) *acctBundle {
	t.Helper()
	ctx := context.Background()
	svc := newService(t, true)
	owner, err := svc.SignUp(ctx, uniqueEmail("owner"), "correct horse battery")
	require.NoError(t, err)
	tn, err := svc.CreateTenant(ctx, owner.ID, uniqueSlug("acct"), "Tenant")
	require.NoError(t, err)
	return &acctBundle{ctx: ctx, svc: svc, owner: owner, t: tn}
}

func TestSignUpSignIn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t, true)
	email := uniqueEmail("new-user")

	_, err := svc.SignUp(ctx, email, "short")
	require.ErrorIs(t, err, tenants.ErrInvalid)
	require.ErrorContains(t, err, "at least 12")
	_, err = svc.SignUp(ctx, "not an email", "long enough password")
	requireField(t, err, "email")

	a, err := svc.SignUp(ctx, strings.ToUpper(email), "long enough password")
	require.NoError(t, err)
	require.Equal(t, email, a.Email, "emails are stored lower-case")
	_, err = svc.SignUp(ctx, email, "another long password")
	require.ErrorIs(t, err, tenants.ErrConflict)

	got, err := svc.SignIn(ctx, email, "long enough password")
	require.NoError(t, err)
	require.Equal(t, a.ID, got.ID)
	_, err = svc.SignIn(ctx, email, "wrong password!!")
	require.ErrorIs(t, err, tenants.ErrBadCredentials)
	_, err = svc.SignIn(ctx, uniqueEmail("nobody"), "long enough password")
	require.ErrorIs(t, err, tenants.ErrBadCredentials, "unknown and wrong look the same")
}

func TestSessions(t *testing.T) {
	t.Parallel()
	b := setupTenant(t)
	tok1, err := b.svc.CreateSession(b.ctx, b.owner.ID)
	require.NoError(t, err)
	tok2, err := b.svc.CreateSession(b.ctx, b.owner.ID)
	require.NoError(t, err)
	require.NotEqual(t, tok1, tok2, "a new session id at every sign-in")

	a, err := b.svc.SessionAccount(b.ctx, tok1)
	require.NoError(t, err)
	require.Equal(t, b.owner.ID, a.ID)

	require.NoError(t, b.svc.DeleteSession(b.ctx, tok1))
	_, err = b.svc.SessionAccount(b.ctx, tok1)
	require.ErrorIs(t, err, tenants.ErrNotFound)
	_, err = b.svc.SessionAccount(b.ctx, "made-up")
	require.ErrorIs(t, err, tenants.ErrNotFound)
}

func TestSetPasswordTokenOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t, true)
	a, err := svc.EnsureAccount(ctx, uniqueEmail("bootstrap"))
	require.NoError(t, err)
	require.False(t, a.HasPassword)
	_, err = svc.SignIn(ctx, a.Email, "anything at all")
	require.ErrorIs(t, err, tenants.ErrBadCredentials, "no password yet: no sign-in")

	tok, err := svc.SetPasswordToken(ctx, a.ID)
	require.NoError(t, err)
	_, err = svc.SetPasswordWithToken(ctx, tok, "a brand new password")
	require.NoError(t, err)
	_, err = svc.SetPasswordWithToken(ctx, tok, "a second new password")
	requireField(t, err, "token")
	_, err = svc.SignIn(ctx, a.Email, "a brand new password")
	require.NoError(t, err)
}

func TestSlugRules(t *testing.T) {
	t.Parallel()
	for slug, ok := range map[string]bool{
		"acme": true, "acme-corp": true, "a1b": true,
		"ab": false, "-acme": false, "acme-": false, "Acme": false, "ac--me": false, "api": false,
		"console": false, strings.Repeat("a", 41): false, "acme_corp": false, "<script>": false,
	} {
		err := tenants.ValidateSlug(slug)
		if ok {
			require.NoError(t, err, slug)
		} else {
			requireField(t, err, "slug")
		}
	}
}

func TestMembersAndInvites(t *testing.T) {
	t.Parallel()
	b := setupTenant(t)
	invitee, err := b.svc.SignUp(b.ctx, uniqueEmail("invitee"), "long enough password")
	require.NoError(t, err)

	_, _, err = b.svc.CreateInvite(b.ctx, b.t.ID, invitee.ID, tenants.RoleAdmin, tenants.RoleViewer)
	require.ErrorIs(t, err, tenants.ErrForbidden, "only owners invite")

	tok, _, err := b.svc.CreateInvite(b.ctx, b.t.ID, b.owner.ID, tenants.RoleOwner, tenants.RoleViewer)
	require.NoError(t, err)
	role, err := b.svc.AcceptInvite(b.ctx, b.t.ID, invitee.ID, tok)
	require.NoError(t, err)
	require.Equal(t, tenants.RoleViewer, role)
	_, err = b.svc.AcceptInvite(b.ctx, b.t.ID, invitee.ID, tok)
	requireField(t, err, "token")

	got, err := b.svc.MemberRole(b.ctx, b.t.ID, invitee.ID)
	require.NoError(t, err)
	require.Equal(t, tenants.RoleViewer, got)
	ms, err := b.svc.Memberships(b.ctx, invitee.ID)
	require.NoError(t, err)
	require.Len(t, ms, 1)
	require.Equal(t, b.t.ID, ms[0].Tenant.ID)

	// The last owner can't leave or be demoted.
	require.ErrorIs(t, b.svc.SetMemberRole(b.ctx, b.t.ID, b.owner.ID, tenants.RoleAdmin), tenants.ErrConflict)
	require.ErrorIs(t, b.svc.RemoveMember(b.ctx, b.t.ID, b.owner.ID), tenants.ErrConflict)
	require.NoError(t, b.svc.SetMemberRole(b.ctx, b.t.ID, invitee.ID, tenants.RoleOwner))
	require.NoError(t, b.svc.SetMemberRole(b.ctx, b.t.ID, b.owner.ID, tenants.RoleAdmin))
}

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	b := setupTenant(t)
	key, k, err := b.svc.CreateAPIKey(b.ctx, b.t.ID, b.owner.ID, "ci", tenants.RoleAdmin)
	require.NoError(t, err)
	require.NotContains(t, k.Prefix, key[20:40], "the listing never holds the secret")
	p, err := b.svc.AuthenticateAPIKey(b.ctx, key)
	require.NoError(t, err)
	require.Equal(t, b.t.ID, p.TenantID)
	require.Equal(t, tenants.RoleAdmin, p.Role)

	for _, bad := range []string{"", "lsk_", key + "x", key[:len(key)-1], "lsk_" + strings.Repeat("0", 32) + "_abc", strings.Repeat("a", 500)} {
		_, err := b.svc.AuthenticateAPIKey(b.ctx, bad)
		require.ErrorIs(t, err, tenants.ErrNotFound, bad)
	}
	require.NoError(t, b.svc.RevokeAPIKey(b.ctx, b.t.ID, k.ID))
	_, err = b.svc.AuthenticateAPIKey(b.ctx, key)
	require.ErrorIs(t, err, tenants.ErrNotFound, "revoked")
}

// TestTwoTenantIsolation: every tenant-scoped method refuses tenant B's
// objects when called for tenant A.
func TestTwoTenantIsolation(t *testing.T) {
	t.Parallel()
	a := setupTenant(t)
	b := setupTenant(t)
	ctx := a.ctx
	svc := a.svc

	// B's API key can't be revoked through A, and A's listing doesn't show it.
	_, kb, err := svc.CreateAPIKey(ctx, b.t.ID, b.owner.ID, "b key", tenants.RoleAdmin)
	require.NoError(t, err)
	require.ErrorIs(t, svc.RevokeAPIKey(ctx, a.t.ID, kb.ID), tenants.ErrNotFound)
	keys, err := svc.APIKeys(ctx, a.t.ID)
	require.NoError(t, err)
	for _, k := range keys {
		require.NotEqual(t, kb.ID, k.ID)
	}
	// B's owner is not a member of A.
	_, err = svc.MemberRole(ctx, a.t.ID, b.owner.ID)
	require.ErrorIs(t, err, tenants.ErrNotFound)
	require.ErrorIs(t, svc.SetMemberRole(ctx, a.t.ID, b.owner.ID, tenants.RoleViewer), tenants.ErrNotFound)
	require.ErrorIs(t, svc.RemoveMember(ctx, a.t.ID, b.owner.ID), tenants.ErrNotFound)
	members, err := svc.Members(ctx, a.t.ID)
	require.NoError(t, err)
	require.Len(t, members, 1)
	// An invite made for B doesn't work at A.
	tok, _, err := svc.CreateInvite(ctx, b.t.ID, b.owner.ID, tenants.RoleOwner, tenants.RoleAdmin)
	require.NoError(t, err)
	_, err = svc.AcceptInvite(ctx, a.t.ID, a.owner.ID, tok)
	requireField(t, err, "token")
	// Memberships of A's owner list only A.
	ms, err := svc.Memberships(ctx, a.owner.ID)
	require.NoError(t, err)
	require.Len(t, ms, 1)
	require.Equal(t, a.t.ID, ms[0].Tenant.ID)
}

func requireField(t *testing.T, err error, field string) {
	t.Helper()
	var pe *tenants.Error
	require.ErrorAs(t, err, &pe)
	require.Equal(t, field, pe.Field, pe.Message)
	require.NotEmpty(t, pe.Message)
}
