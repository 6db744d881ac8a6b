package web

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/web/views"
)

// home sends the site root to the console, or to sign-in.
func (s *Server) home(w http.ResponseWriter, r *http.Request) error {
	if st := pageStateFrom(r.Context()); st != nil && st.account != nil {
		return redirect(w, r, "/console")
	}
	return redirect(w, r, "/signin")
}

// authPage builds the model of the sign-in or sign-up page. alt is the
// other page's path; next is carried to it only when it is safe.
func authPage(r *http.Request, title, alt, next, email string, errs views.Errors) views.AuthPage {
	next = safeNext(next)
	altHref := alt
	if next != "/console" {
		altHref += "?next=" + url.QueryEscape(next)
	}
	return views.AuthPage{Head: head(r, title), Email: email, Next: next, Errors: errs, AltHref: altHref}
}

func signedIn(r *http.Request) bool {
	st := pageStateFrom(r.Context())
	return st != nil && st.account != nil
}

func (s *Server) signInPage(w http.ResponseWriter, r *http.Request) error {
	next := r.URL.Query().Get("next")
	if signedIn(r) {
		return redirect(w, r, safeNext(next))
	}
	p := authPage(r, "Sign in", "/signup", next, "", nil)
	if r.URL.Query().Get("done") == "password" {
		p.Notice = "Your password is set and this account was signed out everywhere. Sign in with the new password."
	}
	return s.render(w, r, http.StatusOK, views.SignIn(p))
}

// signIn checks the password, counting failures per client IP and per email
// (signInLimit per signInWindow, per instance). Past the limit it answers
// 429 with Retry-After before checking anything. On success the account gets
// a brand-new session.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) error {
	if err := parseForm(r); err != nil {
		return err
	}
	email, password, next := r.PostFormValue("email"), r.PostFormValue("password"), r.PostFormValue("next")
	page := authPage(r, "Sign in", "/signup", next, email, nil)

	normalized, err := tenants.NormalizeEmail(email)
	if err != nil {
		normalized = strings.ToLower(strings.TrimSpace(email))
	}
	keys := []string{"ip:" + s.clientIP(r), "email:" + normalized}
	if msg, blocked := s.authBlocked(w, "sign-in", keys...); blocked {
		page.Errors = views.Errors{"": msg}
		return s.render(w, r, http.StatusTooManyRequests, views.SignIn(page))
	}

	acct, err := s.cfg.Tenants.SignIn(r.Context(), email, password)
	if err != nil {
		if errors.Is(err, tenants.ErrBadCredentials) {
			s.console.signIns.fail(keys...)
		}
		errs, status, ok := formErrors(err, "email", "password")
		if !ok {
			return err
		}
		page.Errors = errs
		return s.render(w, r, status, views.SignIn(page))
	}
	s.console.signIns.reset(keys[1])
	if err := s.startSession(w, r, acct.ID); err != nil {
		return err
	}
	return redirect(w, r, page.Next)
}

// authBlocked reports whether keys are past the failed-attempt limit; if
// so it sets Retry-After and returns the message for the form.
func (s *Server) authBlocked(w http.ResponseWriter, what string, keys ...string) (string, bool) {
	wait, blocked := s.console.signIns.blocked(keys...)
	if !blocked {
		return "", false
	}
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return fmt.Sprintf("Too many failed %s attempts. Try again in %d seconds.", what, secs), true
}

func (s *Server) signUpPage(w http.ResponseWriter, r *http.Request) error {
	next := r.URL.Query().Get("next")
	if signedIn(r) {
		return redirect(w, r, safeNext(next))
	}
	return s.render(w, r, http.StatusOK, views.SignUp(authPage(r, "Create an account", "/signin", next, "", nil)))
}

// signUp creates an account and signs it in. Failed attempts (a taken or
// invalid email, a weak password) are counted per client IP like failed
// sign-ins, so the form can't be used to probe which emails have accounts.
func (s *Server) signUp(w http.ResponseWriter, r *http.Request) error {
	if err := parseForm(r); err != nil {
		return err
	}
	email, password, next := r.PostFormValue("email"), r.PostFormValue("password"), r.PostFormValue("next")
	page := authPage(r, "Create an account", "/signin", next, email, nil)
	key := "signup-ip:" + s.clientIP(r)
	if msg, blocked := s.authBlocked(w, "sign-up", key); blocked {
		page.Errors = views.Errors{"": msg}
		return s.render(w, r, http.StatusTooManyRequests, views.SignUp(page))
	}
	acct, err := s.cfg.Tenants.SignUp(r.Context(), email, password)
	if err != nil {
		s.console.signIns.fail(key)
		errs, status, ok := formErrors(err, "email", "password")
		if !ok {
			return err
		}
		page.Errors = errs
		return s.render(w, r, status, views.SignUp(page))
	}
	if err := s.startSession(w, r, acct.ID); err != nil {
		return err
	}
	return redirect(w, r, page.Next)
}

// signOut deletes the session server-side and clears the cookie.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request) error {
	if err := s.endSession(w, r); err != nil {
		return err
	}
	return redirect(w, r, "/signin")
}

func (s *Server) setPasswordPage(w http.ResponseWriter, r *http.Request) error {
	tok := r.URL.Query().Get("token")
	p := views.AuthPage{Head: head(r, "Set your password"), Token: tok}
	if tok == "" {
		p.Errors = views.Errors{"": "This link is incomplete. Open the whole link you were given, or ask for a new one."}
		return s.render(w, r, http.StatusBadRequest, views.SetPassword(p))
	}
	return s.render(w, r, http.StatusOK, views.SetPassword(p))
}

// setPassword consumes a one-time set-password or password-reset link. Every
// console session of the account ends (tenants.SetPasswordWithToken), and
// so does this browser's, whoever it was signed in as; the sign-in page then
// asks for the new password. Failed posts are counted per client IP, so
// links can't be guessed.
func (s *Server) setPassword(w http.ResponseWriter, r *http.Request) error {
	if err := parseForm(r); err != nil {
		return err
	}
	tok := r.PostFormValue("token")
	p := views.AuthPage{Head: head(r, "Set your password"), Token: tok}
	key := "setpw-ip:" + s.clientIP(r)
	if msg, blocked := s.authBlocked(w, "set-password", key); blocked {
		p.Errors = views.Errors{"": msg}
		return s.render(w, r, http.StatusTooManyRequests, views.SetPassword(p))
	}
	_, err := s.cfg.Tenants.SetPasswordWithToken(r.Context(), tok, r.PostFormValue("password"))
	if err != nil {
		s.console.signIns.fail(key)
		errs, status, ok := formErrors(err, "password")
		if !ok {
			return err
		}
		p.Errors = errs
		return s.render(w, r, status, views.SetPassword(p))
	}
	if err := s.endSession(w, r); err != nil {
		return err
	}
	return redirect(w, r, "/signin?done=password")
}
