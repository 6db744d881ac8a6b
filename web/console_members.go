package web

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/web/views"
)

// membersModel builds the Members page from the member list.
func membersModel(f views.Frame, me uuid.UUID, ms []tenants.Member) views.MembersPage {
	p := views.MembersPage{Frame: f, InviteRole: string(tenants.RoleViewer)}
	for _, m := range ms {
		p.Members = append(p.Members, views.MemberRow{
			AccountID: m.AccountID.String(), Email: m.Email, Role: string(m.Role),
			Since: formatDate(m.CreatedAt), IsSelf: m.AccountID == me,
		})
	}
	return p
}

// loadMembers builds the Members page model for c.
func (s *Server) loadMembers(r *http.Request, c consoleCtx) (views.MembersPage, []tenants.Member, error) {
	f, err := s.consoleFrame(r, c, "members")
	if err != nil {
		return views.MembersPage{}, nil, err
	}
	ms, err := s.cfg.Tenants.Members(r.Context(), c.Tenant.ID)
	if err != nil {
		return views.MembersPage{}, nil, err
	}
	return membersModel(f, c.Account.ID, ms), ms, nil
}

func (s *Server) membersPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	p, _, err := s.loadMembers(r, c)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, views.Members(p))
}

// createInvite makes an invitation link and shows it once.
func (s *Server) createInvite(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	p, _, err := s.loadMembers(r, c)
	if err != nil {
		return err
	}
	p.InviteRole = r.PostFormValue("role")
	role, err := tenants.ParseRole(p.InviteRole)
	if err == nil {
		var tok string
		var inv tenants.Invite
		tok, inv, err = s.cfg.Tenants.CreateInvite(r.Context(), c.Tenant.ID, c.Account.ID, c.Role, role)
		if err == nil {
			p.InviteLink = &views.Copyable{ID: "invite-link", Label: "Invitation link (" + string(role) + ")",
				Value: strings.TrimRight(s.cfg.BaseURL.String(), "/") + "/invite/" + c.Tenant.Slug + "/" + url.PathEscape(tok), TestID: "invite-link"}
			p.InviteExpires = "on " + formatTime(inv.ExpiresAt)
			return s.render(w, r, http.StatusOK, views.Members(p))
		}
	}
	errs, status, ok := formErrors(err, "role")
	if !ok {
		return err
	}
	p.Errors = errs
	return s.render(w, r, status, views.Members(p))
}

// findMember looks the posted account_id up among the members.
func findMember(ms []tenants.Member, raw string) (tenants.Member, bool) {
	id, err := uuid.Parse(raw)
	if err != nil {
		return tenants.Member{}, false
	}
	for _, m := range ms {
		if m.AccountID == id {
			return m, true
		}
	}
	return tenants.Member{}, false
}

// setMemberRole changes a member's role (owners only).
func (s *Server) setMemberRole(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	p, ms, err := s.loadMembers(r, c)
	if err != nil {
		return err
	}
	m, found := findMember(ms, r.PostFormValue("account_id"))
	if !found {
		p.Errors = fieldError("", "that person is not a member of this tenant any more; reload the page")
		return s.render(w, r, http.StatusUnprocessableEntity, views.Members(p))
	}
	role, err := tenants.ParseRole(r.PostFormValue("role"))
	if err == nil {
		err = s.cfg.Tenants.SetMemberRole(r.Context(), c.Tenant.ID, m.AccountID, role)
	}
	if err != nil {
		errs, status, ok := formErrors(err)
		if !ok {
			return err
		}
		p.Errors = errs
		return s.render(w, r, status, views.Members(p))
	}
	return redirect(w, r, views.SectionHref(c.Tenant.Slug, "members")+"?done=role")
}

// removeMember removes a member after the owner typed their email.
func (s *Server) removeMember(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	p, ms, err := s.loadMembers(r, c)
	if err != nil {
		return err
	}
	p.RemoveID = r.PostFormValue("account_id")
	m, found := findMember(ms, p.RemoveID)
	switch {
	case !found:
		p.Errors = fieldError("", "that person is not a member of this tenant any more; reload the page")
	case !strings.EqualFold(strings.TrimSpace(r.PostFormValue("confirm")), m.Email):
		p.Errors = fieldError("confirm", "type the member's email exactly as shown to confirm")
	}
	if p.Errors != nil {
		return s.render(w, r, http.StatusUnprocessableEntity, views.Members(p))
	}
	if err := s.cfg.Tenants.RemoveMember(r.Context(), c.Tenant.ID, m.AccountID); err != nil {
		errs, status, ok := formErrors(err)
		if !ok {
			return err
		}
		p.Errors = errs
		return s.render(w, r, status, views.Members(p))
	}
	if m.AccountID == c.Account.ID {
		return redirect(w, r, "/console")
	}
	return redirect(w, r, views.SectionHref(c.Tenant.Slug, "members")+"?done=removed")
}

// errInviteUnusable is shown for an unknown tenant and a bad token alike,
// so an invitation URL reveals nothing about which tenants exist.
const errInviteUnusable = "This invitation has expired or was already used. Ask for a new one."

func (s *Server) inviteModel(r *http.Request) views.InvitePage {
	path := r.URL.EscapedPath()
	p := views.InvitePage{
		Head:       head(r, "Accept an invitation"),
		Slug:       r.PathValue("tenant"),
		Action:     path,
		SigninHref: "/signin?next=" + url.QueryEscape(path),
		SignupHref: "/signup?next=" + url.QueryEscape(path),
	}
	if st := pageStateFrom(r.Context()); st != nil && st.account != nil {
		p.AccountEmail = st.account.Email
	}
	return p
}

// invitePage is where an invitation link lands: sign in or up first, then
// accept. The token is not checked until acceptance (it is single use).
func (s *Server) invitePage(w http.ResponseWriter, r *http.Request) error {
	return s.render(w, r, http.StatusOK, views.Invite(s.inviteModel(r)))
}

// acceptInvite adds the signed-in account to the tenant.
func (s *Server) acceptInvite(w http.ResponseWriter, r *http.Request, acct tenants.Account) error {
	slug := r.PathValue("tenant")
	t, err := s.cfg.Tenants.TenantBySlug(r.Context(), slug)
	if err == nil {
		_, err = s.cfg.Tenants.AcceptInvite(r.Context(), t.ID, acct.ID, r.PathValue("token"))
	}
	if err != nil {
		if !errors.Is(err, tenants.ErrNotFound) && !errors.Is(err, tenants.ErrInvalid) {
			return err
		}
		p := s.inviteModel(r)
		p.Error = errInviteUnusable
		return s.render(w, r, http.StatusUnprocessableEntity, views.Invite(p))
	}
	return redirect(w, r, views.SectionHref(t.Slug, "overview")+"?done=joined")
}
