package web

import (
	"context"
	"net/http"
	"time"
)

// healthz answers 200 while the process is alive.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, err := w.Write([]byte("ok\n"))
	return err
}

// readyz answers 200 when the database answers and its schema is current,
// 503 with the reason otherwise.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Cache-Control", "no-store")
	if err := s.cfg.Ready.Ready(ctx); err != nil {
		s.cfg.Logger.WarnContext(ctx, "not ready", "err", err, "request_id", RequestID(ctx))
		return &statusError{status: http.StatusServiceUnavailable, msg: "not ready: " + readinessReason(err)}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err := w.Write([]byte("ready\n"))
	return err
}

// readinessReason keeps /readyz's answer short and free of connection
// details: the full error is logged.
func readinessReason(err error) string {
	if r, ok := err.(interface{ PublicMessage() string }); ok {
		return r.PublicMessage()
	}
	return "the database is unreachable or its schema is not current (see the server log)"
}
