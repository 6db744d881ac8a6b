package web

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
)

// Console sessions and browser-route protection.
//
// The session cookie is "__Host-locksmith" when the base URL is https
// (Secure, Path=/, no Domain, so no subdomain can set or read it) and
// "locksmith_session" on plain-http development setups. It is HttpOnly and
// SameSite=Lax. Its value is a fresh random id created at every sign-in (only
// its hash is stored, see tenants.CreateSession), so a planted cookie never
// becomes a signed-in session; sign-out deletes the session server-side.
//
// Every browser route runs behind http.CrossOriginProtection (a cross-site
// POST, by Sec-Fetch-Site or by Origin, is refused with 403) and an extra
// same-origin rule: a state-changing request that carries an Origin must
// carry this server's origin.

// signInLimit and signInWindow bound failed sign-ins per client IP and per
// email, and, counted apart, failed sign-ups (a taken or invalid email:
// probing which emails have accounts) and failed set-password posts (a
// wrong or used link: guessing links) per client IP. Counters live in
// memory, so the limit is per instance.
const (
	signInLimit  = 10
	signInWindow = time.Minute
)

// resetIPLimit and resetEmailLimit bound password-reset requests per client
// IP and per email, per signInWindow. Every POST /forgot-password counts,
// not only failures: each one may put an email in someone's inbox.
const (
	resetIPLimit    = 10
	resetEmailLimit = 5
)

// consoleState is the console's per-server state.
type consoleState struct {
	cop *http.CrossOriginProtection
	// signIns counts failed sign-ins, sign-ups and set-password posts
	// (keys "ip:", "email:", "signup-ip:", "setpw-ip:") and every
	// password-reset request ("reset-ip:", "reset-email:", with their own
	// limits).
	signIns *limiter
	// webhookTests counts "Send a test event" uses per tenant.
	webhookTests *limiter
}

// sessionKey keys the request's *pageState in its context.
type sessionKey struct{}

// pageState is what the browser middleware learned about a request: the
// signed-in account and, under /console/t/{tenant}, the tenant and role.
// It is a pointer in the context, so writeError (which sees the outer
// request) can render error pages inside the right frame.
type pageState struct {
	account *tenants.Account
	token   string
	tenant  *tenants.Tenant
	role    tenants.Role
}

func pageStateFrom(ctx context.Context) *pageState {
	st, _ := ctx.Value(sessionKey{}).(*pageState)
	return st
}

// sessionCookieName is __Host-locksmith under https, locksmith_session otherwise.
func (s *Server) sessionCookieName() string {
	if s.cfg.BaseURL.Scheme == "https" {
		return "__Host-locksmith"
	}
	return "locksmith_session"
}

func (s *Server) sessionCookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     s.sessionCookieName(),
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		Secure:   s.cfg.BaseURL.Scheme == "https",
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

// startSession signs the account in with a brand-new session id, ending the
// request's previous session if it had one.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, accountID uuid.UUID) error {
	if st := pageStateFrom(r.Context()); st != nil && st.token != "" {
		if err := s.cfg.Tenants.DeleteSession(r.Context(), st.token); err != nil {
			return fmt.Errorf("web: end previous session: %w", err)
		}
	}
	tok, err := s.cfg.Tenants.CreateSession(r.Context(), accountID)
	if err != nil {
		return fmt.Errorf("web: create session: %w", err)
	}
	http.SetCookie(w, s.sessionCookie(tok, int(tenants.SessionAbsolute/time.Second)))
	return nil
}

// endSession deletes the request's session server-side and clears the cookie.
func (s *Server) endSession(w http.ResponseWriter, r *http.Request) error {
	if st := pageStateFrom(r.Context()); st != nil && st.token != "" {
		if err := s.cfg.Tenants.DeleteSession(r.Context(), st.token); err != nil {
			return fmt.Errorf("web: delete session: %w", err)
		}
		st.account, st.token = nil, ""
	}
	http.SetCookie(w, s.sessionCookie("", -1))
	return nil
}

// browser registers a browser route: cross-origin protection, the same-origin
// rule for state-changing requests, the session lookup and no-store caching.
func (s *Server) browser(pattern string, h HandlerFunc) {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := &pageState{}
		r = r.WithContext(context.WithValue(r.Context(), sessionKey{}, st))
		w.Header().Set("Cache-Control", "no-store")
		err := s.checkSameOrigin(r)
		if err == nil {
			err = s.loadSession(w, r, st)
		}
		if err == nil {
			err = h(w, r)
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	})
	s.mux.Handle(pattern, s.console.cop.Handler(inner))
}

// errCrossOrigin is the answer to a refused cross-origin request.
var errCrossOrigin = &statusError{status: http.StatusForbidden, msg: "this request came from another site, so it was refused; go back to the page, reload it and try again"}

// checkSameOrigin refuses a state-changing request whose Origin is neither
// the public base URL's origin nor the origin the request was addressed to.
// (CrossOriginProtection has already refused cross-site Sec-Fetch-Site.)
func (s *Server) checkSameOrigin(r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	base := s.cfg.BaseURL.Scheme + "://" + s.cfg.BaseURL.Host
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if strings.EqualFold(origin, base) || strings.EqualFold(origin, scheme+"://"+r.Host) {
		return nil
	}
	return errCrossOrigin
}

// loadSession resolves the session cookie into st. An unknown or expired
// session is cleared, and the request continues signed out.
func (s *Server) loadSession(w http.ResponseWriter, r *http.Request, st *pageState) error {
	c, err := r.Cookie(s.sessionCookieName())
	if err != nil || c.Value == "" {
		return nil
	}
	acct, err := s.cfg.Tenants.SessionAccount(r.Context(), c.Value)
	if errors.Is(err, tenants.ErrNotFound) {
		http.SetCookie(w, s.sessionCookie("", -1))
		return nil
	}
	if err != nil {
		return fmt.Errorf("web: load session: %w", err)
	}
	st.account, st.token = &acct, c.Value
	return nil
}

// consoleCtx is what a tenant page handler gets: who is asking, in which
// tenant, with which role.
type consoleCtx struct {
	Account tenants.Account
	Tenant  tenants.Tenant
	Role    tenants.Role
}

// accountHandler is a handler that needs a signed-in account.
type accountHandler func(w http.ResponseWriter, r *http.Request, acct tenants.Account) error

// tenantHandler is a handler under /console/t/{tenant}/.
type tenantHandler func(w http.ResponseWriter, r *http.Request, c consoleCtx) error

// requireAccount sends a signed-out request to /signin, remembering where it
// was going (same-origin paths only; see safeNext).
func (s *Server) requireAccount(h accountHandler) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		st := pageStateFrom(r.Context())
		if st == nil || st.account == nil {
			next := "/console"
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				next = safeNext(r.URL.RequestURI())
			}
			http.Redirect(w, r, "/signin?next="+url.QueryEscape(next), http.StatusSeeOther)
			return nil
		}
		return h(w, r, *st.account)
	}
}

// errNoTenant is the answer for a tenant that doesn't exist and for one the
// account is not a member of alike, so a slug never reveals a tenant.
func errNoTenant(slug string) error {
	return &statusError{status: http.StatusNotFound, msg: fmt.Sprintf("there is no tenant “%s” that you are a member of", slug)}
}

// tenantAccess resolves {tenant} and the account's role in it. A non-member
// gets 404; a viewer's state-changing request gets 403, whatever the route;
// a role below need gets 403.
func (s *Server) tenantAccess(need tenants.Role, h tenantHandler) HandlerFunc {
	return s.requireAccount(func(w http.ResponseWriter, r *http.Request, acct tenants.Account) error {
		slug := r.PathValue("tenant")
		t, err := s.cfg.Tenants.TenantBySlug(r.Context(), slug)
		if errors.Is(err, tenants.ErrNotFound) {
			return errNoTenant(slug)
		}
		if err != nil {
			return err
		}
		role, err := s.cfg.Tenants.MemberRole(r.Context(), t.ID, acct.ID)
		if errors.Is(err, tenants.ErrNotFound) {
			return errNoTenant(slug)
		}
		if err != nil {
			return err
		}
		st := pageStateFrom(r.Context())
		st.tenant, st.role = &t, role
		if !isSafeMethod(r.Method) && !role.Can(tenants.RoleAdmin) {
			return &statusError{status: http.StatusForbidden, msg: "you have view-only access to this tenant; ask an owner for the admin role to make changes"}
		}
		if !role.Can(need) {
			return &statusError{status: http.StatusForbidden, msg: fmt.Sprintf("only %ss can do that in this tenant", need)}
		}
		return h(w, r, consoleCtx{Account: acct, Tenant: t, Role: role})
	})
}

func isSafeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// safeNext returns next if it is a path on this site, else "/console". It
// refuses absolute and scheme-relative URLs ("https://evil.example",
// "//evil.example", "/\evil.example") and control characters.
func safeNext(next string) string {
	const home = "/console"
	if next == "" || len(next) > 2000 || next[0] != '/' || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\x00\r\n\t") {
		return home
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") {
		return home
	}
	return next
}

// clientIP is the address sign-in attempts are counted against: the
// configured proxy header (e.g. Fly-Client-IP) when set and valid, else the
// connection's address. IPv6 addresses count per /64.
func (s *Server) clientIP(r *http.Request) string {
	raw := ""
	if s.cfg.ClientIPHeader != "" {
		raw = strings.TrimSpace(r.Header.Get(s.cfg.ClientIPHeader))
	}
	if raw == "" {
		raw = r.RemoteAddr
		if h, _, err := net.SplitHostPort(raw); err == nil {
			raw = h
		}
	}
	ip, err := netip.ParseAddr(raw)
	if err != nil {
		return raw
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// limiter counts failures (sign-ins) or uses (webhook test events,
// password-reset requests) per key in fixed windows. It is in memory, per
// instance, and safe for concurrent use.
type limiter struct {
	limit int
	// prefixes give keys that start with a prefix their own limit.
	prefixes []prefixLimit
	window   time.Duration
	now      func() time.Time

	mu   sync.Mutex
	hits map[string]*hitWindow
}

type hitWindow struct {
	start time.Time
	n     int
}

// limiterMaxKeys bounds the limiter's memory: past it, expired windows are
// swept on every failure.
const limiterMaxKeys = 10000

// prefixLimit is the limit of the keys that start with prefix.
type prefixLimit struct {
	prefix string
	limit  int
}

// newLimiter allows limit hits per key per window; keys matching one of
// prefixes (the first that matches) get that prefix's limit instead.
func newLimiter(limit int, window time.Duration, now func() time.Time, prefixes ...prefixLimit) *limiter {
	return &limiter{limit: limit, prefixes: prefixes, window: window, now: now, hits: map[string]*hitWindow{}}
}

// limitFor is key's limit.
func (l *limiter) limitFor(key string) int {
	for _, p := range l.prefixes {
		if strings.HasPrefix(key, p.prefix) {
			return p.limit
		}
	}
	return l.limit
}

// waitLocked is how long until the longest used-up window among keys ends
// (0 if none is used up); l.mu is held.
func (l *limiter) waitLocked(now time.Time, keys ...string) time.Duration {
	var wait time.Duration
	for _, k := range keys {
		h := l.hits[k]
		if h == nil || now.Sub(h.start) >= l.window || h.n < l.limitFor(k) {
			continue
		}
		wait = max(wait, h.start.Add(l.window).Sub(now))
	}
	return wait
}

// blocked reports whether any key has used up its failures, and how long
// until the longest of those windows ends.
func (l *limiter) blocked(keys ...string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	wait := l.waitLocked(l.now(), keys...)
	return wait, wait > 0
}

// fail counts one failure against every key.
func (l *limiter) fail(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.countLocked(l.now(), keys...)
}

// countLocked counts one hit against every key; l.mu is held.
func (l *limiter) countLocked(now time.Time, keys ...string) {
	if len(l.hits) >= limiterMaxKeys {
		for k, h := range l.hits {
			if now.Sub(h.start) >= l.window {
				delete(l.hits, k)
			}
		}
	}
	for _, k := range keys {
		h := l.hits[k]
		if h == nil || now.Sub(h.start) >= l.window {
			h = &hitWindow{start: now}
			l.hits[k] = h
		}
		h.n++
	}
}

// allow counts one use against every key if each has uses left in its
// window, and reports whether they had; if not, it also says how long until
// the longest used-up window ends. Refused uses are not counted.
func (l *limiter) allow(keys ...string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if wait := l.waitLocked(now, keys...); wait > 0 {
		return wait, false
	}
	l.countLocked(now, keys...)
	return 0, true
}

// reset forgets a key's failures (after a successful sign-in).
func (l *limiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.hits, key)
}
