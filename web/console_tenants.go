package web

import (
	"net/http"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/web/views"
)

// tenantsPageModel builds /console's model from the account's memberships.
func tenantsPageModel(r *http.Request, acct tenants.Account, ms []tenants.Membership) views.TenantsPage {
	p := views.TenantsPage{Head: head(r, "Your tenants"), AccountEmail: acct.Email}
	for _, m := range ms {
		p.Tenants = append(p.Tenants, views.TenantRef{Slug: m.Tenant.Slug, Name: m.Tenant.Name, Role: string(m.Role)})
	}
	return p
}

// tenantsPage lists the account's tenants, with the form that creates one.
func (s *Server) tenantsPage(w http.ResponseWriter, r *http.Request, acct tenants.Account) error {
	ms, err := s.cfg.Tenants.Memberships(r.Context(), acct.ID)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, views.Tenants(tenantsPageModel(r, acct, ms)))
}

// createTenant creates a tenant owned by the account and opens it.
func (s *Server) createTenant(w http.ResponseWriter, r *http.Request, acct tenants.Account) error {
	if err := parseForm(r); err != nil {
		return err
	}
	slug, name := r.PostFormValue("slug"), r.PostFormValue("name")
	t, err := s.cfg.Tenants.CreateTenant(r.Context(), acct.ID, slug, name)
	if err != nil {
		errs, status, ok := formErrors(err, "slug", "name")
		if !ok {
			return err
		}
		ms, lerr := s.cfg.Tenants.Memberships(r.Context(), acct.ID)
		if lerr != nil {
			return lerr
		}
		p := tenantsPageModel(r, acct, ms)
		p.Slug, p.Name, p.Errors = slug, name, errs
		return s.render(w, r, status, views.Tenants(p))
	}
	return redirect(w, r, views.SectionHref(t.Slug, "overview")+"?done=created")
}
