package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/oauth2"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/web/views"
)

// connectRequest is what a consent link asks for. Every field comes from
// the URL, which anyone can craft: nothing here is trusted beyond display,
// and the hints can only refuse.
type connectRequest struct {
	Scopes   []string
	ReturnTo string
	Agent    string
	// LoginHint and For name the user the link was made for (email or
	// subject); SubHint names them by IdP subject.
	LoginHint string
	For       string
	SubHint   string
}

const maxConsentScopes = 50

// parseConnectRequest reads a consent request from a query or form.
func parseConnectRequest(v url.Values) (connectRequest, error) {
	req := connectRequest{
		ReturnTo:  safeReturnPath(v.Get("return_to")),
		Agent:     cleanDisplay(v.Get("agent"), 100),
		LoginHint: cleanDisplay(v.Get("login_hint"), 320),
		For:       cleanDisplay(v.Get("for"), 320),
		SubHint:   cleanDisplay(v.Get("sub_hint"), 320),
	}
	for _, raw := range v["scope"] {
		for _, sc := range strings.Fields(raw) {
			if !validScopeToken(sc) {
				return connectRequest{}, &euError{status: http.StatusBadRequest, title: "This link isn't valid",
					msg: "The link asks for a permission with a malformed name, so it can't be used. Go back to your agent and try again."}
			}
			if !slices.Contains(req.Scopes, sc) {
				req.Scopes = append(req.Scopes, sc)
			}
		}
	}
	if len(req.Scopes) > maxConsentScopes {
		return connectRequest{}, &euError{status: http.StatusBadRequest, title: "This link isn't valid",
			msg: "The link asks for too many permissions at once. Go back to your agent and try again."}
	}
	return req, nil
}

// validScopeToken accepts an RFC 6749 scope token: printable ASCII without
// space, quote or backslash, at most 200 bytes.
func validScopeToken(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// cleanDisplay drops a value that is not short, valid, printable text.
func cleanDisplay(s string, max int) string {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > max || !utf8.ValidString(s) {
		return ""
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return ""
		}
	}
	return s
}

// values re-encodes the request for a form or a link.
func (req connectRequest) values() url.Values {
	v := url.Values{}
	if len(req.Scopes) > 0 {
		v.Set("scope", strings.Join(req.Scopes, " "))
	}
	for k, x := range map[string]string{"return_to": req.ReturnTo, "agent": req.Agent, "login_hint": req.LoginHint, "for": req.For, "sub_hint": req.SubHint} {
		if x != "" {
			v.Set(k, x)
		}
	}
	return v
}

// madeFor reports whether the signed-in user may use a link with these
// hints: each hint present must name them.
func (req connectRequest) madeFor(u endUser) bool {
	if req.SubHint != "" && req.SubHint != u.Subject {
		return false
	}
	for _, h := range []string{req.LoginHint, req.For} {
		if h != "" && h != u.Subject && !(u.Email != "" && strings.EqualFold(h, u.Email)) {
			return false
		}
	}
	return true
}

// connectPath is the consent page of an upstream with the request's query.
func connectPath(slug, upstream string, req connectRequest) string {
	p := "/t/" + slug + "/connect/" + url.PathEscape(upstream)
	if q := req.values().Encode(); q != "" {
		p += "?" + q
	}
	return p
}

// consentUpstream resolves {upstream} to an upstream that takes per-user
// OAuth consent.
func (s *Server) consentUpstream(ctx context.Context, c *euCtx, slug string) (tenants.Upstream, error) {
	up, err := s.cfg.Tenants.UpstreamBySlug(ctx, c.Tenant.ID, slug)
	if errors.Is(err, tenants.ErrNotFound) {
		return tenants.Upstream{}, &euError{status: http.StatusNotFound, title: "Page not found",
			msg: c.Tenant.Name + " has no service called “" + slug + "” to connect. Check the link your agent gave you."}
	}
	if err != nil {
		return tenants.Upstream{}, err
	}
	if up.AuthMode != tenants.AuthOAuth2 || up.AuthorizeURL == "" {
		return tenants.Upstream{}, &euError{status: http.StatusBadRequest, title: "Nothing to connect",
			msg: up.Name + " doesn't need you to connect an account: your organisation set it up to work without one."}
	}
	return up, nil
}

// errOtherAccount refuses a link made for someone else; it offers to sign
// in as the right account and grants nothing.
func errOtherAccount(c *euCtx, back string) *euError {
	return &euError{status: http.StatusForbidden, title: "This link was made for a different account",
		msg: "The agent made this link for someone other than the account you are signed in with, so nothing was connected. " +
			"If the link is meant for you, sign in with the right account; otherwise close this tab.",
		actions: []views.EndUserAction{{Label: "Sign in with another account", Href: "/t/" + c.Tenant.Slug + "/auth/signout", Post: true,
			Fields: []views.Field{{Name: "switch", Value: "1"}, {Name: "next", Value: back}}, TestID: "eu-switch-account", Secondary: true}}}
}

// connectPage is the consent page: GET /t/{tenant}/connect/{upstream}.
func (s *Server) connectPage(w http.ResponseWriter, r *http.Request, c *euCtx) error {
	ctx := r.Context()
	up, err := s.consentUpstream(ctx, c, r.PathValue("upstream"))
	if err != nil {
		return err
	}
	req, err := parseConnectRequest(r.URL.Query())
	if err != nil {
		return err
	}
	self := connectPath(c.Tenant.Slug, up.Slug, req)
	if c.Session == nil {
		to := enduserSignInPath(c.Tenant.Slug, self)
		if req.LoginHint != "" {
			to += "&login_hint=" + url.QueryEscape(req.LoginHint)
		}
		return redirect(w, r, to)
	}
	if !req.madeFor(c.Session.User) {
		s.allowIdPForm(ctx, w, r, c)
		return errOtherAccount(c, self)
	}
	asked, prior, reconnect, err := s.consentScopes(ctx, c, up, req)
	if err != nil {
		return err
	}
	p := views.ConsentPage{
		Frame:        s.euFrame(r, c, "Connect "+up.Name),
		UpstreamName: up.Name,
		UpstreamHost: hostOf(up.AuthorizeURL),
		Agent:        req.Agent,
		Scopes:       scopeLines(asked, prior),
		Reconnect:    reconnect,
		Action:       "/t/" + c.Tenant.Slug + "/connect/" + url.PathEscape(up.Slug),
	}
	p.Frame.SwitchNext = self
	for k, vs := range req.values() {
		p.Hidden = append(p.Hidden, views.Field{Name: k, Value: vs[0]})
	}
	slices.SortFunc(p.Hidden, func(a, b views.Field) int { return strings.Compare(a.Name, b.Name) })
	s.allowIdPForm(ctx, w, r, c, up.AuthorizeURL)
	return s.render(w, r, http.StatusOK, views.EndUserConsent(p))
}

// allowIdPForm lets this page's forms lead to the IdP ("Not you?" signs in
// again there) and to extra origins.
func (s *Server) allowIdPForm(ctx context.Context, w http.ResponseWriter, r *http.Request, c *euCtx, extra ...string) {
	targets := extra
	if reg, err := s.cfg.Tenants.IdP(ctx, c.Tenant.ID); err == nil {
		targets = append(targets, reg.Issuer)
		s.eu.mu.Lock()
		cp, ok := s.eu.providers[reg.Issuer]
		s.eu.mu.Unlock()
		if ok {
			targets = append(targets, cp.p.Endpoint().AuthURL)
		}
	}
	allowFormTargets(w, r, targets...)
}

// consentScopes returns the scopes to show (asked, or the upstream's
// offered scopes when the link names none), the scopes the user granted
// before (from an active grant), and whether the grant needs renewing.
func (s *Server) consentScopes(ctx context.Context, c *euCtx, up tenants.Upstream, req connectRequest) (asked, prior []string, reconnect bool, err error) {
	asked = req.Scopes
	if len(asked) == 0 {
		asked = up.ScopesOffered
	}
	g, err := s.cfg.Consent.Vault().GrantFor(ctx, c.Tenant.ID, up.ID, c.Session.User.Issuer, c.Session.User.Subject)
	switch {
	case errors.Is(err, consent.ErrNotFound):
		return asked, nil, false, nil
	case err != nil:
		return nil, nil, false, err
	case g.Status == consent.StatusActive:
		return asked, g.Scopes, false, nil
	case g.Status == consent.StatusNeedsReauth:
		return asked, nil, true, nil
	}
	return asked, nil, false, nil
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}

// connectDecision handles Allow and Cancel: POST /t/{tenant}/connect/{upstream}.
// Allow creates the consent state and sends the browser to the upstream.
func (s *Server) connectDecision(w http.ResponseWriter, r *http.Request, c *euCtx) error {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		return err
	}
	up, err := s.consentUpstream(ctx, c, r.PathValue("upstream"))
	if err != nil {
		return err
	}
	req, err := parseConnectRequest(r.PostForm)
	if err != nil {
		return err
	}
	self := connectPath(c.Tenant.Slug, up.Slug, req)
	if c.Session == nil {
		return redirect(w, r, enduserSignInPath(c.Tenant.Slug, self))
	}
	if !req.madeFor(c.Session.User) {
		return errOtherAccount(c, self)
	}
	if r.PostForm.Get("decision") != "allow" {
		p := views.EndUserMessagePage{Frame: s.euFrame(r, c, "Not connected"), Status: http.StatusOK, Tone: "info",
			Title: "Nothing was connected", Message: "You cancelled, so " + up.Name + " was not connected. You can close this tab and go back to your agent."}
		if req.ReturnTo != "" {
			p.Actions = append(p.Actions, views.EndUserAction{Label: "Go back", Href: req.ReturnTo, TestID: "eu-return"})
		}
		return s.render(w, r, http.StatusOK, views.EndUserMessage(p))
	}
	asked, prior, _, err := s.consentScopes(ctx, c, up, req)
	if err != nil {
		return err
	}
	// Incremental consent: ask the upstream for everything the user allowed
	// so far, so the new refresh token covers the merged scopes.
	scopes := slices.Clone(asked)
	for _, p := range prior {
		if !slices.Contains(scopes, p) {
			scopes = append(scopes, p)
		}
	}
	u := c.Session.User
	st := flowState{Kind: flowConsent, SessionID: c.Session.ID, Issuer: u.Issuer, Subject: u.Subject, UpstreamID: up.ID,
		Scopes: scopes, ReturnTo: req.ReturnTo, Agent: req.Agent}
	if up.PKCE {
		st.CodeVerifier = oauth2.GenerateVerifier()
	}
	state, err := s.createFlowState(ctx, c.Tenant.ID, c.Tenant.Slug+".", st)
	if err != nil {
		return err
	}
	to, err := authorizeURL(up, s.cfg.Tenants.RedirectURI(), state, scopes, st.CodeVerifier)
	if err != nil {
		return err
	}
	s.cfg.Logger.InfoContext(ctx, "consent started", "tenant_id", c.Tenant.ID, "subject", u.Subject, "upstream", up.Slug, "request_id", RequestID(ctx))
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}

// authorizeURL builds the upstream's authorization request: code flow, the
// one redirect URI, state, the scopes (in the upstream's scope parameter),
// PKCE S256 when the upstream takes it, RFC 8707 resource, and the
// upstream's extra parameters (which can't override these).
func authorizeURL(up tenants.Upstream, redirectURI, state string, scopes []string, verifier string) (string, error) {
	u, err := url.Parse(up.AuthorizeURL)
	if err != nil {
		return "", fmt.Errorf("web: upstream %s: authorize URL: %w", up.Slug, err)
	}
	q := u.Query()
	for k, v := range up.AuthParams {
		q.Set(k, v)
	}
	q.Set("response_type", "code")
	q.Set("client_id", up.ClientID)
	q.Set("redirect_uri", redirectURI)
	q.Set("state", state)
	if len(scopes) > 0 {
		q.Set(orDefault(up.ScopeParam, "scope"), strings.Join(scopes, " "))
	}
	if verifier != "" {
		q.Set("code_challenge", oauth2.S256ChallengeFromVerifier(verifier))
		q.Set("code_challenge_method", "S256")
	}
	if up.Resource != "" {
		q.Set("resource", up.Resource)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// upstreamCallback is the one redirect URI of every upstream:
// GET /oauth/callback?code&state&iss. The state starts with the tenant's
// slug; the browser is sent on to that tenant's pages, where its end-user
// session cookie is visible, with the query unchanged.
func (s *Server) upstreamCallback(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	slug, _, ok := strings.Cut(r.URL.Query().Get("state"), ".")
	if !ok || !validSlugShape(slug) {
		s.writeEndUserError(w, r, nil, errStateUnknown)
		return
	}
	http.Redirect(w, r, "/t/"+slug+"/oauth/callback?"+r.URL.RawQuery, http.StatusSeeOther)
}

// validSlugShape accepts what could be a tenant slug (lowercase letters,
// digits, hyphens), reserved or not.
func validSlugShape(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// consentCallback finishes a consent: GET /t/{tenant}/oauth/callback.
func (s *Server) consentCallback(w http.ResponseWriter, r *http.Request, c *euCtx) error {
	ctx := r.Context()
	q := r.URL.Query()
	if c.Session == nil {
		return &euError{status: http.StatusForbidden, title: "You are not signed in here",
			msg: "This connection was started in a browser session that isn't this one (or that has ended), so nothing was connected. Go back to your agent and start again."}
	}
	u := c.Session.User
	st, err := s.consumeFlowState(ctx, c.Tenant.ID, flowConsent, q.Get("state"), func(st flowState) error {
		if st.Issuer != u.Issuer || st.Subject != u.Subject {
			return &euError{status: http.StatusForbidden, title: "This link was made for a different account",
				msg:   "This connection was started by someone else, so nothing was connected to your account or theirs. Go back to your agent and start again.",
				cause: errors.New("consent state of another user")}
		}
		if subtle.ConstantTimeCompare(st.SessionID[:], c.Session.ID[:]) != 1 {
			return &euError{status: http.StatusForbidden, title: "This connection was started elsewhere",
				msg:   "This connection was started in another browser session, so it can't finish here. Nothing was connected. Go back to your agent and start again.",
				cause: errors.New("consent state of another session")}
		}
		return nil
	})
	if err != nil {
		return err
	}
	up, err := s.cfg.Tenants.Upstream(ctx, c.Tenant.ID, st.UpstreamID)
	if err != nil {
		return err
	}
	back := []views.EndUserAction{{Label: "My connections", Href: "/t/" + c.Tenant.Slug + "/me", TestID: "eu-me", Secondary: true}}
	if e := q.Get("error"); e != "" {
		title, msg := "Nothing was connected", up.Name+" didn't give access ("+safeOAuthCode(e)+"). Nothing was connected. You can close this tab and go back to your agent."
		if e == "access_denied" {
			msg = "You didn't allow access at " + up.Name + ", so nothing was connected. You can close this tab and go back to your agent."
		}
		return &euError{status: http.StatusBadRequest, title: title, msg: msg, actions: back}
	}
	// RFC 9207: an iss that is not the upstream's issuer means the answer
	// came from another authorization server (mix-up).
	if iss := q.Get("iss"); iss != "" && up.Issuer != "" && iss != up.Issuer {
		return &euError{status: http.StatusBadRequest, title: "The answer came from the wrong place",
			msg:   "The answer to this connection didn't come from " + up.Name + ", so it was refused and nothing was connected. Go back to your agent and start again.",
			cause: fmt.Errorf("iss %q is not the upstream's issuer", iss), actions: back}
	}
	code := q.Get("code")
	if code == "" || len(code) > 2048 {
		return &euError{status: http.StatusBadRequest, title: "Nothing was connected",
			msg: up.Name + " didn't send an authorization. Nothing was connected. Go back to your agent and start again.", actions: back}
	}
	toks, err := s.cfg.Consent.ExchangeCode(ctx, c.Tenant.ID, up.ID, code, s.cfg.Tenants.RedirectURI(), st.CodeVerifier, st.Scopes)
	var oe *consent.OAuthError
	var re *consent.RetryableError
	switch {
	case errors.As(err, &re):
		return &euError{status: http.StatusBadGateway, title: up.Name + " didn't answer",
			msg: "Locksmith couldn't reach " + up.Name + " to finish connecting. Nothing was connected. Go back to your agent and try again in a moment.", cause: err, actions: back}
	case errors.As(err, &oe):
		return &euError{status: http.StatusBadRequest, title: up.Name + " refused the connection",
			msg: up.Name + " didn't accept the authorization (" + safeOAuthCode(oe.Code) + "). Nothing was connected. Go back to your agent and start again.", cause: err, actions: back}
	case err != nil:
		return err
	}
	g, err := s.cfg.Consent.Vault().SaveGrant(ctx, c.Tenant.ID, up.ID, consent.User{Issuer: u.Issuer, Subject: u.Subject, Email: u.Email}, toks)
	if err != nil {
		return err
	}
	s.cfg.Logger.InfoContext(ctx, "consent granted", "tenant_id", c.Tenant.ID, "subject", u.Subject, "upstream", up.Slug, "grant_id", g.ID, "request_id", RequestID(ctx))
	return s.render(w, r, http.StatusOK, views.EndUserConnected(views.ConnectedPage{
		Frame:        s.euFrame(r, c, "Connected"),
		UpstreamName: up.Name,
		Scopes:       scopeLines(g.Scopes, nil),
		ReturnTo:     safeReturnPath(st.ReturnTo),
	}))
}
