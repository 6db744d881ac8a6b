package mcp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
)

// JSON-RPC 2.0 error codes used before a request reaches the SDK.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeUnsupportedVer = -32022
)

// message is the little the endpoint reads of a JSON-RPC message before the
// SDK parses it properly: enough to validate its shape, choose which tools
// the per-request server needs, and remember an initialize's capabilities.
type message struct {
	id             json.RawMessage
	method         string
	toolName       string          // tools/call params.name
	args           json.RawMessage // tools/call params.arguments
	plainCall      bool            // tools/call params are an object of name (a string) and arguments only
	urlElicitation bool            // initialize declared capabilities.elicitation.url
}

type wireMessage struct {
	JSONRPC *string         `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  *string         `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   json.RawMessage `json:"error"`
}

type wireParams struct {
	Name      *string         `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
	// Any of these keeps a tools/call off the fast path.
	Meta           json.RawMessage `json:"_meta"`
	RequestState   json.RawMessage `json:"requestState"`
	InputResponses json.RawMessage `json:"inputResponses"`
	Task           json.RawMessage `json:"task"`
	Capabilities   *struct {
		Elicitation *struct {
			URL json.RawMessage `json:"url"`
		} `json:"elicitation"`
	} `json:"capabilities"`
}

// rpcError is a refusal written before the SDK runs: one JSON-RPC error, or
// for a batch one error per invalid element.
type rpcError struct {
	status int
	errs   []rpcErrorBody
	batch  bool
}

type rpcErrorBody struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   rpcErrorDetail  `json:"error"`
}

type rpcErrorDetail struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

func (e *rpcError) write(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.status)
	if e.batch {
		_ = json.NewEncoder(w).Encode(e.errs)
		return
	}
	_ = json.NewEncoder(w).Encode(e.errs[0])
}

func writeRPCError(w http.ResponseWriter, status int, id json.RawMessage, code int, msg string, data any) {
	(&rpcError{status: status, errs: []rpcErrorBody{newRPCError(id, code, msg, data)}}).write(w)
}

func newRPCError(id json.RawMessage, code int, msg string, data any) rpcErrorBody {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	return rpcErrorBody{JSONRPC: "2.0", ID: id, Error: rpcErrorDetail{Code: code, Message: msg, Data: data}}
}

// writeUnsupportedVersion answers an MCP-Protocol-Version this server does
// not speak: 400 with UnsupportedProtocolVersion (-32022) listing the
// supported versions.
func writeUnsupportedVersion(w http.ResponseWriter, id json.RawMessage, requested string, supported []string) {
	writeRPCError(w, http.StatusBadRequest, id, codeUnsupportedVer,
		fmt.Sprintf("protocol version %q is not supported; this endpoint speaks %v", truncate(requested, 40), supported),
		map[string]any{"supported": supported, "requested": truncate(requested, 40)})
}

func firstID(msgs []message) json.RawMessage {
	if len(msgs) == 0 {
		return nil
	}
	return msgs[0].id
}

// parseMessages validates the body as one JSON-RPC 2.0 message or a batch.
// Invalid JSON is a parse error (-32700); valid JSON of the wrong shape is an
// invalid request (-32600), reported per element for a batch.
func parseMessages(body []byte) ([]message, *rpcError) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, &rpcError{status: http.StatusBadRequest, errs: []rpcErrorBody{newRPCError(nil, codeInvalidRequest, "the request body is empty; send a JSON-RPC 2.0 request", nil)}}
	}
	if !json.Valid(body) {
		return nil, &rpcError{status: http.StatusBadRequest, errs: []rpcErrorBody{newRPCError(nil, codeParseError, "the request body is not valid JSON", nil)}}
	}
	switch body[0] {
	case '{':
		m, errBody := parseOne(body)
		if errBody != nil {
			return nil, &rpcError{status: http.StatusBadRequest, errs: []rpcErrorBody{*errBody}}
		}
		return []message{m}, nil
	case '[':
		var raws []json.RawMessage
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, &rpcError{status: http.StatusBadRequest, errs: []rpcErrorBody{newRPCError(nil, codeParseError, "the request body is not valid JSON", nil)}}
		}
		if len(raws) == 0 {
			return nil, &rpcError{status: http.StatusBadRequest, errs: []rpcErrorBody{newRPCError(nil, codeInvalidRequest, "the batch is empty", nil)}}
		}
		if len(raws) > 100 {
			return nil, &rpcError{status: http.StatusBadRequest, errs: []rpcErrorBody{newRPCError(nil, codeInvalidRequest, "a batch may hold at most 100 messages", nil)}}
		}
		msgs := make([]message, 0, len(raws))
		var errs []rpcErrorBody
		for _, raw := range raws {
			m, errBody := parseOne(raw)
			if errBody != nil {
				errs = append(errs, *errBody)
				continue
			}
			msgs = append(msgs, m)
		}
		if len(errs) > 0 {
			return nil, &rpcError{status: http.StatusBadRequest, errs: errs, batch: true}
		}
		return msgs, nil
	}
	return nil, &rpcError{status: http.StatusBadRequest, errs: []rpcErrorBody{newRPCError(nil, codeInvalidRequest, "a JSON-RPC message must be a JSON object (or a batch array of them)", nil)}}
}

func parseOne(raw json.RawMessage) (message, *rpcErrorBody) {
	raw = bytes.TrimSpace(raw)
	invalid := func(id json.RawMessage, msg string) (message, *rpcErrorBody) {
		e := newRPCError(id, codeInvalidRequest, msg, nil)
		return message{}, &e
	}
	if len(raw) == 0 || raw[0] != '{' {
		return invalid(nil, "each JSON-RPC message must be a JSON object")
	}
	var wm wireMessage
	if err := json.Unmarshal(raw, &wm); err != nil {
		return invalid(nil, "the JSON-RPC message has fields of the wrong type")
	}
	id := bytes.TrimSpace(wm.ID)
	if len(id) > 0 && id[0] != '"' && id[0] != '-' && (id[0] < '0' || id[0] > '9') {
		return invalid(nil, "id must be a string or a number")
	}
	if len(id) > 256 {
		return invalid(nil, "id is too long")
	}
	if wm.JSONRPC == nil || *wm.JSONRPC != "2.0" {
		return invalid(id, `"jsonrpc" must be "2.0"`)
	}
	m := message{id: id}
	if wm.Method == nil {
		if len(id) > 0 && (len(wm.Result) > 0 || len(wm.Error) > 0) {
			return m, nil // a response from the client
		}
		return invalid(id, `a request needs a "method"`)
	}
	if *wm.Method == "" || len(*wm.Method) > 128 {
		return invalid(id, `"method" must be a non-empty string`)
	}
	m.method = *wm.Method
	if len(wm.Params) > 0 && wm.Params[0] == '{' {
		var p wireParams
		if json.Unmarshal(wm.Params, &p) == nil {
			if p.Name != nil {
				m.toolName = *p.Name
			}
			if m.method == "tools/call" {
				m.args = p.Arguments
				m.plainCall = p.Name != nil && len(p.Meta) == 0 && len(p.RequestState) == 0 && len(p.InputResponses) == 0 && len(p.Task) == 0
			}
			if p.Capabilities != nil && p.Capabilities.Elicitation != nil && len(p.Capabilities.Elicitation.URL) > 0 && string(p.Capabilities.Elicitation.URL) != "null" {
				m.urlElicitation = true
			}
		}
	}
	return m, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
