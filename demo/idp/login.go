package idp

import (
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// loginPage is the view model of the login page.
type loginPage struct {
	AuthRequestID string
	ClientID      string
	Scopes        []string
	Resources     []string
	Users         []User
}

var loginTemplate = template.Must(template.New("login").Funcs(template.FuncMap{
	"join": func(s []string) string { return strings.Join(s, ", ") },
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Demo IdP: sign in</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem; color: #1f2933; }
button { display: block; width: 100%; margin: .5rem 0; padding: .75rem; text-align: left; font-size: 1rem; cursor: pointer; }
button small { display: block; color: #52606d; }
code { background: #f0f4f8; padding: 0 .25rem; }
</style>
</head>
<body>
<main>
<h1>Demo IdP</h1>
<p>Sign in to <strong data-testid="login-client">{{.ClientID}}</strong> as a demo user.</p>
{{if .Scopes}}<p>Scopes: {{range .Scopes}}<code>{{.}}</code> {{end}}</p>{{end}}
{{if .Resources}}<p>Resources: {{range .Resources}}<code>{{.}}</code> {{end}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="authRequestID" value="{{.AuthRequestID}}">
{{range .Users}}<button type="submit" name="username" value="{{.Username}}" data-testid="login-{{.Username}}">{{.Username}}<small>{{.Email}} · {{join .Groups}}</small></button>
{{end}}<button type="submit" name="cancel" value="1" data-testid="login-cancel">Cancel</button>
</form>
</main>
</body>
</html>
`))

// serveLogin shows the demo users (GET) and completes the authorization request with the
// chosen one (POST), redirecting to op's callback, which redirects to the client with a code.
// Cancel answers the client with access_denied.
func (i *IdP) serveLogin(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	w.Header().Set("Cache-Control", "no-store")
	if err := r.ParseForm(); err != nil {
		http.Error(w, "invalid form", http.StatusBadRequest)
		return
	}
	id := r.Form.Get("authRequestID")
	req, ok := i.store.authRequestCopy(id)
	if !ok || req.done {
		http.Error(w, "unknown or expired login request; start again from the application", http.StatusBadRequest)
		return
	}
	if r.Method == http.MethodGet {
		page := loginPage{AuthRequestID: id, ClientID: req.clientID, Scopes: req.scopes, Resources: req.resources, Users: i.store.users}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := loginTemplate.Execute(w, page); err != nil {
			i.logger.ErrorContext(r.Context(), "idp: render login", "err", err)
		}
		return
	}
	if r.Form.Get("cancel") != "" {
		stored, err := i.store.AuthRequestByID(r.Context(), id)
		if err != nil {
			http.Error(w, "unknown login request", http.StatusBadRequest)
			return
		}
		_ = i.store.DeleteAuthRequest(r.Context(), id)
		op.AuthRequestError(w, r, stored, oidc.ErrAccessDenied().WithDescription("the user cancelled the sign-in"), i.provider)
		return
	}
	user, ok := i.store.userByName(r.Form.Get("username"))
	if !ok {
		http.Error(w, "unknown user", http.StatusBadRequest)
		return
	}
	if err := i.store.completeLogin(id, user); err != nil {
		http.Error(w, "unknown or expired login request", http.StatusBadRequest)
		return
	}
	i.logger.InfoContext(r.Context(), "idp login", "subject", user.Subject, "client_id", req.clientID)
	callback := i.provider.AuthorizationEndpoint().Relative() + "/callback?id=" + url.QueryEscape(id)
	http.Redirect(w, r, callback, http.StatusSeeOther)
}
