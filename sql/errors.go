package sql

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Sentinel errors that stores return after translating driver errors with
// Translate. Domain packages wrap or re-export them.
var (
	// ErrNotFound means no row matched (pgx.ErrNoRows).
	ErrNotFound = errors.New("not found")
	// ErrConflict means a unique or exclusion constraint refused the write.
	ErrConflict = errors.New("conflict")
	// ErrInvalid means a check, not-null or foreign-key constraint refused the write.
	ErrInvalid = errors.New("invalid")
	// ErrUnavailable means the database could not be reached or the
	// connection was lost (IsConnectionError): the operation may be
	// retried. Translate returns such errors as an *UnavailableError,
	// which errors.Is matches to it.
	ErrUnavailable = errors.New("database unavailable")
)

// UnavailableError is a driver error for which IsConnectionError reports
// true, as Translate returns it: the database could not be reached or the
// connection was lost (a restart, a failover). Its Retryable method
// reports true, so callers that look for a Retryable() or Temporary()
// method in an error's chain (the MCP endpoint does) tell the agent to
// retry instead of reporting an internal error.
type UnavailableError struct {
	Err error
}

// Error says the database is unavailable, then the driver's message.
func (e *UnavailableError) Error() string { return "database unavailable: " + e.Err.Error() }

// Unwrap returns the driver error.
func (e *UnavailableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// Retryable reports true: the operation may succeed once the database is
// back.
func (e *UnavailableError) Retryable() bool { return true }

// Translate maps driver errors to the sentinels above, keeping the original in
// the chain, and a lost or refused connection to an *UnavailableError; other
// errors are returned unchanged. Every store calls it once, at the edge of its
// query.
func Translate(err error) error {
	if err == nil {
		return nil
	}
	if IsConnectionError(err) {
		var ue *UnavailableError
		if errors.As(err, &ue) {
			return err
		}
		return &UnavailableError{Err: err}
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return errors.Join(ErrNotFound, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505", "23P01":
			return errors.Join(ErrConflict, err)
		case "23514", "23502", "23503", "22P02", "22001":
			return errors.Join(ErrInvalid, err)
		}
	}
	return err
}

// IsUndefinedTable reports whether err is PostgreSQL's "relation does not exist".
func IsUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P01"
}

// IsConnectionError reports whether err means the database could not be
// reached or the connection to it was lost (a restart, a failover, a
// terminated backend, a broken socket) rather than that a statement was
// refused: a failed connection attempt (except a refused login or a
// missing database, which are configuration errors), the server shutting
// down or starting up (SQLSTATE 57P01, 57P02, 57P03), a connection
// exception (class 08), a connection the driver had already closed, or a
// socket error. Such failures are temporary. Timeouts and cancellations are
// not included. Whether a statement took effect before the connection was
// lost is for the caller to work out: a transaction whose COMMIT was sent
// but not acknowledged may have committed.
func IsConnectionError(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	isPg := errors.As(err, &pgErr)
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return !isPg || !(strings.HasPrefix(pgErr.Code, "28") || strings.HasPrefix(pgErr.Code, "3D"))
	}
	if isPg {
		switch pgErr.Code {
		case "57P01", "57P02", "57P03":
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08")
	}
	if errors.Is(err, pgconn.ErrConnClosed) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && !ne.Timeout()
}
