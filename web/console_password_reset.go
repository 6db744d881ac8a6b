package web

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/web/views"
)

// forgotPasswordFloor is the least time POST /forgot-password takes. An
// existing account costs a job insert and an unknown one nothing; both
// answer at the floor, so timing does not tell which (the email itself is
// sent by a River job, off the request path).
const forgotPasswordFloor = 200 * time.Millisecond

func (s *Server) forgotModel(r *http.Request) views.ForgotPasswordPage {
	return views.ForgotPasswordPage{
		Head:    head(r, "Reset your password"),
		Enabled: s.cfg.Tenants.ResetByEmail(),
		LinkTTL: fmt.Sprintf("%d minutes", int(tenants.PasswordResetTTL/time.Minute)),
	}
}

// forgotPasswordPage shows the reset form, or, without a mail server, how
// the operator makes a reset link.
func (s *Server) forgotPasswordPage(w http.ResponseWriter, r *http.Request) error {
	return s.render(w, r, http.StatusOK, views.ForgotPassword(s.forgotModel(r)))
}

// forgotPassword asks for a reset email (tenants.RequestPasswordReset). It
// answers the same page, in the same time (forgotPasswordFloor), whether or
// not an account has that email. Every request counts against the client
// IP (resetIPLimit) and the email (resetEmailLimit) per signInWindow; past
// either it answers 429 with Retry-After and does nothing. Without a mail
// server there is no form, and a post gets 404 and the operator's way.
func (s *Server) forgotPassword(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	p := s.forgotModel(r)
	if !p.Enabled {
		return s.render(w, r, http.StatusNotFound, views.ForgotPassword(p))
	}
	if err := parseForm(r); err != nil {
		return err
	}
	email := r.PostFormValue("email")
	p.Email = email
	keys := []string{"reset-ip:" + s.clientIP(r)}
	if normalized, err := tenants.NormalizeEmail(email); err == nil {
		keys = append(keys, "reset-email:"+normalized)
	}
	if wait, ok := s.console.signIns.allow(keys...); !ok {
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		p.Errors = views.Errors{"": fmt.Sprintf("Too many password-reset requests from your network or for this email. Try again in %d seconds.", secs)}
		return s.render(w, r, http.StatusTooManyRequests, views.ForgotPassword(p))
	}
	if err := s.cfg.Tenants.RequestPasswordReset(r.Context(), email); err != nil {
		errs, status, ok := formErrors(err, "email")
		if !ok {
			return err
		}
		p.Errors = errs
		return s.render(w, r, status, views.ForgotPassword(p))
	}
	if err := sleepUntil(r.Context(), start.Add(forgotPasswordFloor)); err != nil {
		return err
	}
	p.Sent, p.Email = true, ""
	return s.render(w, r, http.StatusOK, views.ForgotPassword(p))
}

// sleepUntil waits until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
