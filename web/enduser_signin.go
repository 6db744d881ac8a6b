package web

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/tokena"
	"github.com/locksmithhq/locksmith/web/views"
)

// End-user sign-in through the tenant's IdP: OpenID Connect authorization
// code flow with PKCE (S256), a nonce and a state. The state is a flow
// state bound to the browser by a random cookie (Path /t/{tenant}/auth/,
// 10 minutes), so an attacker can't make a victim's browser finish the
// attacker's sign-in (login CSRF). The ID token is verified with go-oidc
// against the IdP's discovered keys (issuer, audience = the client ID,
// expiry, signature) and its nonce compared with the stored one. The IdP is
// reached through the SSRF-guarded egress client.

// signinBindingCookie names the cookie binding a sign-in to its browser.
func (s *Server) signinBindingCookie(slug, value string, maxAge int) *http.Cookie {
	name := "locksmith_user_signin"
	if s.cfg.BaseURL.Scheme == "https" {
		name = "__Secure-locksmith-user-signin"
	}
	return &http.Cookie{Name: name, Value: value, Path: "/t/" + slug + "/auth/", MaxAge: maxAge,
		Secure: s.cfg.BaseURL.Scheme == "https", HttpOnly: true, SameSite: http.SameSiteLaxMode}
}

// enduserSignInPath is where a signed-out visitor of next is sent.
func enduserSignInPath(slug, next string) string {
	return "/t/" + slug + "/auth/signin?next=" + url.QueryEscape(next)
}

// signInNext keeps next if it is a page of this tenant, else My connections.
func signInNext(slug, next string) string {
	if p := safeReturnPath(next); p != "" && strings.HasPrefix(p, "/t/"+slug+"/") && !strings.HasPrefix(p, "/t/"+slug+"/auth/") {
		return p
	}
	return "/t/" + slug + "/me"
}

// errNoIdP is the answer when the tenant has no usable IdP registration.
var errNoIdP = &euError{status: http.StatusServiceUnavailable, title: "Sign-in isn't set up yet",
	msg: "Your organisation hasn't finished connecting its sign-in provider to Locksmith. Ask your IT team to register it in the Locksmith console."}

// idpClient returns the tenant's IdP registration, its discovered provider
// and the OAuth client for the sign-in.
func (s *Server) idpClient(ctx context.Context, c *euCtx) (tenants.IdP, *oidc.Provider, *oauth2.Config, error) {
	reg, err := s.cfg.Tenants.IdP(ctx, c.Tenant.ID)
	if errors.Is(err, tenants.ErrNotFound) || (err == nil && reg.ClientID == "") {
		return tenants.IdP{}, nil, nil, errNoIdP
	}
	if err != nil {
		return tenants.IdP{}, nil, nil, err
	}
	p, err := s.oidcProvider(ctx, reg.Issuer)
	if err != nil {
		return tenants.IdP{}, nil, nil, &euError{status: http.StatusBadGateway, title: "Your sign-in provider didn't answer",
			msg: "Locksmith couldn't reach your organisation's sign-in provider. Try again in a moment.", cause: err}
	}
	cfg := &oauth2.Config{
		ClientID:    reg.ClientID,
		Endpoint:    p.Endpoint(),
		RedirectURL: strings.TrimRight(s.cfg.BaseURL.String(), "/") + "/t/" + c.Tenant.Slug + "/auth/callback",
		Scopes:      []string{oidc.ScopeOpenID, "email", "profile"},
	}
	return reg, p, cfg, nil
}

// oidcProvider discovers the issuer (cached for providerTTL) through the
// egress client, which also fetches its keys later.
func (s *Server) oidcProvider(ctx context.Context, issuer string) (*oidc.Provider, error) {
	s.eu.mu.Lock()
	cp, ok := s.eu.providers[issuer]
	s.eu.mu.Unlock()
	if ok && time.Since(cp.at) < providerTTL {
		return cp.p, nil
	}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(dctx, s.cfg.Tenants.Egress().HTTPClient()), issuer)
	if err != nil {
		return nil, fmt.Errorf("web: discover idp %s: %w", issuer, err)
	}
	s.eu.mu.Lock()
	if len(s.eu.providers) > 1000 {
		clear(s.eu.providers)
	}
	s.eu.providers[issuer] = cachedProvider{p: p, at: time.Now()}
	s.eu.mu.Unlock()
	return p, nil
}

// enduserSignIn starts a sign-in at the tenant's IdP: GET
// /t/{tenant}/auth/signin?next=…[&switch=1][&login_hint=…]. switch=1 asks the
// IdP to show its login screen even when the user is signed in there
// ("Not you?").
func (s *Server) enduserSignIn(w http.ResponseWriter, r *http.Request, c *euCtx) error {
	ctx := r.Context()
	q := r.URL.Query()
	next := signInNext(c.Tenant.Slug, q.Get("next"))
	_, _, cfg, err := s.idpClient(ctx, c)
	if err != nil {
		return err
	}
	binding := ""
	if ck, err := r.Cookie(s.signinBindingCookie(c.Tenant.Slug, "", 0).Name); err == nil && len(ck.Value) == 43 {
		binding = ck.Value // another tab's sign-in in flight: share its binding
	} else {
		binding = randomToken(32)
	}
	verifier := oauth2.GenerateVerifier()
	nonce := randomToken(24)
	state, err := s.createFlowState(ctx, c.Tenant.ID, "", flowState{Kind: flowSignIn, BindingHash: tokenHash(binding),
		CodeVerifier: verifier, Nonce: nonce, ReturnTo: next})
	if err != nil {
		return err
	}
	http.SetCookie(w, s.signinBindingCookie(c.Tenant.Slug, binding, int(flowStateLifetime/time.Second)))
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", nonce)}
	if q.Get("switch") == "1" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"))
	}
	if hint := q.Get("login_hint"); hint != "" && len(hint) <= 200 && !strings.ContainsAny(hint, "\r\n\t") {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", hint))
	}
	http.Redirect(w, r, cfg.AuthCodeURL(state, opts...), http.StatusSeeOther)
	return nil
}

// errSignInFailed is shown when the IdP's answer can't be accepted.
func errSignInFailed(slug, next string, cause error) *euError {
	return &euError{status: http.StatusBadRequest, title: "Sign-in didn't work",
		msg:     "Your sign-in provider's answer couldn't be accepted, so you are not signed in. Try again.",
		actions: []views.EndUserAction{{Label: "Try again", Href: enduserSignInPath(slug, signInNext(slug, next)), TestID: "eu-retry"}},
		cause:   cause}
}

// enduserSignInCallback finishes a sign-in: GET /t/{tenant}/auth/callback.
func (s *Server) enduserSignInCallback(w http.ResponseWriter, r *http.Request, c *euCtx) error {
	ctx := r.Context()
	q := r.URL.Query()
	ck, _ := r.Cookie(s.signinBindingCookie(c.Tenant.Slug, "", 0).Name)
	st, err := s.consumeFlowState(ctx, c.Tenant.ID, flowSignIn, q.Get("state"), func(st flowState) error {
		if ck == nil || subtle.ConstantTimeCompare(tokenHash(ck.Value), st.BindingHash) != 1 {
			return &euError{status: http.StatusForbidden, title: "This sign-in was started elsewhere",
				msg:     "This sign-in was started in another browser, so it can't finish here. Nothing happened. Start again from the page you wanted.",
				actions: []views.EndUserAction{{Label: "Sign in", Href: enduserSignInPath(c.Tenant.Slug, "/t/"+c.Tenant.Slug+"/me"), TestID: "eu-retry"}}}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if e := q.Get("error"); e != "" {
		return &euError{status: http.StatusForbidden, title: "You are not signed in",
			msg:     fmt.Sprintf("Your sign-in provider didn't sign you in (%s). Nothing happened.", safeOAuthCode(e)),
			actions: []views.EndUserAction{{Label: "Try again", Href: enduserSignInPath(c.Tenant.Slug, st.ReturnTo), TestID: "eu-retry"}}}
	}
	reg, p, cfg, err := s.idpClient(ctx, c)
	if err != nil {
		return err
	}
	if iss := q.Get("iss"); iss != "" && iss != reg.Issuer {
		return errSignInFailed(c.Tenant.Slug, st.ReturnTo, fmt.Errorf("RFC 9207 iss %q is not the IdP's issuer", iss))
	}
	secret, err := s.cfg.Tenants.IdPClientSecret(ctx, c.Tenant.ID)
	if err != nil {
		return err
	}
	cfg.ClientSecret = secret
	tok, err := cfg.Exchange(context.WithValue(ctx, oauth2.HTTPClient, s.cfg.Tenants.Egress().HTTPClient()),
		q.Get("code"), oauth2.VerifierOption(st.CodeVerifier))
	if err != nil {
		return errSignInFailed(c.Tenant.Slug, st.ReturnTo, fmt.Errorf("code exchange: %w", scrubOAuth2Error(err)))
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return errSignInFailed(c.Tenant.Slug, st.ReturnTo, errors.New("the token response has no id_token"))
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: reg.ClientID}).Verify(ctx, raw)
	if err != nil {
		return errSignInFailed(c.Tenant.Slug, st.ReturnTo, fmt.Errorf("id token: %w", err))
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		return errSignInFailed(c.Tenant.Slug, st.ReturnTo, errors.New("id token nonce mismatch"))
	}
	u, err := userFromIDToken(reg, idt)
	if err != nil {
		return errSignInFailed(c.Tenant.Slug, st.ReturnTo, err)
	}
	if err := s.startEndUserSession(ctx, w, c, u); err != nil {
		return err
	}
	http.SetCookie(w, s.signinBindingCookie(c.Tenant.Slug, "", -1))
	s.cfg.Logger.InfoContext(ctx, "end user signed in", "tenant_id", c.Tenant.ID, "subject", u.Subject, "request_id", RequestID(ctx))
	return redirect(w, r, signInNext(c.Tenant.Slug, st.ReturnTo))
}

// userFromIDToken reads the user from a verified ID token. The subject is
// the registration's mapped subject claim when the ID token has it (Entra's
// oid), else sub (Okta's ID-token sub is the uid its access tokens carry),
// so that the user here is the user of the agent's Token A.
func userFromIDToken(reg tenants.IdP, idt *oidc.IDToken) (endUser, error) {
	var claims map[string]json.RawMessage
	if err := idt.Claims(&claims); err != nil {
		return endUser{}, fmt.Errorf("id token claims: %w", err)
	}
	m := tokena.EffectiveClaims(reg.Preset, reg.Claims)
	u := endUser{Issuer: idt.Issuer, Subject: idt.Subject}
	if m.Subject != "" && m.Subject != "sub" {
		if v := claimString(claims, m.Subject); v != "" {
			u.Subject = v
		}
	}
	if u.Subject == "" {
		return endUser{}, errors.New("id token has no subject")
	}
	u.Email = claimString(claims, orDefault(m.Email, "email"))
	if u.Email == "" {
		u.Email = claimString(claims, "email")
	}
	u.Name = claimString(claims, "name")
	if u.Name == "" {
		u.Name = claimString(claims, "preferred_username")
	}
	u.Groups = claimStrings(claims, orDefault(m.Groups, "groups"))
	u.Email, u.Name = truncateRunes(u.Email, 320), truncateRunes(u.Name, 200)
	if len(u.Groups) > 200 {
		u.Groups = u.Groups[:200]
	}
	return u, nil
}

func claimString(c map[string]json.RawMessage, name string) string {
	var s string
	if raw, ok := c[name]; ok && json.Unmarshal(raw, &s) == nil {
		return s
	}
	return ""
}

// claimStrings reads a list of strings or a space-separated string.
func claimStrings(c map[string]json.RawMessage, name string) []string {
	raw, ok := c[name]
	if !ok {
		return nil
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return list
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.Fields(s)
	}
	return nil
}

func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n])
	}
	return s
}

// safeOAuthCode keeps an OAuth error code only if it looks like one.
func safeOAuthCode(code string) string {
	if code == "" || len(code) > 64 {
		return "unknown_error"
	}
	for _, r := range code {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return "unknown_error"
		}
	}
	return code
}

// scrubOAuth2Error keeps an oauth2 error's code and drops the response body.
func scrubOAuth2Error(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		code := re.ErrorCode
		if code == "" && re.Response != nil {
			code = re.Response.Status
		}
		return fmt.Errorf("token endpoint refused: %s", safeOAuthCode(code))
	}
	return err
}

// enduserSignOut signs the end user out: POST /t/{tenant}/auth/signout.
// With switch=1 ("Not you?") it starts a new sign-in that asks the IdP for
// its login screen and comes back to next.
func (s *Server) enduserSignOut(w http.ResponseWriter, r *http.Request, c *euCtx) error {
	if err := r.ParseForm(); err != nil {
		return err
	}
	if err := s.endEndUserSession(r.Context(), w, c); err != nil {
		return err
	}
	next := signInNext(c.Tenant.Slug, r.PostForm.Get("next"))
	if r.PostForm.Get("switch") == "1" {
		return redirect(w, r, enduserSignInPath(c.Tenant.Slug, next)+"&switch=1")
	}
	return s.render(w, r, http.StatusOK, views.EndUserMessage(views.EndUserMessagePage{
		Frame: s.euFrame(r, c, "Signed out"), Status: http.StatusOK, Tone: "success",
		Title: "You are signed out", Message: "You are signed out of " + c.Tenant.Name + "'s Locksmith pages. Your connections keep working for your agents until you disconnect them.",
		Actions: []views.EndUserAction{{Label: "Sign in again", Href: enduserSignInPath(c.Tenant.Slug, next), TestID: "eu-signin-again"}},
	}))
}
