package sql

import (
	"errors"

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
)

// Translate maps driver errors to the sentinels above, keeping the original in
// the chain; other errors are returned unchanged. Every store calls it once, at
// the edge of its query.
func Translate(err error) error {
	if err == nil {
		return nil
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
