package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/a-h/templ"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/web/views"
)

// render writes a page. It renders into a buffer first, so a template error
// becomes a clean error page rather than half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) error {
	var buf bytes.Buffer
	if err := c.Render(r.Context(), &buf); err != nil {
		return fmt.Errorf("web: render page: %w", err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
	return nil
}

// redirect answers a form post with 303 See Other.
func redirect(w http.ResponseWriter, r *http.Request, to string) error {
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}

func head(r *http.Request, title string) views.Head {
	return views.Head{Title: title, Nonce: CSPNonce(r.Context())}
}

// notice is the fixed success message a redirect asks for with ?done=key;
// nothing from the request itself is ever shown.
func notice(key string) string {
	switch key {
	case "created":
		return "Your tenant is ready. Follow the steps below to connect your first agent."
	case "joined":
		return "You joined this tenant."
	case "role":
		return "The member's role was changed."
	case "removed":
		return "The member was removed."
	case "revoked":
		return "The key was revoked; it stopped working at once."
	case "renamed":
		return "The tenant was renamed."
	}
	return ""
}

// frame builds the console chrome for a tenant page.
func (s *Server) frame(ctx context.Context, r *http.Request, acct tenants.Account, t tenants.Tenant, role tenants.Role, active, title string) (views.Frame, error) {
	ms, err := s.cfg.Tenants.Memberships(ctx, acct.ID)
	if err != nil {
		return views.Frame{}, fmt.Errorf("web: list memberships: %w", err)
	}
	f := views.Frame{
		Head:         head(r, title+" · "+t.Name),
		AccountEmail: acct.Email,
		Tenant:       views.TenantRef{Slug: t.Slug, Name: t.Name, Role: string(role), Current: true},
		Role:         string(role),
		CanChange:    role.Can(tenants.RoleAdmin),
		IsOwner:      role.Can(tenants.RoleOwner),
		Active:       active,
		Notice:       notice(r.URL.Query().Get("done")),
	}
	for _, m := range ms {
		f.Tenants = append(f.Tenants, views.TenantRef{Slug: m.Tenant.Slug, Name: m.Tenant.Name, Role: string(m.Role), Current: m.Tenant.ID == t.ID})
	}
	f.PendingApprovals = s.pendingApprovals(ctx, t)
	return f, nil
}

// consoleFrame is frame for a tenant handler.
func (s *Server) consoleFrame(r *http.Request, c consoleCtx, active string) (views.Frame, error) {
	return s.frame(r.Context(), r, c.Account, c.Tenant, c.Role, active, views.SectionLabel(active))
}

// formErrors turns a domain error into messages for a form with the given
// fields, and the status to answer with (422 invalid, 409 conflict). A field
// the form doesn't have becomes the form-level message. ok is false for
// errors a form can't show (they go to writeError).
func formErrors(err error, fields ...string) (errs views.Errors, status int, ok bool) {
	var pub *tenants.Error
	if !errors.As(err, &pub) {
		return nil, 0, false
	}
	switch {
	case errors.Is(err, tenants.ErrInvalid):
		status = http.StatusUnprocessableEntity
	case errors.Is(err, tenants.ErrConflict):
		status = http.StatusConflict
	default:
		return nil, 0, false
	}
	key := ""
	if pub.Field != "" && slices.Contains(fields, pub.Field) {
		key = pub.Field
	}
	return views.Errors{key: sentence(pub.Message)}, status, true
}

// fieldError is a form error raised by the web layer itself.
func fieldError(field, msg string) views.Errors { return views.Errors{field: sentence(msg)} }

// sentence capitalises a domain message's first letter and ends it with a
// full stop.
func sentence(msg string) string {
	msg = strings.TrimSpace(msg)
	if msg == "" {
		return msg
	}
	r, n := utf8.DecodeRuneInString(msg)
	msg = string(unicode.ToUpper(r)) + msg[n:]
	if !strings.HasSuffix(msg, ".") && !strings.HasSuffix(msg, "?") && !strings.HasSuffix(msg, "!") {
		msg += "."
	}
	return msg
}

// formatTime is how the console shows an instant.
func formatTime(t time.Time) string { return t.UTC().Format("2 Jan 2006 15:04 UTC") }

// formatDate is how the console shows a day.
func formatDate(t time.Time) string { return t.UTC().Format("2 Jan 2006") }

// parseForm parses a posted form; a malformed body is a 400.
func parseForm(r *http.Request) error {
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return &statusError{status: http.StatusBadRequest, msg: "the form could not be read; reload the page and try again"}
	}
	return nil
}

// mcpURL is the tenant's MCP endpoint.
func (s *Server) mcpURL(slug string) string {
	return strings.TrimRight(s.cfg.BaseURL.String(), "/") + "/t/" + slug + "/mcp"
}
