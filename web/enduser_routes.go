package web

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/web/views"
)

// End-user pages: a tenant's users sign in through the tenant's IdP, allow
// an upstream (consent), and see and revoke their connections. They live
// under /t/{tenant}/ (plus the one upstream callback, /oauth/callback),
// are branded by the tenant and carry no console chrome.
//
// Every route runs behind http.CrossOriginProtection and the same
// same-origin rule as the console (a cross-site POST is refused with 403),
// with no-store caching and the strict CSP; pages whose forms lead to
// another origin (the IdP, the upstream's authorization server) widen
// form-action to exactly those origins.
//
// The consent flow, as a state machine:
//
//	GET  /t/{t}/connect/{up}?scope&return_to&agent[&login_hint|for|sub_hint]
//	       │ not signed in ──► /t/{t}/auth/signin ──► IdP ──► /t/{t}/auth/callback ──┐
//	       │ signed in as someone the link was not made for ──► refused (nothing)   │
//	       ▼ ◄──────────────────────────────────────────────────────────────────────┘
//	     consent page ── Cancel ──► "nothing was connected"
//	       │ Allow (POST)
//	       ▼
//	     consent state: random, single use, 10 minutes, bound to this end-user
//	     session AND its issuer+subject, PKCE verifier kept server-side
//	       │ 303 to the upstream's authorize endpoint
//	       ▼
//	GET  /oauth/callback?code&state&iss ──► 303 /t/{t}/oauth/callback (the session
//	       │                                 cookie is scoped to /t/{t}/)
//	       ▼
//	     state consumed (unknown, replayed, expired, another session or user: refused)
//	     iss (RFC 9207) must be the upstream's issuer when both are known
//	     Broker.ExchangeCode ──► Vault.SaveGrant (scopes merge) ──► "Connected."

// enduserState is the end-user pages' per-server state.
type enduserState struct {
	cop *http.CrossOriginProtection

	mu        sync.Mutex
	providers map[string]cachedProvider
}

// cachedProvider is a discovered OIDC provider; its key set caches the
// IdP's signing keys.
type cachedProvider struct {
	p  *oidc.Provider
	at time.Time
}

// providerTTL is how long a discovered IdP configuration is reused.
const providerTTL = 10 * time.Minute

// enduserRoutes registers the end-user pages. They need the consent broker;
// without one they are not mounted.
func (s *Server) enduserRoutes() {
	if s.cfg.Consent == nil {
		return
	}
	s.eu = enduserState{cop: http.NewCrossOriginProtection(), providers: map[string]cachedProvider{}}
	s.eu.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &euCtx{}
		if t, err := s.cfg.Tenants.TenantBySlug(r.Context(), r.PathValue("tenant")); err == nil {
			c.Tenant = t // for the branding only; the session is not read
		}
		s.writeEndUserError(w, r, c, errCrossOrigin)
	}))
	const t = "/t/{tenant}"
	s.endUser("GET "+t+"/{$}", s.enduserHome)
	s.endUser("GET "+t+"/auth/signin", s.enduserSignIn)
	s.endUser("GET "+t+"/auth/callback", s.enduserSignInCallback)
	s.endUser("POST "+t+"/auth/signout", s.enduserSignOut)
	s.endUser("GET "+t+"/connect/{upstream}", s.connectPage)
	s.endUser("POST "+t+"/connect/{upstream}", s.connectDecision)
	s.endUser("GET "+t+"/oauth/callback", s.consentCallback)
	s.endUser("GET "+t+"/me", s.connectionsPage)
	s.endUser("POST "+t+"/me/connections/{id}/disconnect", s.disconnect)
	s.approverRoutes(t) // enduser_approvals.go
	s.mux.Handle("GET /oauth/callback", s.eu.cop.Handler(http.HandlerFunc(s.upstreamCallback)))
}

// euCtx is what an end-user handler gets: the tenant of the URL and the
// signed-in end user, if any.
type euCtx struct {
	Tenant  tenants.Tenant
	Session *enduserSession
	// token is the session cookie's value ("" when signed out).
	token string
}

// euHandler is an end-user page handler.
type euHandler func(w http.ResponseWriter, r *http.Request, c *euCtx) error

// endUser registers an end-user route: cross-origin protection, the
// same-origin rule for POSTs, the tenant from {tenant}, the end-user
// session, no-store caching and the branded error page.
func (s *Server) endUser(pattern string, h euHandler) {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		c := &euCtx{}
		err := s.checkSameOrigin(r)
		if err == nil {
			err = s.loadEndUser(w, r, c)
		}
		if err == nil {
			err = h(w, r, c)
		}
		if err != nil {
			s.writeEndUserError(w, r, c, err)
		}
	})
	s.mux.Handle(pattern, s.eu.cop.Handler(inner))
}

// errNoOrganisation answers an unknown tenant slug.
var errNoOrganisation = &euError{status: http.StatusNotFound, title: "Page not found",
	msg: "There is no organisation at this address. Check the link your agent gave you."}

// loadEndUser resolves {tenant} and the end-user session cookie.
func (s *Server) loadEndUser(w http.ResponseWriter, r *http.Request, c *euCtx) error {
	t, err := s.cfg.Tenants.TenantBySlug(r.Context(), r.PathValue("tenant"))
	if errors.Is(err, tenants.ErrNotFound) {
		return errNoOrganisation
	}
	if err != nil {
		return err
	}
	c.Tenant = t
	return s.loadEndUserSession(w, r, c)
}

// enduserHome sends /t/{tenant}/ to My connections.
func (s *Server) enduserHome(w http.ResponseWriter, r *http.Request, c *euCtx) error {
	return redirect(w, r, "/t/"+c.Tenant.Slug+"/me")
}

// euError is an end-user page error with its own title, message (safe to
// show) and actions.
type euError struct {
	status  int
	title   string
	msg     string
	actions []views.EndUserAction
	// cause is logged, never shown.
	cause error
}

func (e *euError) Error() string {
	if e.cause != nil {
		return e.msg + ": " + e.cause.Error()
	}
	return e.msg
}

func (e *euError) Unwrap() error { return e.cause }

// frame builds the branding around an end-user page.
func (s *Server) euFrame(r *http.Request, c *euCtx, title string) views.EndUserFrame {
	f := views.EndUserFrame{Head: head(r, title), TenantName: "Locksmith"}
	if c != nil && c.Tenant.Slug != "" {
		f.Head = head(r, title+" · "+c.Tenant.Name)
		f.TenantName, f.TenantSlug = c.Tenant.Name, c.Tenant.Slug
	}
	if c != nil && c.Session != nil {
		u := c.Session.User
		f.User = &views.EndUserIdentity{Name: u.Name, Email: u.Email, Subject: u.Subject}
	}
	return f
}

// writeEndUserError renders an error as a branded end-user page. Unknown
// errors are logged and shown as a 500 with the request id only.
func (s *Server) writeEndUserError(w http.ResponseWriter, r *http.Request, c *euCtx, err error) {
	ctx := r.Context()
	rid := RequestID(ctx)
	p := views.EndUserMessagePage{Frame: s.euFrame(r, c, "Something went wrong"), Tone: "danger", RequestID: rid}
	var ee *euError
	if errors.As(err, &ee) {
		p.Status, p.Title, p.Message, p.Actions = ee.status, ee.title, ee.msg, ee.actions
		if ee.cause != nil {
			s.cfg.Logger.WarnContext(ctx, "end-user flow refused", "err", err, "request_id", rid)
		}
	} else {
		status, msg, _ := statusAndMessage(err)
		p.Status, p.Title, p.Message = status, errorTitle(status), msg
		if status == http.StatusInternalServerError {
			s.cfg.Logger.ErrorContext(ctx, "request failed", "err", err, "request_id", rid)
			p.Message = "Something went wrong on our side. Try again in a moment; if it keeps happening, quote the request id below to your IT team."
		}
	}
	if p.Status != http.StatusInternalServerError && p.Status != http.StatusForbidden {
		p.Tone = "warning"
	}
	p.Frame.Head.Title = p.Title
	if c != nil && c.Tenant.Name != "" {
		p.Frame.Head.Title = p.Title + " · " + c.Tenant.Name
	}
	var buf bytes.Buffer
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if rerr := views.EndUserMessage(p).Render(ctx, &buf); rerr != nil {
		s.cfg.Logger.ErrorContext(ctx, "render error page", "err", rerr, "request_id", rid)
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(p.Status)
		_, _ = w.Write([]byte(p.Message + "\n"))
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(p.Status)
	_, _ = w.Write(buf.Bytes())
}

// allowFormTargets replaces the response's CSP with one whose form-action
// also allows the given origins (the IdP, the upstream's authorization
// server): browsers check form-action on the redirects that follow a form
// post, so "Allow" and "Not you?" need them. Anything that is not a plain
// http(s) origin is dropped.
func allowFormTargets(w http.ResponseWriter, r *http.Request, rawURLs ...string) {
	targets := []string{"'self'"}
	for _, raw := range rawURLs {
		if o := originOf(raw); o != "" {
			targets = append(targets, o)
		}
	}
	w.Header().Set("Content-Security-Policy", fmt.Sprintf(
		"default-src 'none'; script-src 'self' 'nonce-%s'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action %s; frame-ancestors 'none'; base-uri 'none'",
		CSPNonce(r.Context()), strings.Join(targets, " ")))
}

// originOf returns scheme://host[:port] of an absolute http(s) URL, or ""
// when the URL is not one or its host has characters that don't belong in
// a CSP source expression.
func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	for _, r := range u.Host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-:[]", r)) {
			return ""
		}
	}
	return u.Scheme + "://" + u.Host
}

// safeReturnPath returns p if it is a path on this site, else "". It
// refuses absolute and scheme-relative URLs ("https://evil.example",
// "//evil.example", "https:evil", "/\evil.example"), control characters
// and anything over 2000 bytes.
func safeReturnPath(p string) string {
	if p == "" || safeNext(p) != p {
		return ""
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f || p[i] == ' ' {
			return ""
		}
	}
	return p
}
