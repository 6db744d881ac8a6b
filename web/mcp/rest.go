package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/audit"
	"github.com/locksmithhq/locksmith/tenants/egress"
)

// MaxResultBytes caps an upstream answer turned into a tool result: 1 MiB.
const MaxResultBytes = 1 << 20

// callREST runs a catalog tool: arguments are checked and mapped to an HTTP
// request (path template, query, JSON body) sent with Token B only.
func (h *Handler) callREST(ctx context.Context, rs *reqState, req *sdk.CallToolRequest, t tenants.Tool, up tenants.Upstream) (*sdk.CallToolResult, error) {
	args, err := decodeArgs(req.Params.Arguments)
	if err != nil {
		return toolError("invalid_arguments", err.Error(), nil), nil
	}
	if err := checkArgs(t, args); err != nil {
		return toolError("invalid_arguments", err.Error(), nil), nil
	}
	p := &callPlan{rs: rs, req: req, tool: t, upstream: up, args: args, method: strings.ToUpper(t.Method), path: t.PathTemplate, scopes: t.RequiredScopes}
	return h.run(ctx, p, func(ctx context.Context, token string) (*sdk.CallToolResult, Outcome, error) {
		hreq, err := buildRequest(ctx, up, t, args)
		if err != nil {
			return toolError("invalid_arguments", err.Error(), nil), Outcome{Result: "tool_error", Error: "arguments"}, nil
		}
		if token != "" {
			hreq.Header.Set("Authorization", "Bearer "+token)
		}
		hreq.Header.Set("X-Request-Id", rs.requestID)
		resp, err := h.cfg.HTTPClient.Do(hreq)
		p.verdict = egress.Judge(resp, err)
		if err != nil {
			return transportError(up, err), Outcome{Result: "upstream_error", Error: errorKind(err)}, nil
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResultBytes+1))
		if err != nil {
			p.verdict = egress.Judge(nil, err)
			return transportError(up, err), Outcome{Result: "upstream_error", Status: resp.StatusCode, Error: errorKind(err)}, nil
		}
		if len(body) > MaxResultBytes {
			return toolError("too_large", fmt.Sprintf("%s answered with more than 1 MiB; ask for less (a filter or a smaller page)", up.Name), nil),
				Outcome{Result: "tool_error", Status: resp.StatusCode, Error: "too large"}, nil
		}
		if resp.StatusCode == http.StatusUnauthorized {
			return nil, Outcome{Status: resp.StatusCode}, &ConsentRequiredError{Reason: "upstream_refused_token",
				ConsentURL: h.consentURL(rs.snap.tenant.Slug, up.Slug, t.RequiredScopes)}
		}
		res := mapResponse(up, resp, body)
		out := Outcome{Result: "ok", Status: resp.StatusCode}
		if t.LogBodies {
			out.ResponseBody = audit.Redact(body, 0)
		}
		if res.IsError {
			out.Result = "tool_error"
		}
		return res, out, nil
	})
}

// decodeArgs reads the call's arguments as a JSON object (numbers kept exact).
func decodeArgs(raw json.RawMessage) (map[string]any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" || string(raw) == "{}" {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errors.New("the arguments are not valid JSON")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("the arguments must be a JSON object")
	}
	return m, nil
}

// toolSchema is the part of an input schema the endpoint checks.
type toolSchema struct {
	Required   []string `json:"required"`
	Properties map[string]struct {
		Type any `json:"type"`
	} `json:"properties"`
}

// checkArgs refuses missing required arguments, arguments the tool does not
// map anywhere, and top-level arguments of the wrong JSON type, with a
// message the model can act on.
func checkArgs(t tenants.Tool, args map[string]any) error {
	s := parsedSchema(t.InputSchema)
	known := map[string]bool{}
	for _, n := range tenants.PathParams(t.PathTemplate) {
		known[n] = true
	}
	for _, n := range t.QueryParams {
		known[n] = true
	}
	for _, n := range t.BodyParams {
		known[n] = true
	}
	for _, n := range s.Required {
		if _, ok := args[n]; !ok {
			return fmt.Errorf("missing required argument %q", n)
		}
	}
	names := make([]string, 0, len(args))
	for n := range args {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if !known[n] {
			takes := make([]string, 0, len(known))
			for k := range known {
				takes = append(takes, k)
			}
			slices.Sort(takes)
			return fmt.Errorf("unknown argument %q; %s takes: %s", truncate(n, 64), t.Name, strings.Join(takes, ", "))
		}
		if p, ok := s.Properties[n]; ok {
			if want, ok := p.Type.(string); ok && !hasJSONType(args[n], want) {
				return fmt.Errorf("argument %q must be of type %s", n, want)
			}
		}
	}
	return nil
}

func hasJSONType(v any, want string) bool {
	switch want {
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, err := strconv.ParseInt(n.String(), 10, 64)
		return err == nil
	case "array":
		_, ok := v.([]any)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "null":
		return v == nil
	}
	return true
}

// toolSchemas caches parsed input schemas by their text.
var toolSchemas = newSchemaCache[*toolSchema]()

func parsedSchema(raw json.RawMessage) *toolSchema {
	return toolSchemas.get(raw, func() *toolSchema {
		s := &toolSchema{}
		if len(raw) > 0 {
			_ = json.Unmarshal(raw, s)
		}
		return s
	})
}

// maxCachedSchemas bounds a schemaCache; past it the cache starts over.
const maxCachedSchemas = 4096

// schemaCache memoises what is derived from a tool's input schema, keyed by
// the schema's text (so a changed schema is a new entry). Tools are few per
// tenant; the bound only stops a stream of schema edits from growing it.
type schemaCache[V any] struct {
	mu sync.RWMutex
	m  map[string]V
}

func newSchemaCache[V any]() *schemaCache[V] { return &schemaCache[V]{m: map[string]V{}} }

func (c *schemaCache[V]) get(raw json.RawMessage, derive func() V) V {
	c.mu.RLock()
	v, ok := c.m[string(raw)]
	c.mu.RUnlock()
	if ok {
		return v
	}
	v = derive()
	c.mu.Lock()
	if len(c.m) >= maxCachedSchemas {
		clear(c.m)
	}
	c.m[string(raw)] = v
	c.mu.Unlock()
	return v
}

// buildRequest maps arguments to the upstream request. Path parameters are
// escaped as one segment each ("." and ".." are refused so a value can't
// climb the path); query parameters may be scalars or arrays of scalars; body
// parameters become a JSON object.
func buildRequest(ctx context.Context, up tenants.Upstream, t tenants.Tool, args map[string]any) (*http.Request, error) {
	var path strings.Builder
	tmpl := t.PathTemplate
	if !strings.HasPrefix(tmpl, "/") {
		tmpl = "/" + tmpl
	}
	for {
		i := strings.IndexByte(tmpl, '{')
		if i < 0 {
			path.WriteString(tmpl)
			break
		}
		j := strings.IndexByte(tmpl[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("the tool's path template %q is malformed; ask your admin to fix it", t.PathTemplate)
		}
		path.WriteString(tmpl[:i])
		name := tmpl[i+1 : i+j]
		v, ok := args[name]
		if !ok {
			return nil, fmt.Errorf("missing required argument %q", name)
		}
		s, ok := scalar(v)
		if !ok || s == "" || s == "." || s == ".." {
			return nil, fmt.Errorf("argument %q must be a non-empty string or number", name)
		}
		path.WriteString(url.PathEscape(s))
		tmpl = tmpl[i+j+1:]
	}
	target := strings.TrimRight(up.BaseURL, "/") + path.String()
	malformed := fmt.Errorf("the upstream URL of %s is malformed; ask your admin to fix it", up.Name)
	if len(t.QueryParams) > 0 {
		base, err := url.Parse(target)
		if err != nil {
			return nil, malformed
		}
		if target, err = withQuery(base, t, args); err != nil {
			return nil, err
		}
	}
	var body io.Reader
	method := strings.ToUpper(t.Method)
	if len(t.BodyParams) > 0 && method != http.MethodGet && method != http.MethodDelete {
		obj := make(map[string]any, len(t.BodyParams))
		for _, n := range t.BodyParams {
			if v, ok := args[n]; ok {
				obj[n] = v
			}
		}
		b, err := json.Marshal(obj)
		if err != nil {
			return nil, errors.New("the arguments could not be encoded as JSON")
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, malformed
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// withQuery adds the tool's query parameters from args to base.
func withQuery(base *url.URL, t tenants.Tool, args map[string]any) (string, error) {
	q := base.Query()
	for _, n := range t.QueryParams {
		v, ok := args[n]
		if !ok || v == nil {
			continue
		}
		if list, ok := v.([]any); ok {
			for _, e := range list {
				s, ok := scalar(e)
				if !ok {
					return "", fmt.Errorf("argument %q must be a list of strings or numbers", n)
				}
				q.Add(n, s)
			}
			continue
		}
		s, ok := scalar(v)
		if !ok {
			return "", fmt.Errorf("argument %q must be a string, number or boolean (or a list of them)", n)
		}
		q.Set(n, s)
	}
	base.RawQuery = q.Encode()
	return base.String(), nil
}

// scalar formats a JSON scalar for a URL.
func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	return "", false
}

// mapResponse turns an upstream answer into a tool result: JSON bodies
// become structuredContent (an object, passed through as raw JSON; other JSON
// values are wrapped as {"result": …}) plus the JSON as text; 403, 4xx and 5xx become tool errors
// the agent can act on.
func mapResponse(up tenants.Upstream, resp *http.Response, body []byte) *sdk.CallToolResult {
	st := resp.StatusCode
	switch {
	case st >= 200 && st < 300:
		if len(bytes.TrimSpace(body)) == 0 {
			return &sdk.CallToolResult{
				Content:           []sdk.Content{&sdk.TextContent{Text: fmt.Sprintf("done (%s answered HTTP %d with no body)", up.Name, st)}},
				StructuredContent: map[string]any{"status": st},
			}
		}
		if trimmed := bytes.TrimSpace(body); json.Valid(trimmed) {
			// The JSON goes through as it came (numbers and key order kept),
			// without decoding it into Go values.
			structured := json.RawMessage(trimmed)
			if trimmed[0] != '{' {
				structured = json.RawMessage(`{"result":` + string(trimmed) + `}`)
			}
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: string(trimmed)}}, StructuredContent: structured}
		}
		if !utf8.Valid(body) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{
				Text: fmt.Sprintf("%s answered with %d bytes of %s, which can't be shown as text", up.Name, len(body), resp.Header.Get("Content-Type"))}}}
		}
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: string(body)}}}
	case st == http.StatusForbidden:
		return toolError("permission", "the upstream refused: your account lacks permission for this at "+up.Name+upstreamDetail(body), map[string]any{"status": st})
	case st == http.StatusTooManyRequests:
		return retryable(fmt.Sprintf("%s is rate limiting requests (HTTP 429); retry later", up.Name), retryAfter(resp))
	case st >= 500:
		return retryable(fmt.Sprintf("%s is having trouble (HTTP %d); this is usually temporary, retry in a moment", up.Name, st), retryAfter(resp))
	case st == http.StatusNotFound:
		return toolError("not_found", fmt.Sprintf("%s has no such item (HTTP 404)%s", up.Name, upstreamDetail(body)), map[string]any{"status": st})
	default:
		return toolError("upstream", fmt.Sprintf("%s refused the request (HTTP %d)%s", up.Name, st, upstreamDetail(body)), map[string]any{"status": st})
	}
}

func decodeJSON(b []byte) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	return v, true
}

// upstreamDetail extracts a short explanation from an error body: the
// usual message fields of a JSON error, else the start of the text.
func upstreamDetail(body []byte) string {
	msg := ""
	if v, ok := decodeJSON(body); ok {
		if m, ok := v.(map[string]any); ok {
			for _, k := range []string{"error_description", "message", "detail", "error", "title"} {
				if s, ok := m[k].(string); ok && s != "" {
					msg = s
					break
				}
			}
		}
	} else if utf8.Valid(body) {
		msg = string(body)
	}
	msg = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.TrimSpace(msg))
	if msg == "" {
		return ""
	}
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return ": " + msg
}

// retryAfter is the upstream's Retry-After for the agent, at most an hour.
func retryAfter(resp *http.Response) time.Duration {
	return min(egress.RetryAfter(resp.Header, time.Now()), time.Hour)
}

// transportError maps a failed upstream request to a tool error.
func transportError(up tenants.Upstream, err error) *sdk.CallToolResult {
	var ee *egress.Error
	switch {
	case errors.Is(err, egress.ErrResponseTooLarge):
		return toolError("too_large", up.Name+" answered with more than the size limit; ask for less", nil)
	case errors.As(err, &ee) && (errors.Is(err, egress.ErrForbiddenTarget) || errors.Is(err, egress.ErrInvalidURL) || errors.Is(err, egress.ErrInsecureRedirect) || errors.Is(err, egress.ErrTooManyRedirects)):
		return toolError("upstream_config", "Locksmith refused to call "+up.Name+": "+ee.Error()+"; ask your admin to fix the upstream's URL", nil)
	case errors.Is(err, context.Canceled):
		return toolError("cancelled", "the call to "+up.Name+" was cancelled", nil)
	}
	return retryable(fmt.Sprintf("%s could not be reached (%s); this is usually temporary, retry in a moment", up.Name, errorKind(err)), 0)
}

// errorKind names a transport failure without its details.
func errorKind(err error) string {
	var ne interface{ Timeout() bool }
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, egress.ErrResolve):
		return "name not resolved"
	case errors.Is(err, egress.ErrResponseTooLarge):
		return "response too large"
	}
	return "connection failed"
}
