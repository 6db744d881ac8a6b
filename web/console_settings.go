package web

import (
	"net/http"

	"github.com/locksmithhq/locksmith/web/views"
)

func (s *Server) settingsModel(r *http.Request, c consoleCtx) (views.SettingsPage, error) {
	f, err := s.consoleFrame(r, c, "settings")
	if err != nil {
		return views.SettingsPage{}, err
	}
	return views.SettingsPage{Frame: f, Name: c.Tenant.Name, TenantID: c.Tenant.ID.String(), Created: formatTime(c.Tenant.CreatedAt)}, nil
}

func (s *Server) settingsPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	p, err := s.settingsModel(r, c)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, views.Settings(p))
}

// renameTenant changes the tenant's display name.
func (s *Server) renameTenant(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	name := r.PostFormValue("name")
	if err := s.cfg.Tenants.RenameTenant(r.Context(), c.Tenant.ID, name); err != nil {
		errs, status, ok := formErrors(err, "name")
		if !ok {
			return err
		}
		p, perr := s.settingsModel(r, c)
		if perr != nil {
			return perr
		}
		p.Name, p.Errors = name, errs
		return s.render(w, r, status, views.Settings(p))
	}
	return redirect(w, r, views.SectionHref(c.Tenant.Slug, "settings")+"?done=renamed")
}
