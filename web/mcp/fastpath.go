package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/locksmithhq/locksmith/tenants"
)

// The fast path serves the commonest request, a tools/call of a catalog
// (REST) tool, without building a per-request SDK server and session. In
// profiles the SDK's per-request set-up and JSON decoding (several 32 KiB
// decoder buffers per request) cost more than the rest of the hot path
// together. The answer is byte-for-byte what the SDK's stateless handler
// writes (one SSE "message" event), and the call runs through the same
// hot path (callREST → run); only the protocol plumbing is skipped.
//
// It serves only requests it can answer exactly as the SDK would: one
// JSON-RPC request (with a plain id, see plainID) for tools/call of a catalog tool, protocol
// 2025-06-18 up to (not including) 2026-07-28 named in MCP-Protocol-Version,
// Content-Type application/json, an Accept that allows both JSON and SSE,
// params holding only name and arguments (no _meta, no progress token, no
// requestState or inputResponses), and no session, Last-Event-ID or
// Mcp-Method/Mcp-Name/Mcp-Param-* headers. Everything else goes to the SDK.

// serveFastCall answers msgs on the fast path and reports true, or reports
// false (having written nothing) when the SDK must serve the request.
func (h *Handler) serveFastCall(w http.ResponseWriter, r *http.Request, rs *reqState, msgs []message) bool {
	if len(msgs) != 1 || msgs[0].method != "tools/call" || !fastEligible(r, rs.version) {
		return false
	}
	m := msgs[0]
	if !m.plainCall || m.toolName == "" || !plainID(m.id) {
		return false
	}
	if a := bytes.TrimSpace(m.args); len(a) > 0 && a[0] != '{' && string(a) != "null" {
		return false
	}
	t, ok := rs.snap.tool(m.toolName)
	if !ok || !objectSchema(t.InputSchema) {
		return false // unknown or unlisted: the SDK path names the error
	}
	h.fast.Add(1)
	up := rs.snap.upstreams[t.UpstreamID]
	req := &sdk.CallToolRequest{Params: &sdk.CallToolParamsRaw{Name: m.toolName, Arguments: m.args}}
	res, err := h.fastREST(r, rs, req, t, up)
	h.writeSSEResponse(w, rs, m.id, res, err)
	return true
}

// plainID reports whether a request id is one the SDK writes back byte for
// byte: an integer without sign games ("0", "-12", not "-0", "1.0", "1e2") or
// a short string of plain printable ASCII without escapes.
func plainID(id json.RawMessage) bool {
	switch {
	case len(id) == 0 || len(id) > 130:
		return false
	case id[0] == '"':
		if len(id) < 2 || id[len(id)-1] != '"' {
			return false
		}
		for _, c := range id[1 : len(id)-1] {
			if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
				return false
			}
		}
		return true
	}
	digits := id
	if digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 15 || (digits[0] == '0' && len(id) > 1) {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// fastREST runs callREST, turning a panic into an internal error as the SDK
// path's safeAddTool does.
func (h *Handler) fastREST(r *http.Request, rs *reqState, req *sdk.CallToolRequest, t tenants.Tool, up tenants.Upstream) (res *sdk.CallToolResult, err error) {
	defer func() {
		if p := recover(); p != nil {
			h.log.ErrorContext(r.Context(), "mcp tool handler panic", "tool", t.Name, "request_id", rs.requestID, "err", fmt.Sprint(p), "stack", string(debug.Stack()))
			res, err = nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "internal error"}
		}
	}()
	return h.callREST(r.Context(), rs, req, t, up)
}

// fastEligible checks the request's headers and protocol version.
func fastEligible(r *http.Request, version string) bool {
	if version < "2025-06-18" || version >= version20260728 {
		return false
	}
	ct := r.Header.Get("Content-Type")
	if ct != "application/json" && !strings.HasPrefix(ct, "application/json;") {
		return false
	}
	if jsonOK, sseOK := accepts(r.Header.Values("Accept")); !jsonOK || !sseOK {
		return false
	}
	for k := range r.Header {
		switch {
		case k == "Last-Event-Id", k == "Mcp-Session-Id", k == "Mcp-Method", k == "Mcp-Name", strings.HasPrefix(k, "Mcp-Param-"):
			return false
		}
	}
	return true
}

// accepts is the SDK's Accept rule: both JSON and an event stream.
func accepts(values []string) (jsonOK, sseOK bool) {
	for _, v := range values {
		for _, raw := range strings.Split(v, ",") {
			base, _, _ := strings.Cut(strings.TrimSpace(raw), ";")
			switch strings.ToLower(strings.TrimSpace(base)) {
			case "application/json", "application/*":
				jsonOK = true
			case "text/event-stream", "text/*":
				sseOK = true
			case "*/*":
				jsonOK, sseOK = true, true
			}
		}
	}
	return jsonOK, sseOK
}

// objectSchemas remembers which input schemas are JSON object schemas (the
// SDK refuses to register others).
var objectSchemas = newSchemaCache[bool]()

// objectSchema reports whether schema (empty means {"type":"object"}) is a
// JSON object schema.
func objectSchema(schema json.RawMessage) bool {
	if len(schema) == 0 {
		return true
	}
	return objectSchemas.get(schema, func() bool {
		var probe struct {
			Type string `json:"type"`
		}
		return json.Unmarshal(schema, &probe) == nil && probe.Type == "object"
	})
}

// sseBuffers recycles response buffers.
var sseBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// writeSSEResponse writes the JSON-RPC response to id as the SDK's
// stateless handler does: 200, one SSE event "message", the result as
// CallToolResult.MarshalJSON writes it, an error without HTML escaping.
func (h *Handler) writeSSEResponse(w http.ResponseWriter, rs *reqState, id json.RawMessage, res *sdk.CallToolResult, callErr error) {
	buf := sseBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer sseBuffers.Put(buf)
	buf.WriteString("event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":")
	buf.Write(id)
	ok := false
	if callErr == nil && res != nil {
		if res.Content == nil {
			res.Content = []sdk.Content{}
		}
		mark := buf.Len()
		buf.WriteString(",\"result\":")
		if appendResult(buf, res) {
			ok = true
		} else if body, err := json.Marshal(res); err == nil {
			buf.Write(body)
			ok = true
		} else {
			buf.Truncate(mark)
			callErr = err
		}
	}
	if !ok {
		var je *jsonrpc.Error
		if !errors.As(callErr, &je) {
			if callErr == nil {
				callErr = errors.New("no result")
			}
			h.log.Error("mcp tools/call failed", "request_id", rs.requestID, "err", callErr)
			je = &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "internal error"}
		}
		buf.WriteString(",\"error\":")
		enc := json.NewEncoder(buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(je)
		buf.Truncate(buf.Len() - 1) // Encode's newline
	}
	buf.WriteString("}\n\n")
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-cache, no-transform")
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

// appendResult writes the commonest tool result (one text content, raw or
// map structuredContent, isError) exactly as CallToolResult.MarshalJSON
// would, without reflection, and reports false for any other shape.
func appendResult(buf *bytes.Buffer, res *sdk.CallToolResult) bool {
	if res.Meta != nil || res.InputRequests != nil || res.RequestState != "" || res.NeedsInput() || len(res.Content) != 1 {
		return false
	}
	tc, ok := res.Content[0].(*sdk.TextContent)
	if !ok || tc.Meta != nil || tc.Annotations != nil {
		return false
	}
	var sc []byte
	switch v := res.StructuredContent.(type) {
	case nil:
	case json.RawMessage:
		if len(v) == 0 || !json.Valid(v) {
			return false
		}
		sc = v
		if needsCompacting(v) {
			var c bytes.Buffer
			if json.Compact(&c, v) != nil {
				return false
			}
			var e bytes.Buffer
			json.HTMLEscape(&e, c.Bytes())
			sc = e.Bytes()
		}
	case map[string]any:
		if v == nil {
			break
		}
		b, err := json.Marshal(v)
		if err != nil {
			return false
		}
		sc = b
	default:
		return false
	}
	b := buf.AvailableBuffer()
	b = append(b, `{"content":[{"type":"text","text":`...)
	b = appendJSONString(b, tc.Text)
	b = append(b, "}]"...)
	if sc != nil {
		b = append(b, `,"structuredContent":`...)
		b = append(b, sc...)
	}
	if res.IsError {
		b = append(b, `,"isError":true`...)
	}
	b = append(b, '}')
	buf.Write(b)
	return true
}

// needsCompacting reports whether raw JSON may hold insignificant
// whitespace or characters encoding/json escapes for HTML (<, >, &, U+2028,
// U+2029), which Marshal would rewrite.
func needsCompacting(raw []byte) bool {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r', '<', '>', '&', 0xE2:
			return true
		}
	}
	return false
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string as encoding/json.Marshal does
// (HTML-safe: <, > and & escaped; U+2028 and U+2029 escaped; invalid UTF-8
// replaced by U+FFFD).
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
