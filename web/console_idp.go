package web

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/web/views"
)

// The Identity provider page: one registration per tenant, checked live.
//
//	GET  /console/t/{tenant}/idp         the form, with the last check's outcome
//	POST /console/t/{tenant}/idp         save (runs the check; a refused issuer saves nothing)
//	POST /console/t/{tenant}/idp/check   live discovery and JWKS check of the typed issuer
//	POST /console/t/{tenant}/idp/preset  refill the claim names from the chosen preset
//	POST /console/t/{tenant}/idp/delete  remove the registration (typed confirmation)

// idpFields are the IdP form's fields as the domain names them, with the
// labels the error summary links to.
var idpFields = []fieldLabel{
	{"issuer", "idp-issuer", "Issuer URL"},
	{"audience", "idp-audience", "Audience"},
	{"preset", "idp-preset", "Preset"},
	{"claims.subject", "idp-claims-subject", "Subject claim"},
	{"claims.email", "idp-claims-email", "Email claim"},
	{"claims.groups", "idp-claims-groups", "Groups or roles claim"},
	{"claims.scopes", "idp-claims-scopes", "Scopes claim"},
	{"claims.agent", "idp-claims-agent", "Agent claim"},
	{"required_scopes", "idp-required-scopes", "Required scopes"},
	{"client_id", "idp-client-id", "Client ID"},
	{"client_secret", "idp-client-secret", "Client secret"},
}

// fieldLabel ties a domain field name to its input's id and label.
type fieldLabel struct {
	field string
	id    string
	label string
}

// summarize builds a long form's error summary from its field errors.
func summarize(errs views.Errors, fields []fieldLabel) []views.FieldProblem {
	var out []views.FieldProblem
	for _, f := range fields {
		if msg := errs.Field(f.field); msg != "" {
			out = append(out, views.FieldProblem{Href: "#" + f.id, Label: f.label, Message: msg})
		}
	}
	return out
}

// fieldNames lists the domain field names of a form.
func fieldNames(fields []fieldLabel) []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.field
	}
	return out
}

// registrationNotice is the fixed success message a registration page's
// redirect asks for with ?done=key (nothing from the request is shown).
func registrationNotice(key string) string {
	switch key {
	case "idp-saved":
		return "The identity provider was saved."
	case "idp-deleted":
		return "The identity provider was removed. Agents can't authenticate until you connect one again."
	case "upstream-created":
		return "The upstream was added. Register the redirect URI below at the provider if you haven't yet."
	case "upstream-saved":
		return "The upstream was saved."
	case "upstream-deleted":
		return "The upstream and its tools were deleted."
	case "tool-created":
		return "The tool was added."
	case "tool-saved":
		return "The tool was saved."
	case "tool-deleted":
		return "The tool was deleted."
	case "tool-enabled":
		return "The tool was turned on; agents can see it now."
	case "tool-disabled":
		return "The tool was turned off; agents no longer see it."
	case "tools-imported":
		return "The tools were imported. Review their risk and scopes below."
	}
	return ""
}

// registrationFrame is consoleFrame with the registration pages' notices.
func (s *Server) registrationFrame(r *http.Request, c consoleCtx, active string) (views.Frame, error) {
	f, err := s.consoleFrame(r, c, active)
	if err == nil && f.Notice == "" {
		f.Notice = registrationNotice(r.URL.Query().Get("done"))
	}
	return f, err
}

// idpPresetOptions are the claim-mapping presets for the select.
func idpPresetOptions() []views.Option {
	var out []views.Option
	for _, p := range tenants.IdPPresets() {
		out = append(out, views.Option{Value: p.Name, Label: p.Label})
	}
	return out
}

// presetForm returns f with the claim names and at+jwt rule of preset.
func presetForm(f views.IdPForm, preset tenants.IdPPreset) views.IdPForm {
	f.Preset = preset.Name
	f.ClaimSubject, f.ClaimEmail, f.ClaimGroups = preset.Claims.Subject, preset.Claims.Email, preset.Claims.Groups
	f.ClaimScopes, f.ClaimAgent = preset.Claims.Scopes, preset.Claims.Agent
	f.RequireATJWT = preset.RequireATJWT
	return f
}

// idpFormFrom is the form of a stored registration.
func idpFormFrom(p tenants.IdP) views.IdPForm {
	return views.IdPForm{
		Issuer: p.Issuer, Audience: p.Audience, Preset: p.Preset,
		ClaimSubject: p.Claims.Subject, ClaimEmail: p.Claims.Email, ClaimGroups: p.Claims.Groups,
		ClaimScopes: p.Claims.Scopes, ClaimAgent: p.Claims.Agent, RequireATJWT: p.RequireATJWT,
		RequiredScopes: strings.Join(p.RequiredScopes, " "), ClientID: p.ClientID, HasClientSecret: p.HasClientSecret,
	}
}

// readIdPForm reads the posted IdP form: the values to show again and the
// domain input. The client secret is only in the input.
func readIdPForm(r *http.Request) (views.IdPForm, tenants.IdPInput) {
	v := func(k string) string { return r.PostFormValue(k) }
	f := views.IdPForm{
		Issuer: strings.TrimSpace(v("issuer")), Audience: strings.TrimSpace(v("audience")), Preset: v("preset"),
		ClaimSubject: v("claims.subject"), ClaimEmail: v("claims.email"), ClaimGroups: v("claims.groups"),
		ClaimScopes: v("claims.scopes"), ClaimAgent: v("claims.agent"), RequireATJWT: v("require_at_jwt") != "",
		RequiredScopes: v("required_scopes"), ClientID: v("client_id"),
	}
	requireATJWT := f.RequireATJWT
	in := tenants.IdPInput{
		Issuer: f.Issuer, Audience: f.Audience, Preset: f.Preset,
		Claims: tenants.ClaimMapping{Subject: f.ClaimSubject, Email: f.ClaimEmail, Groups: f.ClaimGroups,
			Scopes: f.ClaimScopes, Agent: f.ClaimAgent},
		RequireATJWT: &requireATJWT, RequiredScopes: strings.Fields(f.RequiredScopes), ClientID: f.ClientID,
		ClientSecret: postedSecret(r),
	}
	return f, in
}

// postedSecret is a write-only secret field: nil keeps the stored secret
// (an empty field), "" removes it (the clear box), anything else replaces it.
func postedSecret(r *http.Request) *string {
	if r.PostFormValue("clear_client_secret") != "" {
		empty := ""
		return &empty
	}
	if v := r.PostFormValue("client_secret"); v != "" {
		return &v
	}
	return nil
}

// loadIdP returns the tenant's registration; ok is false when there is none.
func (s *Server) loadIdP(r *http.Request, c consoleCtx) (tenants.IdP, bool, error) {
	reg, err := s.cfg.Tenants.IdP(r.Context(), c.Tenant.ID)
	if errors.Is(err, tenants.ErrNotFound) {
		return tenants.IdP{}, false, nil
	}
	if err != nil {
		return tenants.IdP{}, false, err
	}
	return reg, true, nil
}

// idpModel builds the IdP page around form; reg is the stored registration
// (if any), whose last check fills the result panel.
func (s *Server) idpModel(r *http.Request, c consoleCtx, form views.IdPForm, reg *tenants.IdP) (views.IdPPage, error) {
	f, err := s.registrationFrame(r, c, "idp")
	if err != nil {
		return views.IdPPage{}, err
	}
	preset, ok := tenants.LookupIdPPreset(form.Preset)
	if !ok {
		preset, _ = tenants.LookupIdPPreset("generic")
	}
	p := views.IdPPage{
		Frame: f, Registered: reg != nil, Form: form, Presets: idpPresetOptions(),
		PresetNotes: preset.Notes, IssuerHint: preset.IssuerHint,
		DefaultAudience: s.cfg.Tenants.DefaultAudience(c.Tenant.Slug),
		Check:           views.CheckPanel{TestID: "idp-check"},
	}
	if reg != nil {
		p.Form.HasClientSecret = reg.HasClientSecret
		p.Check = storedIdPCheck(*reg)
	}
	return p, nil
}

// idpPage shows the registration, or an empty form with the generic preset.
func (s *Server) idpPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	reg, found, err := s.loadIdP(r, c)
	if err != nil {
		return err
	}
	form := presetForm(views.IdPForm{}, mustIdPPreset("generic"))
	var regp *tenants.IdP
	if found {
		form, regp = idpFormFrom(reg), &reg
	}
	p, err := s.idpModel(r, c, form, regp)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, views.IdP(p))
}

func mustIdPPreset(name string) tenants.IdPPreset {
	p, _ := tenants.LookupIdPPreset(name)
	return p
}

// saveIdP stores the registration; the domain runs the live check and
// refuses an issuer the egress guard refuses, with nothing stored.
func (s *Server) saveIdP(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	form, in := readIdPForm(r)
	if _, err := s.cfg.Tenants.SaveIdP(r.Context(), c.Tenant.ID, in); err != nil {
		errs, status, ok := formErrors(err, fieldNames(idpFields)...)
		if !ok {
			return err
		}
		reg, found, lerr := s.loadIdP(r, c)
		if lerr != nil {
			return lerr
		}
		var regp *tenants.IdP
		if found {
			regp = &reg
		}
		p, perr := s.idpModel(r, c, form, regp)
		if perr != nil {
			return perr
		}
		p.Errors, p.Summary = errs, summarize(errs, idpFields)
		p.SecretRetype = in.ClientSecret != nil && *in.ClientSecret != ""
		return s.render(w, r, status, views.IdP(p))
	}
	return redirect(w, r, views.SectionHref(c.Tenant.Slug, "idp")+"?done=idp-saved")
}

// checkIdP runs the live check on the typed issuer and shows the result
// with the form as typed. Nothing is saved, except that checking the
// registered issuer again records the outcome (as RecheckIdP does).
func (s *Server) checkIdP(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	form, in := readIdPForm(r)
	reg, found, err := s.loadIdP(r, c)
	if err != nil {
		return err
	}
	var regp *tenants.IdP
	if found {
		regp = &reg
	}
	p, err := s.idpModel(r, c, form, regp)
	if err != nil {
		return err
	}
	p.SecretRetype = in.ClientSecret != nil && *in.ClientSecret != ""
	var check tenants.IdPCheck
	if found && form.Issuer == reg.Issuer {
		check, err = s.cfg.Tenants.RecheckIdP(r.Context(), c.Tenant.ID)
		if err != nil {
			return err
		}
	} else {
		check = s.cfg.Tenants.CheckIdP(r.Context(), form.Issuer)
	}
	p.Check = liveIdPCheck(check)
	// An issuer the egress guard refuses is also an error of the field, as on save.
	if form.Issuer != "" && !check.OK {
		if eerr := s.cfg.Tenants.Egress().CheckURL(r.Context(), form.Issuer); eerr != nil {
			p.Errors = fieldError("issuer", eerr.Error())
		}
	}
	return s.render(w, r, http.StatusOK, views.IdP(p))
}

// applyIdPPreset refills the claim names from the chosen preset and shows
// the form again (the no-JavaScript way to switch presets).
func (s *Server) applyIdPPreset(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	form, in := readIdPForm(r)
	reg, found, err := s.loadIdP(r, c)
	if err != nil {
		return err
	}
	var regp *tenants.IdP
	if found {
		regp = &reg
	}
	preset, ok := tenants.LookupIdPPreset(form.Preset)
	status := http.StatusOK
	var errs views.Errors
	if ok {
		form = presetForm(form, preset)
	} else {
		status, errs = http.StatusUnprocessableEntity, fieldError("preset", "choose one of the presets in the list")
	}
	p, err := s.idpModel(r, c, form, regp)
	if err != nil {
		return err
	}
	p.Errors = errs
	p.SecretRetype = in.ClientSecret != nil && *in.ClientSecret != ""
	return s.render(w, r, status, views.IdP(p))
}

// deleteIdP removes the registration after the tenant's slug was typed.
func (s *Server) deleteIdP(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	reg, found, err := s.loadIdP(r, c)
	if err != nil {
		return err
	}
	if !found {
		return &statusError{status: http.StatusNotFound, msg: "this tenant has no identity provider to remove"}
	}
	if strings.TrimSpace(r.PostFormValue("confirm")) != c.Tenant.Slug {
		p, err := s.idpModel(r, c, idpFormFrom(reg), &reg)
		if err != nil {
			return err
		}
		p.Errors = fieldError("confirm", "type the tenant's slug exactly as shown to confirm")
		return s.render(w, r, http.StatusUnprocessableEntity, views.IdP(p))
	}
	if err := s.cfg.Tenants.DeleteIdP(r.Context(), c.Tenant.ID); err != nil {
		return err
	}
	return redirect(w, r, views.SectionHref(c.Tenant.Slug, "idp")+"?done=idp-deleted")
}

// storedIdPCheck is the result panel of the registration's last check.
func storedIdPCheck(reg tenants.IdP) views.CheckPanel {
	c := views.CheckPanel{TestID: "idp-check"}
	if reg.CheckOK == nil {
		return c
	}
	c.Ran, c.OK = true, *reg.CheckOK
	var problems []string
	for _, part := range strings.Split(reg.CheckMessage, "; ") {
		switch {
		case part == "":
		case strings.HasPrefix(part, "warning: "):
			c.Warnings = append(c.Warnings, sentence(strings.TrimPrefix(part, "warning: ")))
		default:
			problems = append(problems, part)
		}
	}
	if c.OK {
		c.Title = "The last check found the discovery document and signing keys"
		c.Facts = []views.Fact{{Label: "Issuer", Value: reg.Issuer, Mono: true}, {Label: "JWKS", Value: reg.JWKSURI, Mono: true}}
	} else {
		c.Title = "The last check found problems; agents' tokens can't be verified until they are fixed"
		for _, pr := range problems {
			c.Problems = append(c.Problems, views.Problem{Message: sentence(pr), Fix: idpFix(pr)})
		}
	}
	if reg.CheckedAt != nil {
		c.Note = "Checked " + formatTime(*reg.CheckedAt) + ". Use “Check” to check again."
	}
	return c
}

// liveIdPCheck is the result panel of a check that just ran.
func liveIdPCheck(check tenants.IdPCheck) views.CheckPanel {
	c := views.CheckPanel{TestID: "idp-check", Ran: true, OK: check.OK}
	fd := check.Found
	add := func(label, value string, mono bool) {
		if value != "" {
			c.Facts = append(c.Facts, views.Fact{Label: label, Value: value, Mono: mono})
		}
	}
	if check.OK {
		c.Title = "Locksmith can read this identity provider's discovery document and signing keys"
	} else {
		c.Title = "Locksmith can't use this identity provider yet"
		for _, pr := range check.Problems {
			c.Problems = append(c.Problems, views.Problem{Message: sentence(pr), Fix: idpFix(pr)})
		}
	}
	add("Issuer", fd.Issuer, true)
	add("Discovery", fd.DiscoveryURL, true)
	add("JWKS", fd.JWKSURI, true)
	if fd.JWKSURI != "" && check.OK {
		keys := plural(fd.KeyCount, "signing key")
		if len(fd.KeyIDs) > 0 {
			keys += " (" + strings.Join(fd.KeyIDs, ", ") + ")"
		}
		add("Keys", keys, false)
	}
	add("Algorithms", strings.Join(fd.Algorithms, ", "), false)
	add("Authorization", fd.AuthorizationEndpoint, true)
	add("Token", fd.TokenEndpoint, true)
	add("PKCE", strings.Join(fd.CodeChallengeMethods, ", "), false)
	if n := len(fd.ScopesSupported); n > 0 {
		scopes := fd.ScopesSupported
		more := ""
		if n > 12 {
			scopes, more = scopes[:12], fmt.Sprintf(" and %d more", n-12)
		}
		add("Scopes", strings.Join(scopes, " ")+more, true)
	}
	for _, w := range check.Warnings {
		c.Warnings = append(c.Warnings, sentence(w))
	}
	if !check.CheckedAt.IsZero() {
		c.Note = "Checked " + formatTime(check.CheckedAt) + ". Nothing is saved until you press Save."
	}
	return c
}

// idpFix says how to fix a problem an IdP check reported.
func idpFix(problem string) string {
	p := strings.ToLower(problem)
	switch {
	case strings.Contains(p, "not allowed") || strings.Contains(p, "must use https"):
		return "Use the identity provider's public https URL; Locksmith doesn't connect to private, loopback, link-local or cloud metadata addresses."
	case strings.Contains(p, "doesn't match"):
		return "Copy the issuer exactly as the discovery document writes it, including any trailing slash."
	case strings.Contains(p, "no signing keys"):
		return "Publish at least one public signing key (RSA, EC P-256 or Ed25519) at the jwks_uri."
	case strings.Contains(p, "private or symmetric"):
		return "Remove private and symmetric keys from the JWKS and rotate them at the identity provider."
	case strings.Contains(p, "no jwks_uri"):
		return "Configure the identity provider to publish jwks_uri in its discovery document."
	case strings.Contains(p, "tls error"):
		return "The identity provider needs a valid certificate from a public certificate authority for this host name."
	case strings.Contains(p, "could not be resolved"):
		return "Check the host name for typos; it must resolve in public DNS."
	case strings.Contains(p, "http 404") || strings.Contains(p, "http 4"):
		return "Check the issuer URL: the discovery document should be at <issuer>/.well-known/openid-configuration. For Okta use a custom authorization server, for Entra ID the v2.0 issuer."
	case strings.Contains(p, "timed out") || strings.Contains(p, "could not connect") || strings.Contains(p, "could not fetch"):
		return "Check that the identity provider is up and reachable from Locksmith, and that the URL is right."
	case strings.Contains(p, "not json") || strings.Contains(p, "malformed"):
		return "The URL must serve an OpenID Connect discovery document; check that it is the issuer, not a login page."
	case strings.Contains(p, "enter the issuer") || strings.Contains(p, "absolute https url"):
		return "Enter the issuer URL, for example https://idp.example.com."
	}
	return ""
}
