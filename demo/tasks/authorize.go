package tasks

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"time"
)

// pendingAuth is a validated authorization request waiting for the consent
// decision. It is single-use and expires with the code lifetime.
type pendingAuth struct {
	id          string
	clientID    string
	redirectURI string
	state       string
	scopes      []string
	challenge   string
	resources   []string
	loginHint   string
	expiresAt   time.Time
}

// authCode is an issued authorization code, bound to client, redirect URI,
// PKCE challenge and user. It is stored by hash.
type authCode struct {
	clientID    string
	redirectURI string
	challenge   string
	subject     string
	scopes      []string
	resources   []string
	expiresAt   time.Time
	used        bool    // exchanged, or burned by a failed exchange
	family      *family // set when exchanged
}

// pageError is a consent-page error shown as HTML, never redirected (the
// redirect URI is not trusted, or the request is gone).
type pageError struct {
	status int
	msg    string
}

func (e *pageError) Error() string { return fmt.Sprintf("%d: %s", e.status, e.msg) }

var (
	pkceChallengeRE = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
	pkceVerifierRE  = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)
)

var scopeDescriptions = map[string]string{
	ScopeRead:   "see your tasks",
	ScopeWrite:  "create and edit your tasks",
	ScopeDelete: "delete your tasks",
}

// redirectAllowed reports whether uri is an exact registered redirect URI of
// c, or a loopback URI when c allows those.
func redirectAllowed(c Client, uri string) bool {
	if uri == "" {
		return false
	}
	if slices.Contains(c.RedirectURIs, uri) {
		return true
	}
	if !c.AllowLoopbackRedirects {
		return false
	}
	u, err := url.Parse(uri)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Fragment != "" || u.User != nil || u.Opaque != "" {
		return false
	}
	switch u.Hostname() {
	case "127.0.0.1", "::1", "localhost":
		return true
	}
	return false
}

func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for _, k := range []string{"client_id", "redirect_uri"} {
		if len(q[k]) > 1 {
			return &pageError{http.StatusBadRequest, "duplicate " + k + " parameter"}
		}
	}
	client, ok := s.clients[q.Get("client_id")]
	if !ok {
		return &pageError{http.StatusBadRequest, "unknown client_id"}
	}
	redirectURI := q.Get("redirect_uri")
	if !redirectAllowed(client, redirectURI) {
		return &pageError{http.StatusBadRequest, "redirect_uri is not registered for this client"}
	}
	state := q.Get("state")
	fail := func(code, desc string) error {
		s.redirect(w, r, redirectURI, url.Values{"error": {code}, "error_description": {desc}}, state)
		return nil
	}
	for k, v := range q {
		if len(v) > 1 && k != "resource" {
			return fail("invalid_request", "duplicate "+k+" parameter")
		}
	}
	if rt := q.Get("response_type"); rt != "code" {
		return fail("unsupported_response_type", "response_type must be code")
	}
	if m := q.Get("code_challenge_method"); m != "S256" {
		return fail("invalid_request", "PKCE with code_challenge_method S256 is required")
	}
	challenge := q.Get("code_challenge")
	if !pkceChallengeRE.MatchString(challenge) {
		return fail("invalid_request", "code_challenge must be a base64url SHA-256")
	}
	scopes, err := parseScopes(q.Get("scope"))
	if err != nil {
		return fail("invalid_scope", err.Error())
	}
	if len(scopes) == 0 {
		scopes = []string{ScopeRead}
	}
	for _, res := range q["resource"] {
		u, err := url.Parse(res)
		if err != nil || !u.IsAbs() || u.Fragment != "" {
			return fail("invalid_target", "resource must be an absolute URI without fragment")
		}
	}

	now := s.clock()
	p := &pendingAuth{
		id:          newSecret("req_"),
		clientID:    client.ID,
		redirectURI: redirectURI,
		state:       state,
		scopes:      scopes,
		challenge:   challenge,
		resources:   slices.Clone(q["resource"]),
		loginHint:   q.Get("login_hint"),
		expiresAt:   now.Add(s.codeLifetime),
	}
	if _, known := s.userByName[p.loginHint]; s.autoApprove && known {
		code, err := s.issueCode(p, p.loginHint)
		if err != nil {
			return err
		}
		s.redirect(w, r, redirectURI, url.Values{"code": {code}}, state)
		return nil
	}

	s.mu.Lock()
	err = s.ensureCapacityLocked(1)
	if err == nil {
		s.pending[p.id] = p
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("tasks: authorize: %w", err)
	}
	selected := ""
	if _, known := s.userByName[p.loginHint]; known {
		selected = p.loginHint
	}
	return s.renderConsent(w, http.StatusOK, p, selected, "")
}

// lookupPending returns the unexpired pending request id.
func (s *Server) lookupPending(id string) (*pendingAuth, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending[id]
	if !ok || !s.clock().Before(p.expiresAt) {
		return nil, &pageError{http.StatusBadRequest, "authorization request expired or unknown; start again"}
	}
	return p, nil
}

func (s *Server) handleConsent(w http.ResponseWriter, r *http.Request) error {
	p, err := s.lookupPending(r.URL.Query().Get("request_id"))
	if err != nil {
		return err
	}
	user := r.URL.Query().Get("user")
	if _, ok := s.userByName[user]; !ok {
		return s.renderConsent(w, http.StatusBadRequest, p, "", "unknown user")
	}
	return s.renderConsent(w, http.StatusOK, p, user, "")
}

func (s *Server) handleDecision(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		return &pageError{http.StatusBadRequest, "malformed form"}
	}
	p, err := s.lookupPending(r.PostForm.Get("request_id"))
	if err != nil {
		return err
	}
	switch r.PostForm.Get("decision") {
	case "deny":
		s.mu.Lock()
		delete(s.pending, p.id)
		s.mu.Unlock()
		s.redirect(w, r, p.redirectURI, url.Values{"error": {"access_denied"}, "error_description": {"the user denied the request"}}, p.state)
		return nil
	case "allow":
		user := r.PostForm.Get("selected_user")
		if _, ok := s.userByName[user]; !ok {
			return s.renderConsent(w, http.StatusBadRequest, p, "", "pick a user before allowing")
		}
		s.mu.Lock()
		_, still := s.pending[p.id]
		delete(s.pending, p.id)
		s.mu.Unlock()
		if !still {
			return &pageError{http.StatusBadRequest, "authorization request already decided"}
		}
		code, err := s.issueCode(p, user)
		if err != nil {
			return err
		}
		s.redirect(w, r, p.redirectURI, url.Values{"code": {code}}, p.state)
		return nil
	default:
		return s.renderConsent(w, http.StatusBadRequest, p, r.PostForm.Get("selected_user"), "choose Allow or Deny")
	}
}

// issueCode stores a new authorization code for p and subject and returns it.
func (s *Server) issueCode(p *pendingAuth, subject string) (string, error) {
	code := newSecret("acme_code_")
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureCapacityLocked(1); err != nil {
		return "", fmt.Errorf("tasks: issue code: %w", err)
	}
	s.codes[TokenHash(code)] = &authCode{
		clientID:    p.clientID,
		redirectURI: p.redirectURI,
		challenge:   p.challenge,
		subject:     subject,
		scopes:      p.scopes,
		resources:   p.resources,
		expiresAt:   s.clock().Add(s.codeLifetime),
	}
	s.log.Info("authorization code issued", "client_id", p.clientID, "subject", subject)
	return code, nil
}

// redirect sends the user agent back to the client with params, state and the
// RFC 9207 iss parameter.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, redirectURI string, params url.Values, state string) {
	u, err := url.Parse(redirectURI)
	if err != nil { // validated before; defensive
		s.renderPage(w, http.StatusBadRequest, pageData{Error: "invalid redirect_uri"})
		return
	}
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	if state != "" {
		q.Set("state", state)
	}
	q.Set("iss", s.issuerFor(r))
	u.RawQuery = q.Encode()
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), status)
}

// page adapts a browser handler returning an error: *pageError renders the
// HTML error page with its status, anything else a logged 500.
func (s *Server) page(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var pe *pageError
		if !errors.As(err, &pe) {
			s.log.Error("acme tasks consent failed", "method", r.Method, "path", r.URL.Path, "err", err)
			pe = &pageError{http.StatusInternalServerError, "internal error"}
		}
		s.renderPage(w, pe.status, pageData{Error: pe.msg})
	}
}

type scopeView struct{ Name, Description string }

type userView struct {
	Name, Email string
	Selected    bool
}

type consentView struct {
	ClientID  string
	RequestID string
	Scopes    []scopeView
	Resources []string
	Users     []userView
	Selected  string
	Error     string
}

type pageData struct {
	Nonce   string
	Consent *consentView
	Error   string
}

func (s *Server) renderConsent(w http.ResponseWriter, status int, p *pendingAuth, selected, errMsg string) error {
	v := &consentView{ClientID: p.clientID, RequestID: p.id, Resources: p.resources, Selected: selected, Error: errMsg}
	for _, sc := range p.scopes {
		v.Scopes = append(v.Scopes, scopeView{Name: sc, Description: scopeDescriptions[sc]})
	}
	for _, u := range s.users {
		v.Users = append(v.Users, userView{Name: u.Name, Email: u.Email, Selected: u.Name == selected})
	}
	s.renderPage(w, status, pageData{Consent: v})
	return nil
}

func (s *Server) renderPage(w http.ResponseWriter, status int, d pageData) {
	d.Nonce = rand.Text()
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, d); err != nil {
		s.log.Error("acme tasks render failed", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+d.Nonce+"'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Acme Tasks · Authorize</title>
<style nonce="{{.Nonce}}">
body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#111}
button{margin:.25rem;padding:.5rem 1rem;font:inherit;cursor:pointer}
button[aria-pressed=true]{outline:3px solid #2563eb}
fieldset{border:1px solid #ccc;border-radius:.5rem}
.error{color:#b91c1c}
</style>
</head>
<body>
{{- with .Consent}}
<main data-testid="as-consent">
<h1>Acme Tasks</h1>
<p><strong data-testid="as-client">{{.ClientID}}</strong> wants to:</p>
<ul>
{{- range .Scopes}}
<li data-testid="as-scope-{{.Name}}"><code>{{.Name}}</code>: {{.Description}}</li>
{{- end}}
</ul>
{{- if .Resources}}
<p>for {{range .Resources}}<code data-testid="as-resource">{{.}}</code> {{end}}</p>
{{- end}}
{{- if .Error}}
<p class="error" role="alert" data-testid="as-error">{{.Error}}</p>
{{- end}}
<form method="post" action="/authorize/decision">
<input type="hidden" name="request_id" value="{{.RequestID}}" data-testid="as-request-id">
<input type="hidden" name="selected_user" value="{{.Selected}}">
<fieldset>
<legend>Who are you?</legend>
{{- range .Users}}
<button type="submit" formmethod="get" formaction="/authorize/consent" name="user" value="{{.Name}}" aria-pressed="{{.Selected}}" data-testid="as-user-{{.Name}}">{{.Name}} &lt;{{.Email}}&gt;</button>
{{- end}}
</fieldset>
{{- if .Selected}}
<p>Continuing as <strong data-testid="as-selected-user">{{.Selected}}</strong>.</p>
{{- else}}
<p>Pick a user to continue.</p>
{{- end}}
<button type="submit" name="decision" value="allow" data-testid="as-allow"{{if not .Selected}} disabled{{end}}>Allow</button>
<button type="submit" name="decision" value="deny" data-testid="as-deny">Deny</button>
</form>
</main>
{{- else}}
<main>
<h1>Acme Tasks</h1>
<p class="error" role="alert" data-testid="as-error">{{.Error}}</p>
</main>
{{- end}}
</body>
</html>
`))
