package egress

import (
	"errors"
	"fmt"
	"net/netip"
)

// Sentinel errors of the SSRF guard. Every error the guard creates is an
// [*Error] that wraps exactly one of them; test with errors.Is. They also
// survive the *url.Error wrapping done by http.Client. ([Breakers] has its
// own: ErrCircuitOpen and ErrTooBusy.)
var (
	// ErrForbiddenTarget means the URL's host is, or resolves to, an
	// address the guard refuses (loopback, private, link-local, …).
	ErrForbiddenTarget = errors.New("egress: forbidden target")
	// ErrInvalidURL means the URL itself is unacceptable: unparsable,
	// wrong scheme, userinfo present, no host, or a malformed numeric host.
	ErrInvalidURL = errors.New("egress: invalid url")
	// ErrResolve means the host name could not be resolved.
	ErrResolve = errors.New("egress: cannot resolve host")
	// ErrResponseTooLarge means the response body exceeded
	// [Options.MaxResponseBytes]. It is returned by Read on the body, or by
	// the request itself when Content-Length already exceeds the cap.
	ErrResponseTooLarge = errors.New("egress: response too large")
	// ErrTooManyRedirects means the request was redirected more than
	// [Options.MaxRedirects] times.
	ErrTooManyRedirects = errors.New("egress: too many redirects")
	// ErrInsecureRedirect means an https request was redirected to plain
	// http, which is refused unless [Options.AllowPrivate] is set.
	ErrInsecureRedirect = errors.New("egress: redirect from https to http")
)

// Error is a refusal by the egress client. Its Error method returns a
// message written for an admin that is safe to show (it names the URL's
// host and the offending address, never a path, query or credential).
// Unwrap yields the sentinel in Err and, when there is one, the underlying
// cause (for example a *net.DNSError), which is for logs.
type Error struct {
	// Err is one of the package's sentinels.
	Err error
	// Host is the host name involved, if any, as written in the URL.
	Host string
	// Addr is the refused address for [ErrForbiddenTarget]; otherwise the
	// zero Addr.
	Addr netip.Addr
	// Reason is a short phrase such as "loopback" or "private" for
	// [ErrForbiddenTarget]; otherwise empty.
	Reason string

	msg   string
	cause error
}

// Error returns the admin-facing message.
func (e *Error) Error() string { return e.msg }

// Unwrap returns the sentinel and, if present, the underlying cause.
func (e *Error) Unwrap() []error {
	if e.cause == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.cause}
}

// forbidden builds the error for a refused address. host is the name that
// resolved to addr, or empty when addr was written literally.
func forbidden(host string, addr netip.Addr, reason string) *Error {
	where := addr.String()
	switch {
	case host == "" || host == where:
	case isLiteral(host):
		where = fmt.Sprintf("%s is %s", host, addr) // e.g. "0x7f.1 is 127.0.0.1"
	default:
		where = fmt.Sprintf("%s resolves to %s", host, addr)
	}
	return &Error{
		Err:    ErrForbiddenTarget,
		Host:   host,
		Addr:   addr,
		Reason: reason,
		msg:    fmt.Sprintf("that address is %s and not allowed (%s)", reason, where),
	}
}

func invalidURL(host, msg string) *Error {
	return &Error{Err: ErrInvalidURL, Host: host, msg: msg}
}

func resolveError(host string, cause error) *Error {
	return &Error{
		Err:   ErrResolve,
		Host:  host,
		msg:   fmt.Sprintf("the host name %q could not be resolved", host),
		cause: cause,
	}
}

func tooLarge(limit int64) *Error {
	return &Error{
		Err: ErrResponseTooLarge,
		msg: "the response is larger than the limit of " + formatBytes(limit),
	}
}

func formatBytes(n int64) string {
	const kib, mib = 1 << 10, 1 << 20
	switch {
	case n >= mib && n%mib == 0:
		return fmt.Sprintf("%d MiB", n/mib)
	case n >= kib && n%kib == 0:
		return fmt.Sprintf("%d KiB", n/kib)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}
