package web

import (
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/web/views"
)

// apiKeysModel builds the API keys page from the tenant's keys.
func apiKeysModel(f views.Frame, keys []tenants.APIKey) views.APIKeysPage {
	p := views.APIKeysPage{Frame: f, Role: string(tenants.RoleAdmin)}
	for _, k := range keys {
		row := views.APIKeyRow{ID: k.ID.String(), Name: k.Name, Role: string(k.Role), Prefix: k.Prefix,
			Created: formatTime(k.CreatedAt), LastUsed: "Never", Revoked: k.RevokedAt != nil}
		if k.LastUsedAt != nil {
			row.LastUsed = formatTime(*k.LastUsedAt)
		}
		p.Keys = append(p.Keys, row)
	}
	return p
}

func (s *Server) loadAPIKeys(r *http.Request, c consoleCtx) (views.APIKeysPage, []tenants.APIKey, error) {
	f, err := s.consoleFrame(r, c, "api-keys")
	if err != nil {
		return views.APIKeysPage{}, nil, err
	}
	keys, err := s.cfg.Tenants.APIKeys(r.Context(), c.Tenant.ID)
	if err != nil {
		return views.APIKeysPage{}, nil, err
	}
	return apiKeysModel(f, keys), keys, nil
}

func (s *Server) apiKeysPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	p, _, err := s.loadAPIKeys(r, c)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, views.APIKeys(p))
}

// createAPIKey makes a key and shows it once.
func (s *Server) createAPIKey(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	name, rawRole := r.PostFormValue("name"), r.PostFormValue("role")
	role, err := tenants.ParseRole(rawRole)
	var secret string
	if err == nil {
		secret, _, err = s.cfg.Tenants.CreateAPIKey(r.Context(), c.Tenant.ID, c.Account.ID, name, role)
	}
	p, _, lerr := s.loadAPIKeys(r, c)
	if lerr != nil {
		return lerr
	}
	if err != nil {
		errs, status, ok := formErrors(err, "name", "role")
		if !ok {
			return err
		}
		p.Name, p.Role, p.Errors = name, rawRole, errs
		return s.render(w, r, status, views.APIKeys(p))
	}
	p.NewKey = &views.Copyable{ID: "apikey-new", Label: "Your new API key", Value: secret, TestID: "apikey-new"}
	return s.render(w, r, http.StatusOK, views.APIKeys(p))
}

// revokeAPIKey revokes a key after its name was typed to confirm.
func (s *Server) revokeAPIKey(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	p, keys, err := s.loadAPIKeys(r, c)
	if err != nil {
		return err
	}
	p.RevokeID = r.PostFormValue("key_id")
	id, perr := uuid.Parse(p.RevokeID)
	var key *tenants.APIKey
	for i := range keys {
		if perr == nil && keys[i].ID == id && keys[i].RevokedAt == nil {
			key = &keys[i]
		}
	}
	switch {
	case key == nil:
		p.Errors = fieldError("", "that key doesn't exist or is already revoked; reload the page")
	case strings.TrimSpace(r.PostFormValue("confirm")) != key.Name:
		p.Errors = fieldError("confirm", "type the key's name exactly as shown to confirm")
	}
	if p.Errors != nil {
		return s.render(w, r, http.StatusUnprocessableEntity, views.APIKeys(p))
	}
	if err := s.cfg.Tenants.RevokeAPIKey(r.Context(), c.Tenant.ID, key.ID); err != nil {
		return err
	}
	return redirect(w, r, views.SectionHref(c.Tenant.Slug, "api-keys")+"?done=revoked")
}
