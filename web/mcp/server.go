package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/locksmithhq/locksmith/tenants"
)

// emptyObjectSchema is the input schema of tools that declare none.
var emptyObjectSchema = json.RawMessage(`{"type":"object"}`)

// quietLogger drops the SDK's own per-request logging: the endpoint logs at
// its boundary.
var quietLogger = slog.New(slog.DiscardHandler)

// buildServer makes the SDK server for one request. Only the tools the
// request needs are registered: all the principal may see for tools/list
// (or a batch), the named one for tools/call, none otherwise.
func (h *Handler) buildServer(ctx context.Context, rs *reqState, msgs []message) *sdk.Server {
	caps := &sdk.ServerCapabilities{Tools: &sdk.ToolCapabilities{}, Logging: &sdk.LoggingCapabilities{}}
	featureCapabilities(rs, caps)
	srv := sdk.NewServer(&sdk.Implementation{Name: "locksmith", Title: rs.snap.tenant.Name + " through Locksmith", Version: Version},
		&sdk.ServerOptions{
			Capabilities: caps,
			Instructions: "Tools of " + rs.snap.tenant.Name + ". Each call runs as you, with your own permission at the upstream service; " +
				"if a tool answers with a link, open it to grant access, then call the tool again.",
			Logger: quietLogger,
		})
	srv.AddReceivingMiddleware(unknownToolMessage, h.relayFeatures(rs))
	all := len(msgs) > 1
	var names []string
	for _, m := range msgs {
		switch m.method {
		case "tools/list":
			all = true
		case "tools/call":
			names = append(names, m.toolName)
		}
	}
	if all {
		h.addAllTools(ctx, srv, rs)
		return srv
	}
	for _, name := range names {
		h.addToolNamed(ctx, srv, rs, name)
	}
	return srv
}

// addAllTools registers every tool the principal may call (policy without
// arguments): REST tools from the catalog, then the tools of each MCP
// upstream, namespaced by the upstream's slug.
func (h *Handler) addAllTools(ctx context.Context, srv *sdk.Server, rs *reqState) {
	for _, t := range rs.snap.tools {
		up := rs.snap.upstreams[t.UpstreamID]
		d, err := h.cfg.Policy.Decide(ctx, Call{TenantID: rs.snap.tenant.ID, Principal: rs.principal, Tool: t, Upstream: up, EndpointScopes: rs.snap.idp.RequiredScopes})
		if err != nil {
			h.log.WarnContext(ctx, "mcp policy failed while listing", "tenant_id", rs.snap.tenant.ID, "tool", t.Name, "err", err, "request_id", rs.requestID)
			continue
		}
		if d.Effect == Deny {
			continue
		}
		h.addREST(srv, rs, t, up)
	}
	for _, up := range rs.snap.mcpUps {
		h.addUpstreamTools(ctx, srv, rs, up, "")
	}
}

// addToolNamed registers the one tool a tools/call names, if it exists. An
// unknown name registers nothing, and the SDK answers "unknown tool".
func (h *Handler) addToolNamed(ctx context.Context, srv *sdk.Server, rs *reqState, name string) {
	if t, ok := rs.snap.tool(name); ok {
		h.addREST(srv, rs, t, rs.snap.upstreams[t.UpstreamID])
		return
	}
	if len(rs.snap.mcpUps) == 1 && h.toolPrefix(rs, rs.snap.mcpUps[0]) == "" {
		h.addUpstreamTools(ctx, srv, rs, rs.snap.mcpUps[0], name)
		return
	}
	slug, _, ok := strings.Cut(name, ".")
	if !ok {
		return
	}
	for _, up := range rs.snap.mcpUps {
		if up.Slug == slug {
			h.addUpstreamTools(ctx, srv, rs, up, name)
			return
		}
	}
}

// addREST registers one catalog tool. A tool whose input schema is not a
// JSON object schema is skipped (and logged): it is an admin's mistake the
// agent can't fix.
func (h *Handler) addREST(srv *sdk.Server, rs *reqState, t tenants.Tool, up tenants.Upstream) {
	schema := json.RawMessage(t.InputSchema)
	if len(schema) == 0 {
		schema = emptyObjectSchema
	}
	var probe struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(schema, &probe) != nil || probe.Type != "object" {
		h.log.Warn("mcp tool skipped: input schema is not an object schema", "tenant_id", rs.snap.tenant.ID, "tool", t.Name)
		return
	}
	tool := &sdk.Tool{
		Name:        t.Name,
		Title:       t.Title,
		Description: t.Description,
		InputSchema: schema,
		Annotations: annotations(t),
	}
	if err := safeAddTool(srv, tool, func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		return h.callREST(ctx, rs, req, t, up)
	}); err != nil {
		h.log.Warn("mcp tool skipped", "tenant_id", rs.snap.tenant.ID, "tool", t.Name, "err", err)
	}
}

// annotations derives MCP tool hints from the catalog's risk and method.
func annotations(t tenants.Tool) *sdk.ToolAnnotations {
	yes, no := true, false
	a := &sdk.ToolAnnotations{Title: t.Title, OpenWorldHint: &yes}
	switch t.Risk {
	case tenants.RiskRead:
		a.ReadOnlyHint = true
		a.DestructiveHint = &no
	case tenants.RiskDestructive:
		a.DestructiveHint = &yes
	default:
		a.DestructiveHint = &no
	}
	switch strings.ToUpper(t.Method) {
	case "GET", "PUT", "DELETE":
		a.IdempotentHint = true
	}
	return a
}

// safeAddTool turns the SDK's panics on malformed tools into errors, and
// a panic in a tool handler (which runs outside the HTTP handler's
// goroutine, beyond web's recovery) into a JSON-RPC internal error.
func safeAddTool(srv *sdk.Server, t *sdk.Tool, hd sdk.ToolHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	srv.AddTool(t, func(ctx context.Context, req *sdk.CallToolRequest) (res *sdk.CallToolResult, err error) {
		defer func() {
			if p := recover(); p != nil {
				slog.ErrorContext(ctx, "mcp tool handler panic", "tool", t.Name, "err", fmt.Sprint(p), "stack", string(debug.Stack()))
				res, err = nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "internal error"}
			}
		}()
		return hd(ctx, req)
	})
	return nil
}

// unknownToolMessage rewrites the SDK's "unknown tool" error into one that
// says what to do.
func unknownToolMessage(next sdk.MethodHandler) sdk.MethodHandler {
	return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
		res, err := next(ctx, method, req)
		var je *jsonrpc.Error
		if method == "tools/call" && errors.As(err, &je) && je.Code == jsonrpc.CodeInvalidParams && strings.HasPrefix(je.Message, "unknown tool") {
			name := ""
			if p, ok := req.GetParams().(*sdk.CallToolParamsRaw); ok {
				name = p.Name
			}
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams,
				Message: fmt.Sprintf("unknown tool %q: no tool of that name is available to you here; call tools/list to see the tools you may call", truncate(name, 128))}
		}
		return res, err
	}
}
