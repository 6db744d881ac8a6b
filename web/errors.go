package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/web/views"
)

// statusError is an error the web layer raises itself, with an explicit status.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

// problem is an RFC 9457 problem details body.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// statusAndMessage maps an error to a status and the message safe to show.
func statusAndMessage(err error) (int, string, string) {
	var se *statusError
	if errors.As(err, &se) {
		return se.status, se.msg, ""
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge, "the request body is too large", ""
	}
	var pub *tenants.Error
	msg, field := "", ""
	if errors.As(err, &pub) {
		msg, field = pub.Message, pub.Field
	}
	switch {
	case errors.Is(err, tenants.ErrNotFound):
		return http.StatusNotFound, orDefault(msg, "not found"), field
	case errors.Is(err, tenants.ErrForbidden):
		return http.StatusForbidden, orDefault(msg, "you don't have permission to do that"), field
	case errors.Is(err, tenants.ErrConflict):
		return http.StatusConflict, orDefault(msg, "that conflicts with something that already exists"), field
	case errors.Is(err, tenants.ErrInvalid):
		return http.StatusBadRequest, orDefault(msg, "the request is invalid"), field
	case errors.Is(err, tenants.ErrUnavailable):
		return http.StatusServiceUnavailable, "the database is not available right now; retry in a few seconds", ""
	}
	return http.StatusInternalServerError, "", ""
}

func orDefault(s, d string) string {
	if s != "" {
		return s
	}
	return d
}

// unavailableRetryAfter is the Retry-After, in seconds, of a 503 answered
// while the database is unavailable.
const unavailableRetryAfter = "5"

// writeError is the one place that turns an error into a response. Unknown
// errors are logged with the request id and answered with a 500 that shows
// only the request id.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg, field := statusAndMessage(err)
	rid := RequestID(r.Context())
	switch {
	case status == http.StatusInternalServerError:
		s.cfg.Logger.ErrorContext(r.Context(), "request failed", "err", err, "request_id", rid)
		msg = "something went wrong on our side; quote request id " + rid + " if you contact support"
	case errors.Is(err, tenants.ErrUnavailable):
		s.cfg.Logger.WarnContext(r.Context(), "request failed: database unavailable", "err", err, "request_id", rid)
		w.Header().Set("Retry-After", unavailableRetryAfter)
	}
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: msg, Field: field, RequestID: rid})
		return
	}
	s.writeErrorPage(w, r, status, msg)
}

// errorTitle is the heading of an HTML error page.
func errorTitle(status int) string {
	switch status {
	case http.StatusNotFound:
		return "Page not found"
	case http.StatusForbidden:
		return "You can't do that here"
	case http.StatusTooManyRequests:
		return "Too many attempts"
	case http.StatusRequestEntityTooLarge:
		return "That was too large"
	case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusConflict:
		return "That didn't work"
	case http.StatusServiceUnavailable:
		return "Not available right now"
	}
	if status >= 500 {
		return "Something went wrong"
	}
	return http.StatusText(status)
}

// writeErrorPage renders the HTML error page for browser routes: inside the
// console frame when the request had a tenant, inside the account top bar
// when signed in, and bare otherwise. It always shows the request id.
func (s *Server) writeErrorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	ctx := r.Context()
	title := errorTitle(status)
	p := views.ErrorPage{Head: head(r, title), Status: status, Title: title, Message: msg, RequestID: RequestID(ctx)}
	if st := pageStateFrom(ctx); st != nil && st.account != nil {
		p.AccountEmail = st.account.Email
		if st.tenant != nil {
			if f, err := s.frame(ctx, r, *st.account, *st.tenant, st.role, "", title); err == nil {
				f.Notice = ""
				p.Frame = &f
			}
		}
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	var buf bytes.Buffer
	if err := views.Error(p).Render(ctx, &buf); err != nil {
		s.cfg.Logger.ErrorContext(ctx, "render error page", "err", err, "request_id", p.RequestID)
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(msg + "\n"))
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func wantsJSON(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/api/") ||
		strings.Contains(r.Header.Get("Accept"), "json") ||
		strings.Contains(r.Header.Get("Content-Type"), "json")
}
