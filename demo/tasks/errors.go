package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// oauthError is an error with an RFC 6749 / RFC 6750 error code, safe to show
// to the client. The resource API uses the same JSON shape.
type oauthError struct {
	status          int
	code            string
	desc            string
	wwwAuthenticate string
	retryAfter      int64 // seconds; 0 means no header
}

func (e *oauthError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, e.code, e.desc)
}

func errInvalidRequest(format string, args ...any) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_request", desc: fmt.Sprintf(format, args...)}
}

func errInvalidGrant(desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_grant", desc: desc}
}

func errInvalidClient(desc string) *oauthError {
	return &oauthError{
		status:          http.StatusUnauthorized,
		code:            "invalid_client",
		desc:            desc,
		wwwAuthenticate: `Basic realm="acme-tasks"`,
	}
}

type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// api adapts a handler returning an error to http.HandlerFunc, answering
// errors as JSON: *oauthError with its status and code, anything else as a
// logged 500 server_error.
func (s *Server) api(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	}
}

// oauth is api for OAuth endpoints, whose responses must not be cached.
func (s *Server) oauth(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return s.api(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		return h(w, r)
	})
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var oe *oauthError
	if !errors.As(err, &oe) {
		s.log.Error("acme tasks request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		oe = &oauthError{status: http.StatusInternalServerError, code: "server_error", desc: "internal error"}
	}
	if oe.wwwAuthenticate != "" {
		w.Header().Set("WWW-Authenticate", oe.wwwAuthenticate)
	}
	if oe.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(oe.retryAfter, 10))
	}
	writeJSON(w, oe.status, errorBody{Error: oe.code, Description: oe.desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
