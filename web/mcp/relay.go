package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
)

// Relay limits.
const (
	// relayListTTL is how long an upstream MCP server's tool list is cached
	// per (tenant, upstream, user) on one instance.
	relayListTTL = 30 * time.Second
	// relayCallTimeout bounds one relayed tools/call, connection included.
	relayCallTimeout = 60 * time.Second
	// relayMaxTools bounds how many tools one upstream contributes.
	relayMaxTools = 500
	// connectToolSuffix names the placeholder tool listed for an upstream
	// MCP server the user has not connected yet.
	connectToolSuffix = "connect"
)

// relay talks to upstream MCP servers with the Go SDK's client over
// Streamable HTTP, through the egress client. One short-lived client
// session per list or call: nothing about the agent's request outlives it.
type relay struct {
	hc    *http.Client
	log   *slog.Logger
	now   func() time.Time
	gates *egress.Breakers[upstreamKey]
	mu    sync.Mutex
	lists map[listKey]listEntry
}

type listKey struct {
	tenant, upstream uuid.UUID
	subject          string
}

type listEntry struct {
	tools []*sdk.Tool
	at    time.Time
}

func newRelay(hc *http.Client, log *slog.Logger, now func() time.Time, gates *egress.Breakers[upstreamKey]) *relay {
	return &relay{hc: hc, log: log, now: now, gates: gates, lists: make(map[listKey]listEntry)}
}

// upstreamTransport adds Token B to requests for the upstream's own host
// (never to a redirect elsewhere) and remembers refusals and failures.
type upstreamTransport struct {
	base    http.RoundTripper
	host    string
	token   string
	mu      sync.Mutex
	status  int            // last 401 or 403 seen
	limited bool           // a 429 seen
	failed  egress.Verdict // last failed exchange (transport error, 5xx)
}

func (t *upstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.token != "" && strings.EqualFold(req.URL.Host, t.host) {
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	resp, err := t.base.RoundTrip(req)
	refused := err == nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden)
	limited := err == nil && resp.StatusCode == http.StatusTooManyRequests
	if v := egress.Judge(resp, err); refused || limited || v.Failed() {
		t.mu.Lock()
		switch {
		case refused:
			t.status = resp.StatusCode
		case limited:
			t.limited = true
		default:
			t.failed = v
		}
		t.mu.Unlock()
	}
	return resp, err
}

func (t *upstreamTransport) refused() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status
}

func (t *upstreamTransport) failure() egress.Verdict {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

func (t *upstreamTransport) rateLimited() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.limited
}

// relayVerdict is the gate's view of a relayed exchange with an upstream
// MCP server that ended with err (parent is the agent's request context).
// An answer of any kind, a JSON-RPC error or a 401/403 included, is
// Healthy; a transport failure or 5xx seen on the way is Unhealthy; a 429
// (see egress.Judge), a call the agent abandoned, or one that never reached
// the network, is no verdict.
func relayVerdict(parent context.Context, ut *upstreamTransport, err error) egress.Verdict {
	switch {
	case err == nil:
		return egress.Healthy()
	case ut == nil || parent.Err() != nil || errors.Is(err, context.Canceled):
		return egress.Verdict{}
	}
	if v := ut.failure(); v.Failed() {
		return v
	}
	if ut.rateLimited() {
		return egress.Verdict{}
	}
	var je *jsonrpc.Error
	if ut.refused() != 0 || errors.As(err, &je) {
		return egress.Healthy()
	}
	return egress.Unhealthy()
}

// connect opens a client session to up with token ("" for none).
func (r *relay) connect(ctx context.Context, up tenants.Upstream, token string, opts *sdk.ClientOptions) (*sdk.ClientSession, *upstreamTransport, error) {
	u, err := url.Parse(up.BaseURL)
	if err != nil || u.Host == "" {
		return nil, nil, fmt.Errorf("the URL of %s is malformed", up.Name)
	}
	base := r.hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	ut := &upstreamTransport{base: base, host: u.Host, token: token}
	hc := &http.Client{Transport: ut, Timeout: r.hc.Timeout, CheckRedirect: r.hc.CheckRedirect}
	if opts == nil {
		opts = &sdk.ClientOptions{}
	}
	// Declare no client capabilities: Locksmith does not relay sampling,
	// elicitation or roots from upstream servers.
	opts.Capabilities = &sdk.ClientCapabilities{}
	opts.Logger = quietLogger
	c := sdk.NewClient(&sdk.Implementation{Name: "locksmith", Version: Version}, opts)
	cs, err := c.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: up.BaseURL, HTTPClient: hc, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	return cs, ut, err
}

// list returns the upstream's tools for a user, cached briefly. A cache miss
// passes the upstream's gate; a refusal (*egress.UnavailableError) is
// returned as is and the caller skips the upstream.
func (r *relay) list(ctx context.Context, tenantID uuid.UUID, subject string, up tenants.Upstream, token string) ([]*sdk.Tool, error) {
	k := listKey{tenantID, up.ID, subject}
	r.mu.Lock()
	e, ok := r.lists[k]
	r.mu.Unlock()
	if ok && r.now().Sub(e.at) < relayListTTL {
		return e.tools, nil
	}
	permit, err := r.gates.Acquire(ctx, upstreamKey{tenantID, up.ID})
	if err != nil {
		return nil, err
	}
	parent := ctx
	ctx, cancel := detach(ctx, relayCallTimeout)
	defer cancel()
	tools, ut, err := r.listTools(ctx, up, token)
	settleGate(parent, r.log, r.gates, tenantID, up, permit, relayVerdict(parent, ut, err))
	if err != nil {
		return nil, r.classify(up, ut, err)
	}
	r.mu.Lock()
	if len(r.lists) > 10_000 {
		clear(r.lists)
	}
	r.lists[k] = listEntry{tools: tools, at: r.now()}
	r.mu.Unlock()
	return tools, nil
}

// listTools lists the upstream's tools in one client session.
func (r *relay) listTools(ctx context.Context, up tenants.Upstream, token string) ([]*sdk.Tool, *upstreamTransport, error) {
	cs, ut, err := r.connect(ctx, up, token, nil)
	if err != nil {
		return nil, ut, err
	}
	defer cs.Close()
	var tools []*sdk.Tool
	for t, err := range cs.Tools(ctx, nil) {
		if err != nil {
			return nil, ut, err
		}
		tools = append(tools, t)
		if len(tools) >= relayMaxTools {
			break
		}
	}
	return tools, ut, nil
}

// cached returns the last listed definition of an upstream tool, if any.
func (r *relay) cached(tenantID uuid.UUID, subject string, up tenants.Upstream, name string) *sdk.Tool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.lists[listKey{tenantID, up.ID, subject}]
	if !ok {
		return nil
	}
	for _, t := range e.tools {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// errUpstreamRefused is an upstream MCP server that answered 403.
var errUpstreamRefused = errors.New("the upstream refused: your account lacks permission")

// classify turns a client failure into the endpoint's error kinds.
func (r *relay) classify(up tenants.Upstream, ut *upstreamTransport, err error) error {
	if ut != nil {
		switch ut.refused() {
		case http.StatusUnauthorized:
			return &ConsentRequiredError{Reason: "upstream_refused_token"}
		case http.StatusForbidden:
			return errUpstreamRefused
		}
		if ut.failure().Failed() {
			// A transport failure, 5xx or 429 on the way: the SDK reports
			// these as a JSON-RPC "rejected by transport" error, but the
			// upstream did not answer the call.
			return &RetryableError{Err: fmt.Errorf("mcp: upstream %s: %w", up.Slug, err)}
		}
	}
	var je *jsonrpc.Error
	if errors.As(err, &je) {
		return err
	}
	return &RetryableError{Err: fmt.Errorf("mcp: upstream %s: %w", up.Slug, err)}
}

// addUpstreamTools registers an MCP upstream's tools, namespaced
// "{slug}.{tool}". only, when set, is the one tool a tools/call names: it
// is registered from the cached listing (or with an open schema) without
// contacting the upstream. For a user who has not connected the upstream,
// a "{slug}.connect" tool is listed instead, whose call returns the link.
func (h *Handler) addUpstreamTools(ctx context.Context, srv *sdk.Server, rs *reqState, up tenants.Upstream, only string) {
	prefix := h.toolPrefix(rs, up)
	tid, sub := rs.snap.tenant.ID, rs.principal.Subject
	if only != "" {
		name := strings.TrimPrefix(only, prefix)
		if name == connectToolSuffix {
			h.addConnectTool(srv, rs, up)
			return
		}
		def := h.relay.cached(tid, sub, up, name)
		if def == nil {
			def = &sdk.Tool{Name: name, InputSchema: emptyObjectSchema}
		}
		h.addRelayTool(srv, rs, up, def)
		return
	}
	token := ""
	if up.AuthMode != tenants.AuthNone {
		if h.cfg.Broker == nil {
			return
		}
		tok, err := h.cfg.Broker.Token(ctx, tid, up.ID, User{Issuer: rs.principal.Issuer, Subject: sub, Email: rs.principal.Email, RawTokenA: rs.rawToken}, nil)
		var cre *ConsentRequiredError
		switch {
		case errors.As(err, &cre):
			h.addConnectTool(srv, rs, up)
			return
		case err != nil:
			h.log.WarnContext(ctx, "mcp upstream tools unavailable", "tenant_id", tid, "upstream", up.Slug, "request_id", rs.requestID, "err", err)
			return
		}
		token = tok.Value
		if tok.RevokeAfterUse {
			defer h.cfg.Broker.AfterUse(ctx, tid, up.ID, tok)
		}
	}
	tools, err := h.relay.list(ctx, tid, sub, up, token)
	var cre *ConsentRequiredError
	if errors.As(err, &cre) && up.AuthMode != tenants.AuthNone {
		h.addConnectTool(srv, rs, up)
		return
	}
	if err != nil {
		h.log.WarnContext(ctx, "mcp upstream tools unavailable", "tenant_id", tid, "upstream", up.Slug, "request_id", rs.requestID, "err", err)
		return
	}
	for _, def := range tools {
		t := relayedTool(rs, up, prefix, def)
		d, err := h.cfg.Policy.Decide(ctx, Call{TenantID: tid, Principal: rs.principal, Tool: t, Upstream: up, EndpointScopes: rs.snap.idp.RequiredScopes})
		if err != nil || d.Effect == Deny {
			continue
		}
		h.addRelayTool(srv, rs, up, def)
	}
}

// relayedTool is the catalog view of an upstream tool, for policy and audit.
// Risk follows the upstream's explicit hints only.
func relayedTool(rs *reqState, up tenants.Upstream, prefix string, def *sdk.Tool) tenants.Tool {
	risk := tenants.RiskWrite
	if a := def.Annotations; a != nil {
		switch {
		case a.ReadOnlyHint:
			risk = tenants.RiskRead
		case a.DestructiveHint != nil && *a.DestructiveHint:
			risk = tenants.RiskDestructive
		}
	}
	return tenants.Tool{TenantID: rs.snap.tenant.ID, UpstreamID: up.ID, Name: prefix + def.Name,
		Title: def.Title, Description: def.Description, Method: "MCP", PathTemplate: def.Name, Risk: risk, Enabled: true}
}

func (h *Handler) addRelayTool(srv *sdk.Server, rs *reqState, up tenants.Upstream, def *sdk.Tool) {
	prefix := h.toolPrefix(rs, up)
	name := prefix + def.Name
	if len(name) > 128 {
		return
	}
	if _, clash := rs.snap.tool(name); clash {
		return // a catalog tool of the same name wins
	}
	t := *def
	t.Name = name
	if t.InputSchema == nil {
		t.InputSchema = emptyObjectSchema
	}
	cat := relayedTool(rs, up, prefix, def)
	upstreamName := def.Name
	if err := safeAddTool(srv, &t, func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		return h.callRelay(ctx, rs, req, up, cat, upstreamName)
	}); err != nil {
		h.log.Warn("mcp upstream tool skipped", "tenant_id", rs.snap.tenant.ID, "tool", name, "err", err)
	}
}

// addConnectTool lists "{slug}.connect" for an upstream the user has not
// connected: calling it returns the consent link.
func (h *Handler) addConnectTool(srv *sdk.Server, rs *reqState, up tenants.Upstream) {
	no := false
	t := &sdk.Tool{
		Name:        h.toolPrefix(rs, up) + connectToolSuffix,
		Title:       "Connect " + up.Name,
		Description: "Connect your " + up.Name + " account so that its tools appear here. Returns a link to open in a browser.",
		InputSchema: emptyObjectSchema,
		Annotations: &sdk.ToolAnnotations{ReadOnlyHint: true, DestructiveHint: &no},
	}
	_ = safeAddTool(srv, t, func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		cat := tenants.Tool{TenantID: rs.snap.tenant.ID, UpstreamID: up.ID, Name: t.Name, Method: "MCP", PathTemplate: "connect", Risk: tenants.RiskRead, Enabled: true}
		p := &callPlan{rs: rs, req: req, tool: cat, upstream: up, method: "MCP", path: "connect", local: true}
		return h.run(ctx, p, func(ctx context.Context, token string) (*sdk.CallToolResult, Outcome, error) {
			h.relay.forget(rs.snap.tenant.ID, rs.principal.Subject, up)
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{
				Text: up.Name + " is connected; call tools/list again to see its tools."}}}, Outcome{Result: "ok"}, nil
		})
	})
}

func (r *relay) forget(tenantID uuid.UUID, subject string, up tenants.Upstream) {
	r.mu.Lock()
	delete(r.lists, listKey{tenantID, up.ID, subject})
	r.mu.Unlock()
}

// callRelay runs a relayed tool through the hot path; the upstream is
// called with the user's Token B for it (or nothing, for auth mode none).
// Progress notifications and log messages from the upstream are relayed to
// the agent on the same response stream.
func (h *Handler) callRelay(actx context.Context, rs *reqState, req *sdk.CallToolRequest, up tenants.Upstream, cat tenants.Tool, upstreamName string) (*sdk.CallToolResult, error) {
	args, err := decodeArgs(req.Params.Arguments)
	if err != nil {
		return toolError("invalid_arguments", err.Error(), nil), nil
	}
	p := &callPlan{rs: rs, req: req, tool: cat, upstream: up, args: args, method: "MCP", path: upstreamName}
	return h.run(actx, p, func(ctx context.Context, token string) (*sdk.CallToolResult, Outcome, error) {
		ctx, cancel := detach(ctx, relayCallTimeout)
		defer cancel()
		progress := req.Params.GetProgressToken()
		opts := &sdk.ClientOptions{
			LoggingMessageHandler: func(_ context.Context, lr *sdk.LoggingMessageRequest) {
				_ = req.Session.Log(actx, lr.Params)
			},
		}
		if progress != nil {
			opts.ProgressNotificationHandler = func(_ context.Context, pr *sdk.ProgressNotificationClientRequest) {
				pp := *pr.Params
				pp.ProgressToken = progress
				pp.Meta = nil
				_ = req.Session.NotifyProgress(actx, &pp)
			}
		}
		cs, ut, err := h.relay.connect(ctx, up, token, opts)
		if err != nil {
			p.verdict = relayVerdict(actx, ut, err)
			return h.relayFailure(rs, up, ut, err)
		}
		// Close drains the notifications the client has queued (progress and
		// log messages may still be in flight when the result arrives), so
		// they are relayed while the agent's response is still open.
		closed := false
		defer func() {
			if !closed {
				_ = cs.Close()
			}
		}()
		if ir := cs.InitializeResult(); ir != nil && ir.Capabilities != nil && ir.Capabilities.Logging != nil && ir.ProtocolVersion < version20260728 {
			_ = cs.SetLoggingLevel(ctx, &sdk.SetLoggingLevelParams{Level: "debug"})
		}
		params := &sdk.CallToolParams{Name: upstreamName, Arguments: json.RawMessage(orEmptyObject(req.Params.Arguments))}
		if progress != nil {
			// Set through Meta: the agent's token may be any JSON number
			// (decoded as float64), which SetProgressToken refuses.
			params.Meta = sdk.Meta{"progressToken": progress}
		}
		res, err := cs.CallTool(ctx, params)
		closed = true
		_ = cs.Close()
		p.verdict = relayVerdict(actx, ut, err)
		if err != nil {
			return h.relayFailure(rs, up, ut, err)
		}
		out := &sdk.CallToolResult{Content: res.Content, StructuredContent: res.StructuredContent, IsError: res.IsError}
		if out.Content == nil {
			out.Content = []sdk.Content{}
		}
		o := Outcome{Result: "ok", Status: http.StatusOK}
		if res.IsError {
			o.Result = "tool_error"
		}
		return out, o, nil
	})
}

// relayFailure maps a failed relay to a tool result, or to a consent
// request when the upstream refused Token B.
func (h *Handler) relayFailure(rs *reqState, up tenants.Upstream, ut *upstreamTransport, err error) (*sdk.CallToolResult, Outcome, error) {
	err = h.relay.classify(up, ut, err)
	var cre *ConsentRequiredError
	var je *jsonrpc.Error
	switch {
	case errors.As(err, &cre):
		if up.AuthMode == tenants.AuthNone {
			return toolError("upstream_config", up.Name+" requires credentials, but it is registered without authentication; ask your admin to fix its auth mode", nil),
				Outcome{Result: "upstream_error", Status: http.StatusUnauthorized}, nil
		}
		cre.ConsentURL = h.consentURL(rs.snap.tenant.Slug, up.Slug, nil)
		return nil, Outcome{Status: http.StatusUnauthorized}, cre
	case errors.Is(err, errUpstreamRefused):
		return toolError("permission", "the upstream refused: your account lacks permission for this at "+up.Name, map[string]any{"status": http.StatusForbidden}),
			Outcome{Result: "tool_error", Status: http.StatusForbidden}, nil
	case errors.As(err, &je) && !errors.As(err, new(*RetryableError)):
		return toolError("upstream", fmt.Sprintf("%s refused the call: %s", up.Name, truncate(je.Message, 300)), map[string]any{"code": je.Code}),
			Outcome{Result: "tool_error", Error: "jsonrpc"}, nil
	}
	h.log.Warn("mcp relay failed", "tenant_id", rs.snap.tenant.ID, "upstream", up.Slug, "request_id", rs.requestID, "err", err)
	return retryable(up.Name+" could not be reached or did not answer; this is usually temporary, retry in a moment", 0),
		Outcome{Result: "upstream_error", Error: "unreachable"}, nil
}

func orEmptyObject(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return json.RawMessage(`{}`)
	}
	return raw
}

// detach returns a context that ends when parent ends or after d, but
// carries none of parent's values: the SDK keeps the agent's protocol
// version in the request context, and the client talking to the upstream
// must negotiate its own.
func detach(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	stop := context.AfterFunc(parent, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// toolPrefix is "{slug}." for an upstream's relayed tools, or "" under
// Config.UnprefixedSingleUpstream for a tenant whose only tools are those
// of its one MCP upstream.
func (h *Handler) toolPrefix(rs *reqState, up tenants.Upstream) string {
	if h.cfg.UnprefixedSingleUpstream && len(rs.snap.mcpUps) == 1 && len(rs.snap.tools) == 0 {
		return ""
	}
	return up.Slug + "."
}
