package tenants

import (
	"errors"

	lsql "github.com/locksmithhq/locksmith/sql"
)

// Sentinel errors shared by Locksmith's domain packages. The web layer maps
// them to statuses in one place: ErrNotFound → 404, ErrForbidden → 403,
// ErrConflict → 409, ErrInvalid → 400 (or 422 for forms), ErrUnavailable →
// 503 with Retry-After.
var (
	// ErrNotFound means the object does not exist for this tenant (objects of
	// other tenants are reported the same way).
	ErrNotFound = lsql.ErrNotFound
	// ErrConflict means the change clashes with existing state (a duplicate).
	ErrConflict = lsql.ErrConflict
	// ErrInvalid means the input was refused; the Error's message says why.
	ErrInvalid = lsql.ErrInvalid
	// ErrForbidden means the caller may not do this.
	ErrForbidden = errors.New("forbidden")
	// ErrUnavailable means the database could not be reached or the
	// connection was lost (a restart, a failover): retrying may succeed.
	ErrUnavailable = lsql.ErrUnavailable
)

// Error carries a message that is safe to show the person who made the
// request, separate from the detail that is only logged. Kind is one of the
// sentinels above (errors.Is matches it); Field names the input at fault,
// when there is one.
type Error struct {
	Kind    error
	Message string
	Field   string
	Err     error
}

// Error returns the public message followed by the logged detail.
func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

// Unwrap lets errors.Is see both the kind and the cause.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// PublicMessage is the text shown to the user.
func (e *Error) PublicMessage() string { return e.Message }

// Invalid returns an ErrInvalid error for field with a message safe to show.
func Invalid(field, message string) *Error {
	return &Error{Kind: ErrInvalid, Field: field, Message: message}
}
