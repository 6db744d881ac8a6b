package web

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/web/views"
)

// The Upstreams pages.
//
//	GET  /console/t/{tenant}/upstreams                 the list
//	GET  /console/t/{tenant}/upstreams/new[?preset=p]  the add form, prefilled from a preset
//	POST /console/t/{tenant}/upstreams                 create
//	POST /console/t/{tenant}/upstreams/discover        RFC 8414 discovery into the add form
//	GET  /console/t/{tenant}/upstreams/{id}            the edit form
//	POST /console/t/{tenant}/upstreams/{id}            update
//	POST /console/t/{tenant}/upstreams/{id}/discover   discovery into the edit form
//	POST /console/t/{tenant}/upstreams/{id}/delete     delete with its tools (typed slug)

var upstreamFields = []fieldLabel{
	{"name", "upstream-name", "Name"},
	{"slug", "upstream-slug", "Slug"},
	{"kind", "upstream-kind", "Kind"},
	{"base_url", "upstream-base-url", "Base URL"},
	{"auth_mode", "upstream-auth-mode", "How users grant access"},
	{"preset", "upstream-presets", "Preset"},
	{"issuer", "upstream-issuer", "Authorization server issuer"},
	{"authorize_url", "upstream-authorize-url", "Authorization endpoint"},
	{"token_url", "upstream-token-url", "Token endpoint"},
	{"revocation_url", "upstream-revocation-url", "Revocation endpoint"},
	{"client_id", "upstream-client-id", "Client ID"},
	{"client_secret", "upstream-client-secret", "Client secret"},
	{"scopes_offered", "upstream-scopes", "Scopes offered"},
	{"revoke_after_use", "upstream-revoke-after-use", "Revoke short-lived tokens after each call"},
	{"exchange_variant", "upstream-exchange-variant", "Exchange variant"},
	{"exchange_audience", "upstream-exchange-audience", "Audience"},
	{"resource", "upstream-resource", "Resource indicator"},
	{"scope_param", "upstream-scope-param", "Scope parameter"},
	{"auth_params", "upstream-auth-params", "Extra authorization parameters"},
}

// upstreamsHref is the upstreams list of a tenant.
func upstreamsHref(slug string) string { return views.SectionHref(slug, "upstreams") }

// upstreamHref is one upstream's edit page.
func upstreamHref(slug string, id uuid.UUID) string { return upstreamsHref(slug) + "/" + id.String() }

// upstreamsModel builds the list; tools are counted per upstream.
func upstreamsModel(f views.Frame, ups []tenants.Upstream, tools []tenants.Tool) views.UpstreamsPage {
	p := views.UpstreamsPage{Frame: f, NewHref: upstreamsHref(f.Tenant.Slug) + "/new"}
	for _, u := range ups {
		n := 0
		for _, t := range tools {
			if t.UpstreamID == u.ID {
				n++
			}
		}
		p.Rows = append(p.Rows, views.UpstreamRow{
			Name: u.Name, Slug: u.Slug, Kind: kindLabel(u.Kind), AuthMode: authModeLabel(u.AuthMode),
			BaseURL: u.BaseURL, Tools: n, Href: upstreamHref(f.Tenant.Slug, u.ID),
		})
	}
	return p
}

func kindLabel(k string) string {
	if k == tenants.UpstreamMCP {
		return "MCP server"
	}
	return "REST"
}

func authModeLabel(m string) string {
	switch m {
	case tenants.AuthOAuth2:
		return "OAuth 2.0 consent"
	case tenants.AuthTokenExchange:
		return "Token exchange"
	case tenants.AuthNone:
		return "None"
	}
	return m
}

func (s *Server) upstreamsPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	f, err := s.registrationFrame(r, c, "upstreams")
	if err != nil {
		return err
	}
	ups, err := s.cfg.Tenants.Upstreams(r.Context(), c.Tenant.ID)
	if err != nil {
		return err
	}
	tools, err := s.cfg.Tenants.Tools(r.Context(), c.Tenant.ID)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, views.Upstreams(upstreamsModel(f, ups, tools)))
}

// upstreamFormFrom is the form of a stored upstream.
func upstreamFormFrom(u tenants.Upstream) views.UpstreamForm {
	return views.UpstreamForm{
		Preset: u.Preset, Name: u.Name, Slug: u.Slug, Kind: u.Kind, BaseURL: u.BaseURL, AuthMode: u.AuthMode,
		Issuer: u.Issuer, AuthorizeURL: u.AuthorizeURL, TokenURL: u.TokenURL, RevocationURL: u.RevocationURL,
		ClientID: u.ClientID, HasClientSecret: u.HasClientSecret, Scopes: strings.Join(u.ScopesOffered, " "),
		PKCE: u.PKCE, RefreshNarrows: u.RefreshNarrows, RevokeAfterUse: u.RevokeAfterUse, Resource: u.Resource,
		ExchangeVariant: u.ExchangeVariant, ExchangeAudience: u.ExchangeAudience, ScopeParam: u.ScopeParam,
		AuthParams: formatAuthParams(u.AuthParams),
	}
}

// presetUpstreamForm is the add form prefilled from a preset ("" or
// custom: an empty OAuth 2.0 REST upstream with PKCE).
func presetUpstreamForm(name string) (views.UpstreamForm, tenants.UpstreamPreset, bool) {
	p, ok := tenants.LookupUpstreamPreset(name)
	if !ok {
		return views.UpstreamForm{Preset: tenants.UpstreamPresetCustom, Kind: tenants.UpstreamREST, AuthMode: tenants.AuthOAuth2,
			PKCE: true, ExchangeVariant: tenants.ExchangeRFC8693, ScopeParam: "scope"}, tenants.UpstreamPreset{}, false
	}
	in := p.Input()
	return views.UpstreamForm{
		Preset: p.Name, Name: p.Label, Slug: p.Name, Kind: in.Kind, BaseURL: in.BaseURL, AuthMode: in.AuthMode,
		Issuer: in.Issuer, AuthorizeURL: in.AuthorizeURL, TokenURL: in.TokenURL, RevocationURL: in.RevocationURL,
		Scopes: strings.Join(in.ScopesOffered, " "), PKCE: in.PKCE, RefreshNarrows: in.RefreshNarrows,
		ExchangeVariant: tenants.ExchangeRFC8693, ScopeParam: orString(in.ScopeParam, "scope"),
		AuthParams: formatAuthParams(in.AuthParams),
	}, p, true
}

func orString(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// formatAuthParams writes parameters one name=value per line, sorted.
func formatAuthParams(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + m[k] + "\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// parseAuthParams reads one name=value per line; blank lines are skipped.
func parseAuthParams(raw string) (map[string]string, error) {
	out := map[string]string{}
	for _, line := range strings.Split(raw, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, tenants.Invalid("auth_params", "write each parameter as name=value on its own line (“"+truncateText(line, 40)+"” has no =)")
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

// truncateText shortens s to n runes for messages.
func truncateText(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

// readUpstreamForm reads the posted upstream form: the values to show
// again and the domain input (never the secret in the former).
func readUpstreamForm(r *http.Request) (views.UpstreamForm, tenants.UpstreamInput, error) {
	v := func(k string) string { return r.PostFormValue(k) }
	on := func(k string) bool { return v(k) != "" }
	f := views.UpstreamForm{
		Preset: v("preset"), Name: v("name"), Slug: strings.TrimSpace(v("slug")), Kind: v("kind"),
		BaseURL: strings.TrimSpace(v("base_url")), AuthMode: v("auth_mode"), Issuer: strings.TrimSpace(v("issuer")),
		AuthorizeURL: strings.TrimSpace(v("authorize_url")), TokenURL: strings.TrimSpace(v("token_url")),
		RevocationURL: strings.TrimSpace(v("revocation_url")), ClientID: v("client_id"), Scopes: v("scopes_offered"),
		PKCE: on("pkce"), RefreshNarrows: on("refresh_narrows"), RevokeAfterUse: on("revoke_after_use"),
		Resource: v("resource"), ExchangeVariant: v("exchange_variant"), ExchangeAudience: v("exchange_audience"),
		ScopeParam: v("scope_param"), AuthParams: v("auth_params"),
	}
	in := tenants.UpstreamInput{
		Slug: f.Slug, Name: f.Name, Kind: f.Kind, BaseURL: f.BaseURL, AuthMode: f.AuthMode, Preset: f.Preset,
		Issuer: f.Issuer, AuthorizeURL: f.AuthorizeURL, TokenURL: f.TokenURL, RevocationURL: f.RevocationURL,
		ClientID: f.ClientID, ClientSecret: postedSecret(r), ScopesOffered: strings.Fields(f.Scopes),
		PKCE: f.PKCE, RefreshNarrows: f.RefreshNarrows, RevokeAfterUse: f.RevokeAfterUse, Resource: f.Resource,
		ExchangeVariant: f.ExchangeVariant, ExchangeAudience: f.ExchangeAudience, ScopeParam: f.ScopeParam,
	}
	params, err := parseAuthParams(f.AuthParams)
	in.AuthParams = params
	return f, in, err
}

// upstreamFormModel builds the add (existing nil) or edit page around form.
func (s *Server) upstreamFormModel(r *http.Request, c consoleCtx, form views.UpstreamForm, existing *tenants.Upstream) (views.UpstreamFormPage, error) {
	f, err := s.registrationFrame(r, c, "upstreams")
	if err != nil {
		return views.UpstreamFormPage{}, err
	}
	slug := c.Tenant.Slug
	p := views.UpstreamFormPage{
		Frame: f, IsNew: existing == nil, Form: form,
		RedirectURI: views.Copyable{ID: "upstream-redirect-uri", Label: "Redirect URI", Value: s.cfg.Tenants.RedirectURI(), TestID: "upstream-redirect-uri",
			Help: "Register this as the redirect (callback) URL of the OAuth app you create at the provider."},
		Discover: views.CheckPanel{TestID: "upstream-discover"},
	}
	if existing == nil {
		p.Title = "Add an upstream"
		p.Action = upstreamsHref(slug)
		p.DiscoverAction = upstreamsHref(slug) + "/discover"
		for _, pr := range tenants.UpstreamPresets() {
			p.Presets = append(p.Presets, views.PresetLink{Name: pr.Name, Label: pr.Label,
				Href: upstreamsHref(slug) + "/new?preset=" + url.QueryEscape(pr.Name), Current: pr.Name == form.Preset})
		}
		p.Presets = append(p.Presets, views.PresetLink{Name: tenants.UpstreamPresetCustom, Label: "Custom",
			Href: upstreamsHref(slug) + "/new?preset=custom", Current: form.Preset == tenants.UpstreamPresetCustom || form.Preset == ""})
	} else {
		p.Title = existing.Name
		href := upstreamHref(slug, existing.ID)
		p.Action, p.DiscoverAction, p.DeleteAction = href, href+"/discover", href+"/delete"
		p.ImportHref = toolsHref(slug) + "/import?upstream=" + existing.ID.String()
		p.Form.HasClientSecret = existing.HasClientSecret
		tools, err := s.cfg.Tenants.Tools(r.Context(), c.Tenant.ID)
		if err != nil {
			return views.UpstreamFormPage{}, err
		}
		for _, t := range tools {
			if t.UpstreamID == existing.ID {
				p.Tools++
			}
		}
	}
	if pr, ok := tenants.LookupUpstreamPreset(form.Preset); ok {
		p.PresetLabel, p.PresetNotes, p.PresetDocs = pr.Label, pr.Notes, pr.DocsURL
	}
	return p, nil
}

// newUpstreamPage is the add form, prefilled from ?preset=.
func (s *Server) newUpstreamPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	form, _, _ := presetUpstreamForm(r.URL.Query().Get("preset"))
	p, err := s.upstreamFormModel(r, c, form, nil)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, views.UpstreamEdit(p))
}

// upstreamFromPath loads the {id} upstream of the tenant; an id that is not
// the tenant's is a 404 like any unknown page.
func (s *Server) upstreamFromPath(r *http.Request, c consoleCtx) (tenants.Upstream, error) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return tenants.Upstream{}, &statusError{status: http.StatusNotFound, msg: "there is no such upstream in this tenant"}
	}
	u, err := s.cfg.Tenants.Upstream(r.Context(), c.Tenant.ID, id)
	if errors.Is(err, tenants.ErrNotFound) {
		return tenants.Upstream{}, &statusError{status: http.StatusNotFound, msg: "there is no such upstream in this tenant"}
	}
	return u, err
}

func (s *Server) editUpstreamPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	u, err := s.upstreamFromPath(r, c)
	if err != nil {
		return err
	}
	p, err := s.upstreamFormModel(r, c, upstreamFormFrom(u), &u)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, views.UpstreamEdit(p))
}

// renderUpstreamError shows the form again with err under its field, or
// returns err when a form can't show it.
func (s *Server) renderUpstreamError(w http.ResponseWriter, r *http.Request, c consoleCtx, form views.UpstreamForm, in tenants.UpstreamInput, existing *tenants.Upstream, err error) error {
	errs, status, ok := formErrors(err, fieldNames(upstreamFields)...)
	if !ok {
		return err
	}
	p, perr := s.upstreamFormModel(r, c, form, existing)
	if perr != nil {
		return perr
	}
	p.Errors, p.Summary = errs, summarize(errs, upstreamFields)
	p.SecretRetype = in.ClientSecret != nil && *in.ClientSecret != ""
	return s.render(w, r, status, views.UpstreamEdit(p))
}

func (s *Server) createUpstream(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	form, in, err := readUpstreamForm(r)
	var u tenants.Upstream
	if err == nil {
		u, err = s.cfg.Tenants.CreateUpstream(r.Context(), c.Tenant.ID, in)
	}
	if err != nil {
		return s.renderUpstreamError(w, r, c, form, in, nil, err)
	}
	return redirect(w, r, upstreamHref(c.Tenant.Slug, u.ID)+"?done=upstream-created")
}

func (s *Server) updateUpstream(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	existing, err := s.upstreamFromPath(r, c)
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	form, in, err := readUpstreamForm(r)
	if err == nil {
		_, err = s.cfg.Tenants.UpdateUpstream(r.Context(), c.Tenant.ID, existing.ID, in)
	}
	if err != nil {
		return s.renderUpstreamError(w, r, c, form, in, &existing, err)
	}
	return redirect(w, r, upstreamHref(c.Tenant.Slug, existing.ID)+"?done=upstream-saved")
}

// discoverUpstream reads the typed issuer's metadata and fills the
// endpoints (and PKCE, and the scopes when none were typed) into the form
// as typed. Nothing is saved.
func (s *Server) discoverUpstream(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	var existing *tenants.Upstream
	if r.PathValue("id") != "" {
		u, err := s.upstreamFromPath(r, c)
		if err != nil {
			return err
		}
		existing = &u
	}
	if err := parseForm(r); err != nil {
		return err
	}
	form, in, _ := readUpstreamForm(r)
	panel := views.CheckPanel{TestID: "upstream-discover", Ran: true}
	d, err := s.cfg.Tenants.DiscoverUpstream(r.Context(), form.Issuer)
	if err != nil {
		var pub *tenants.Error
		if !errors.As(err, &pub) {
			return err
		}
		panel.Title = "Locksmith couldn't read this authorization server's metadata"
		panel.Problems = []views.Problem{{Message: sentence(pub.Message), Fix: discoverFix(pub.Message)}}
	} else {
		panel.OK = true
		panel.Title = "Found the authorization server; the endpoints below were filled in"
		form.AuthorizeURL, form.TokenURL, form.RevocationURL = d.AuthorizeURL, d.TokenURL, d.RevocationURL
		form.PKCE = d.PKCE
		if strings.TrimSpace(form.Scopes) == "" {
			form.Scopes = strings.Join(d.ScopesSupported, " ")
		}
		panel.Facts = append(panel.Facts, views.Fact{Label: "Metadata", Value: d.MetadataURL, Mono: true},
			views.Fact{Label: "Authorization", Value: d.AuthorizeURL, Mono: true},
			views.Fact{Label: "Token", Value: d.TokenURL, Mono: true})
		if d.RevocationURL != "" {
			panel.Facts = append(panel.Facts, views.Fact{Label: "Revocation", Value: d.RevocationURL, Mono: true})
		}
		if len(d.ScopesSupported) > 0 {
			panel.Facts = append(panel.Facts, views.Fact{Label: "Scopes", Value: strings.Join(d.ScopesSupported, " "), Mono: true})
		}
		if len(d.CodeChallengeMethods) > 0 {
			panel.Facts = append(panel.Facts, views.Fact{Label: "PKCE", Value: strings.Join(d.CodeChallengeMethods, ", ")})
		}
		for _, w := range d.Warnings {
			panel.Warnings = append(panel.Warnings, sentence(w))
		}
		panel.Note = "Nothing is saved until you press Save upstream."
		if existing == nil {
			panel.Note = "Nothing is saved until you press Add upstream."
		}
	}
	p, err := s.upstreamFormModel(r, c, form, existing)
	if err != nil {
		return err
	}
	p.Discover = panel
	p.SecretRetype = in.ClientSecret != nil && *in.ClientSecret != ""
	return s.render(w, r, http.StatusOK, views.UpstreamEdit(p))
}

// discoverFix says how to fix a failed discovery.
func discoverFix(msg string) string {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "enter the issuer") || strings.Contains(m, "absolute https url"):
		return "Enter the authorization server's issuer URL, or leave it empty and type the endpoints below."
	case strings.Contains(m, "doesn't match"):
		return "Copy the issuer exactly as the metadata writes it, including any trailing slash."
	case strings.Contains(m, "lacks"):
		return "Enter the authorization and token endpoints by hand below."
	case strings.Contains(m, "not allowed") || strings.Contains(m, "must use https"):
		return "Use the provider's public https URL; Locksmith doesn't connect to private, loopback, link-local or cloud metadata addresses."
	case strings.Contains(m, "no authorization server metadata"):
		return "This provider doesn't publish metadata at the issuer (many, such as GitHub, don't). Enter the endpoints by hand below, or start from a preset."
	}
	return "Enter the endpoints by hand below."
}

// deleteUpstream deletes the upstream and its tools after its slug was typed.
func (s *Server) deleteUpstream(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	u, err := s.upstreamFromPath(r, c)
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	if strings.TrimSpace(r.PostFormValue("confirm")) != u.Slug {
		p, err := s.upstreamFormModel(r, c, upstreamFormFrom(u), &u)
		if err != nil {
			return err
		}
		p.Errors = fieldError("confirm", "type the upstream's slug exactly as shown to confirm")
		return s.render(w, r, http.StatusUnprocessableEntity, views.UpstreamEdit(p))
	}
	if err := s.cfg.Tenants.DeleteUpstream(r.Context(), c.Tenant.ID, u.ID); err != nil {
		return err
	}
	return redirect(w, r, upstreamsHref(c.Tenant.Slug)+"?done=upstream-deleted")
}
