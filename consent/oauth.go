package consent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/locksmithhq/locksmith/tenants/egress"
)

// tokenBody is an RFC 6749 section 5.1 / 5.2 token endpoint response (also
// RFC 8693's, which adds issued_token_type).
type tokenBody struct {
	AccessToken      string      `json:"access_token"`
	TokenType        string      `json:"token_type"`
	ExpiresIn        flexSeconds `json:"expires_in"`
	RefreshToken     string      `json:"refresh_token"`
	Scope            string      `json:"scope"`
	IssuedTokenType  string      `json:"issued_token_type"`
	Error            string      `json:"error"`
	ErrorDescription string      `json:"error_description"`
}

// flexSeconds accepts expires_in as a JSON number or a numeric string (some
// providers send "3600").
type flexSeconds int64

func (s *flexSeconds) UnmarshalJSON(b []byte) error {
	str := strings.Trim(string(b), `"`)
	if str == "" || str == "null" {
		*s = 0
		return nil
	}
	f, err := strconv.ParseFloat(str, 64)
	if err != nil {
		return fmt.Errorf("expires_in %q is not a number", str)
	}
	*s = flexSeconds(f)
	return nil
}

// tokens converts a successful response; asked are the scopes requested
// (used when the response omits scope).
func (t tokenBody) tokens(now time.Time, asked []string) Tokens {
	out := Tokens{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, Scopes: asked}
	if t.Scope != "" {
		out.Scopes = normScopes(strings.Fields(t.Scope))
	}
	if t.ExpiresIn > 0 {
		out.ExpiresAt = now.Add(time.Duration(t.ExpiresIn) * time.Second)
	} else {
		out.ExpiresAt = now.Add(DefaultTokenLifetime)
	}
	return out
}

// clientAuth is how Locksmith authenticates at a token, exchange or
// revocation endpoint.
type clientAuth struct {
	id, secret string
	// post sends the credentials in the body (client_secret_post) instead of
	// the Authorization header (client_secret_basic, the default).
	post bool
}

const maxOAuthBody = 1 << 20

// postForm POSTs form to endpoint through the egress client and classifies
// the outcome:
//   - 2xx with a JSON body: returned (body and status);
//   - 4xx with an OAuth error (or any 4xx but 429): *OAuthError;
//   - 5xx, 429, or a transport error before the request was fully written:
//     *RetryableError (Retry-After surfaced);
//   - a transport error after the request was written (timeout, reset), or
//     a 2xx whose body can't be read: *RetryableError with Uncertain set;
//     the server may have acted on the request.
//
// Nothing of the form (tokens, secrets) appears in any error.
func (b *Broker) postForm(ctx context.Context, op, endpoint string, auth clientAuth, form url.Values) (tokenBody, int, error) {
	if auth.post {
		form.Set("client_id", auth.id)
		if auth.secret != "" {
			form.Set("client_secret", auth.secret)
		}
	}
	var wrote bool
	trace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) {
		if info.Err == nil {
			wrote = true
		}
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return tokenBody{}, 0, &OAuthError{Op: op, Code: "invalid_endpoint", Description: "the endpoint URL is not valid"}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if !auth.post {
		req.SetBasicAuth(url.QueryEscape(auth.id), url.QueryEscape(auth.secret))
	}
	resp, err := b.egress.Do(req)
	if err != nil {
		if refusedByGuard(err) {
			// The SSRF guard refused the endpoint: nothing was sent, and
			// retrying won't help until an admin fixes the URL.
			return tokenBody{}, 0, fmt.Errorf("consent: %s: endpoint refused: %w", op, scrubURLError(err))
		}
		return tokenBody{}, 0, &RetryableError{Op: op, Uncertain: wrote, Err: scrubURLError(err)}
	}
	defer resp.Body.Close()
	raw, readErr := io.ReadAll(io.LimitReader(resp.Body, maxOAuthBody))
	var body tokenBody
	parseErr := json.Unmarshal(raw, &body)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		if readErr != nil || (parseErr != nil && len(raw) > 0) {
			return tokenBody{}, resp.StatusCode, &RetryableError{Op: op, Status: resp.StatusCode, Uncertain: true,
				Err: errors.New("the response body could not be read")}
		}
		return body, resp.StatusCode, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return tokenBody{}, resp.StatusCode, &RetryableError{Op: op, Status: resp.StatusCode, Code: safeCode(body.Error),
			RetryAfter: min(egress.RetryAfter(resp.Header, time.Now()), time.Hour)}
	default:
		return tokenBody{}, resp.StatusCode, &OAuthError{Op: op, Status: resp.StatusCode, Code: safeCode(body.Error),
			Description: safeDescription(body.ErrorDescription)}
	}
}

func refusedByGuard(err error) bool {
	return errors.Is(err, egress.ErrForbiddenTarget) || errors.Is(err, egress.ErrInvalidURL) ||
		errors.Is(err, egress.ErrInsecureRedirect) || errors.Is(err, egress.ErrTooManyRedirects)
}

// scrubURLError drops the URL from a *url.Error (it can't hold a token, as
// tokens travel in the body, but endpoints may carry tenant data in the
// query) and keeps the cause.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// safeCode keeps an OAuth error code only if it looks like one.
func safeCode(code string) string {
	if len(code) > 64 {
		return ""
	}
	for _, r := range code {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return ""
		}
	}
	return code
}

// safeDescription bounds an error_description for messages and logs.
func safeDescription(d string) string {
	d = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, d)
	if len(d) > 200 {
		d = d[:200]
	}
	return d
}
