package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
)

// Resources, resource templates, prompts and completions of upstream MCP
// servers are relayed like their tools: one short-lived client session per
// upstream, Token B of the user for that upstream (never Token A), policy
// decided per upstream as a read, and resources/read and prompts/get
// audited. Prompt names are namespaced "{slug}.{name}" like tools; resource
// URIs stay the upstream's own and are routed back by a lookup over the
// user's upstreams. Subscriptions are not supported: the endpoint is
// stateless.

// relayFeatureMax bounds how many items one upstream contributes to a list.
const relayFeatureMax = 1000

var relayedFeatureMethods = map[string]bool{
	"resources/list":           true,
	"resources/templates/list": true,
	"resources/read":           true,
	"prompts/list":             true,
	"prompts/get":              true,
	"completion/complete":      true,
}

// featureIndex remembers which upstream listed which resource URIs and URI
// templates, per (tenant, upstream, user), to route resources/read.
type featureIndex struct {
	mu sync.Mutex
	m  map[listKey]featureEntry
}

type featureEntry struct {
	uris      map[string]bool
	templates []string
}

var resourceIndex = &featureIndex{m: make(map[listKey]featureEntry)}

func (f *featureIndex) add(k listKey, uris, templates []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.m) > 10_000 {
		clear(f.m)
	}
	e, ok := f.m[k]
	if !ok {
		e = featureEntry{uris: map[string]bool{}}
	}
	for _, u := range uris {
		e.uris[u] = true
	}
	if templates != nil {
		e.templates = templates
	}
	f.m[k] = e
}

// owns reports whether the upstream of k listed uri, or a template whose
// literal prefix uri starts with.
func (f *featureIndex) owns(k listKey, uri string) (known, owned bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.m[k]
	if !ok {
		return false, false
	}
	if e.uris[uri] {
		return true, true
	}
	for _, t := range e.templates {
		lit, _, _ := strings.Cut(t, "{")
		if lit != "" && strings.HasPrefix(uri, lit) {
			return true, true
		}
	}
	return true, false
}

// featureCapabilities adds the relayed features to caps when the tenant has
// upstream MCP servers.
func featureCapabilities(rs *reqState, caps *sdk.ServerCapabilities) {
	if len(rs.snap.mcpUps) == 0 {
		return
	}
	caps.Resources = &sdk.ResourceCapabilities{}
	caps.Prompts = &sdk.PromptCapabilities{}
	caps.Completions = &sdk.CompletionCapabilities{}
}

// relayFeatures is receiving middleware that answers the relayed methods.
func (h *Handler) relayFeatures(rs *reqState) sdk.Middleware {
	return func(next sdk.MethodHandler) sdk.MethodHandler {
		return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
			if !relayedFeatureMethods[method] || len(rs.snap.mcpUps) == 0 {
				return next(ctx, method, req)
			}
			return h.relayFeature(ctx, rs, method, req)
		}
	}
}

func (h *Handler) relayFeature(ctx context.Context, rs *reqState, method string, req sdk.Request) (sdk.Result, error) {
	switch p := req.GetParams().(type) {
	case *sdk.ListResourcesParams:
		return h.listResources(ctx, rs, p), nil
	case *sdk.ListResourceTemplatesParams:
		return h.listResourceTemplates(ctx, rs, p), nil
	case *sdk.ListPromptsParams:
		return h.listPrompts(ctx, rs, p), nil
	case *sdk.ReadResourceParams:
		up, ok := h.resourceUpstream(ctx, rs, p.URI)
		if !ok {
			return nil, sdk.ResourceNotFoundError(p.URI)
		}
		var out *sdk.ReadResourceResult
		err := h.featureCall(ctx, rs, req, up, method, p.URI, func(ctx context.Context, cs *sdk.ClientSession) error {
			res, err := cs.ReadResource(ctx, &sdk.ReadResourceParams{URI: p.URI})
			out = res
			return err
		})
		return out, err
	case *sdk.GetPromptParams:
		up, name, ok := h.promptUpstream(rs, p.Name)
		if !ok {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams,
				Message: fmt.Sprintf("unknown prompt %q: call prompts/list to see the prompts available to you here", truncate(p.Name, 128))}
		}
		var out *sdk.GetPromptResult
		err := h.featureCall(ctx, rs, req, up, method, name, func(ctx context.Context, cs *sdk.ClientSession) error {
			res, err := cs.GetPrompt(ctx, &sdk.GetPromptParams{Name: name, Arguments: p.Arguments})
			out = res
			return err
		})
		return out, err
	case *sdk.CompleteParams:
		if p.Ref == nil {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "completion/complete needs a ref"}
		}
		ref := *p.Ref
		var up tenants.Upstream
		ok := false
		switch ref.Type {
		case "ref/prompt":
			up, ref.Name, ok = h.promptUpstream(rs, ref.Name)
		case "ref/resource":
			up, ok = h.resourceUpstream(ctx, rs, ref.URI)
		}
		if !ok {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "completion/complete: the ref names no prompt or resource available to you here"}
		}
		var out *sdk.CompleteResult
		err := h.featureCall(ctx, rs, req, up, method, ref.Name+ref.URI, func(ctx context.Context, cs *sdk.ClientSession) error {
			res, err := cs.Complete(ctx, &sdk.CompleteParams{Argument: p.Argument, Context: p.Context, Ref: &ref})
			out = res
			return err
		})
		return out, err
	}
	return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "invalid params for " + method}
}

// featureTool is the catalog view of a relayed feature method of an
// upstream, for policy and audit: a read.
func (h *Handler) featureTool(rs *reqState, up tenants.Upstream, method, target string) tenants.Tool {
	return tenants.Tool{TenantID: rs.snap.tenant.ID, UpstreamID: up.ID, Name: h.toolPrefix(rs, up) + method,
		Method: "MCP", PathTemplate: method + " " + target, Risk: tenants.RiskRead, Enabled: true}
}

// featureAllowed decides the policy for a relayed method of up.
func (h *Handler) featureAllowed(ctx context.Context, rs *reqState, up tenants.Upstream, t tenants.Tool) (Decision, bool) {
	d, err := h.cfg.Policy.Decide(ctx, Call{TenantID: rs.snap.tenant.ID, TenantSlug: rs.snap.tenant.Slug, RequestID: rs.requestID,
		Principal: rs.principal, Tool: t, Upstream: up, Args: map[string]any{}, EndpointScopes: rs.snap.idp.RequiredScopes})
	if err != nil {
		h.log.WarnContext(ctx, "mcp policy failed for a relayed read", "tenant_id", rs.snap.tenant.ID, "tool", t.Name, "err", err, "request_id", rs.requestID)
		return d, false
	}
	return d, d.Effect == Allow
}

// upstreamToken returns Token B for up ("" for auth mode none).
func (h *Handler) upstreamToken(ctx context.Context, rs *reqState, up tenants.Upstream) (UpstreamToken, error) {
	if up.AuthMode == tenants.AuthNone {
		return UpstreamToken{}, nil
	}
	if h.cfg.Broker == nil {
		return UpstreamToken{}, errNoBroker
	}
	return h.cfg.Broker.Token(ctx, rs.snap.tenant.ID, up.ID, User{Issuer: rs.principal.Issuer, Subject: rs.principal.Subject,
		Email: rs.principal.Email, RawTokenA: rs.rawToken}, nil)
}

// eachUpstream runs fn with a client session to every upstream the
// principal may read from and has connected; failures are logged and the
// upstream skipped.
func (h *Handler) eachUpstream(ctx context.Context, rs *reqState, method string, fn func(ctx context.Context, up tenants.Upstream, cs *sdk.ClientSession) error) {
	for _, up := range rs.snap.mcpUps {
		if _, ok := h.featureAllowed(ctx, rs, up, h.featureTool(rs, up, method, "")); !ok {
			continue
		}
		tok, err := h.upstreamToken(ctx, rs, up)
		if err != nil {
			continue // not connected (its tools list "{slug}.connect"), or no broker
		}
		func() {
			if tok.RevokeAfterUse {
				defer h.cfg.Broker.AfterUse(ctx, rs.snap.tenant.ID, up.ID, tok)
			}
			permit, err := h.gate(ctx, rs.snap.tenant.ID, up)
			if err != nil {
				h.log.WarnContext(ctx, "mcp upstream "+method+" unavailable", "tenant_id", rs.snap.tenant.ID, "upstream", up.Slug,
					"request_id", rs.requestID, "err", err)
				return
			}
			var verdict egress.Verdict
			defer func() { h.settle(ctx, rs.snap.tenant.ID, up, permit, verdict) }()
			cctx, cancel := detach(ctx, relayCallTimeout)
			defer cancel()
			cs, ut, err := h.relay.connect(cctx, up, tok.Value, nil)
			if err == nil {
				defer cs.Close()
				err = fn(cctx, up, cs)
			}
			verdict = relayVerdict(ctx, ut, err)
			if err != nil {
				h.log.WarnContext(ctx, "mcp upstream "+method+" unavailable", "tenant_id", rs.snap.tenant.ID, "upstream", up.Slug,
					"request_id", rs.requestID, "err", h.relay.classify(up, ut, err))
			}
		}()
	}
}

func (h *Handler) listResources(ctx context.Context, rs *reqState, _ *sdk.ListResourcesParams) *sdk.ListResourcesResult {
	out := &sdk.ListResourcesResult{Resources: []*sdk.Resource{}}
	h.eachUpstream(ctx, rs, "resources/list", func(ctx context.Context, up tenants.Upstream, cs *sdk.ClientSession) error {
		var uris []string
		for r, err := range cs.Resources(ctx, nil) {
			if err != nil {
				return err
			}
			out.Resources = append(out.Resources, r)
			uris = append(uris, r.URI)
			if len(uris) >= relayFeatureMax {
				break
			}
		}
		resourceIndex.add(listKey{rs.snap.tenant.ID, up.ID, rs.principal.Subject}, uris, nil)
		return nil
	})
	return out
}

func (h *Handler) listResourceTemplates(ctx context.Context, rs *reqState, _ *sdk.ListResourceTemplatesParams) *sdk.ListResourceTemplatesResult {
	out := &sdk.ListResourceTemplatesResult{ResourceTemplates: []*sdk.ResourceTemplate{}}
	h.eachUpstream(ctx, rs, "resources/templates/list", func(ctx context.Context, up tenants.Upstream, cs *sdk.ClientSession) error {
		templates := []string{}
		for t, err := range cs.ResourceTemplates(ctx, nil) {
			if err != nil {
				return err
			}
			out.ResourceTemplates = append(out.ResourceTemplates, t)
			templates = append(templates, t.URITemplate)
			if len(templates) >= relayFeatureMax {
				break
			}
		}
		resourceIndex.add(listKey{rs.snap.tenant.ID, up.ID, rs.principal.Subject}, nil, templates)
		return nil
	})
	return out
}

func (h *Handler) listPrompts(ctx context.Context, rs *reqState, _ *sdk.ListPromptsParams) *sdk.ListPromptsResult {
	out := &sdk.ListPromptsResult{Prompts: []*sdk.Prompt{}}
	h.eachUpstream(ctx, rs, "prompts/list", func(ctx context.Context, up tenants.Upstream, cs *sdk.ClientSession) error {
		prefix, n := h.toolPrefix(rs, up), 0
		for p, err := range cs.Prompts(ctx, nil) {
			if err != nil {
				return err
			}
			q := *p
			q.Name = prefix + p.Name
			out.Prompts = append(out.Prompts, &q)
			if n++; n >= relayFeatureMax {
				break
			}
		}
		return nil
	})
	return out
}

// promptUpstream routes a namespaced prompt name to its upstream and the
// upstream's own name for it.
func (h *Handler) promptUpstream(rs *reqState, name string) (tenants.Upstream, string, bool) {
	if len(rs.snap.mcpUps) == 1 && h.toolPrefix(rs, rs.snap.mcpUps[0]) == "" {
		return rs.snap.mcpUps[0], name, name != ""
	}
	slug, rest, ok := strings.Cut(name, ".")
	if !ok || rest == "" {
		return tenants.Upstream{}, "", false
	}
	for _, up := range rs.snap.mcpUps {
		if up.Slug == slug {
			return up, rest, true
		}
	}
	return tenants.Upstream{}, "", false
}

// resourceUpstream routes a resource URI to the upstream that listed it (or
// a template it matches). With one upstream, every URI goes to it. An index
// that does not know the URI is refreshed once by listing.
func (h *Handler) resourceUpstream(ctx context.Context, rs *reqState, uri string) (tenants.Upstream, bool) {
	if uri == "" {
		return tenants.Upstream{}, false
	}
	if len(rs.snap.mcpUps) == 1 {
		return rs.snap.mcpUps[0], true
	}
	find := func() (tenants.Upstream, bool) {
		for _, up := range rs.snap.mcpUps {
			if _, owned := resourceIndex.owns(listKey{rs.snap.tenant.ID, up.ID, rs.principal.Subject}, uri); owned {
				return up, true
			}
		}
		return tenants.Upstream{}, false
	}
	if up, ok := find(); ok {
		return up, true
	}
	h.listResources(ctx, rs, nil)
	h.listResourceTemplates(ctx, rs, nil)
	return find()
}

// featureCall runs one relayed read against up: policy, Token B, audit
// intent, the upstream call, audit outcome. Consent is asked for as for
// tools (-32042 for clients that declared URL elicitation, otherwise an
// error carrying the link).
func (h *Handler) featureCall(ctx context.Context, rs *reqState, req sdk.Request, up tenants.Upstream, method, target string, do func(ctx context.Context, cs *sdk.ClientSession) error) error {
	start := h.cfg.Now()
	t := h.featureTool(rs, up, method, target)
	d, ok := h.featureAllowed(ctx, rs, up, t)
	intent := Intent{
		TenantID: rs.snap.tenant.ID, RequestID: rs.requestID,
		Issuer: rs.principal.Issuer, Subject: rs.principal.Subject, Email: rs.principal.Email,
		Agent: rs.principal.AgentClientID, Act: rs.principal.Act,
		Tool: t.Name, UpstreamID: up.ID, Upstream: up.Slug, UpstreamName: up.Name,
		Method: "MCP", PathTemplate: t.PathTemplate, Decision: d,
	}
	if !ok {
		h.recordRefusal(ctx, intent)
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "refused by policy: " + d.Reason}
	}
	tok, err := h.upstreamToken(ctx, rs, up)
	intent.TokenScopes, intent.Narrowed = tok.Scopes, tok.Narrowed
	var cre *ConsentRequiredError
	switch {
	case errors.As(err, &cre):
		h.recordRefusal(ctx, intent)
		return h.featureConsent(rs, req, up, cre)
	case errors.Is(err, errNoBroker):
		return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "Locksmith can't get credentials for " + up.Name + " (the token broker is not configured on this server); ask your admin"}
	case err != nil:
		h.log.WarnContext(ctx, "mcp broker failed", "tenant_id", rs.snap.tenant.ID, "upstream", up.Slug, "request_id", rs.requestID, "err", err)
		return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "Locksmith could not get your credential for " + up.Name + "; retry in a moment (request id " + rs.requestID + ")"}
	}
	if tok.RevokeAfterUse {
		defer h.cfg.Broker.AfterUse(ctx, rs.snap.tenant.ID, up.ID, tok)
	}
	auditID, err := h.cfg.Audit.Intent(ctx, intent)
	if err != nil {
		h.log.ErrorContext(ctx, "mcp audit intent failed", "tenant_id", rs.snap.tenant.ID, "tool", t.Name, "request_id", rs.requestID, "err", err)
		return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "Locksmith could not record this read in the audit trail, so it did not call " + up.Name + "; retry in a moment"}
	}
	out := Outcome{Result: "ok", Status: http.StatusOK, TokenScopes: tok.Scopes, Narrowed: tok.Narrowed}
	permit, err := h.gate(ctx, rs.snap.tenant.ID, up)
	if err != nil {
		out = gateOutcome(err)
		out.TokenScopes, out.Narrowed, out.Latency = tok.Scopes, tok.Narrowed, h.cfg.Now().Sub(start)
		if aerr := h.cfg.Audit.Outcome(context.WithoutCancel(ctx), rs.snap.tenant.ID, auditID, out); aerr != nil {
			h.log.ErrorContext(ctx, "mcp audit outcome failed", "audit_id", auditID, "request_id", rs.requestID, "err", aerr)
		}
		msg, after, reason := unavailableText(up, err)
		return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: fmt.Sprintf("%s (after %d s)", msg, after/time.Second),
			Data: json.RawMessage(fmt.Sprintf(`{"retryable":true,"retry_after_seconds":%d,"reason":%q}`, after/time.Second, reason))}
	}
	cctx, cancel := detach(ctx, relayCallTimeout)
	defer cancel()
	cs, ut, err := h.relay.connect(cctx, up, tok.Value, nil)
	if err == nil {
		err = do(cctx, cs)
		_ = cs.Close()
	}
	h.settle(ctx, rs.snap.tenant.ID, up, permit, relayVerdict(ctx, ut, err))
	if err != nil {
		err = h.relay.classify(up, ut, err)
	}
	var je *jsonrpc.Error
	switch {
	case err == nil:
	case errors.As(err, &cre):
		out.Result, out.Status, out.Error = "consent_required", http.StatusUnauthorized, "upstream refused the token: "+cre.Reason
		if up.AuthMode == tenants.AuthNone {
			err = &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: up.Name + " requires credentials, but it is registered without authentication; ask your admin to fix its auth mode"}
		} else {
			err = h.featureConsent(rs, req, up, cre)
		}
	case errors.Is(err, errUpstreamRefused):
		out.Result, out.Status, out.Error = "tool_error", http.StatusForbidden, "forbidden"
		err = &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "the upstream refused: your account lacks permission for this at " + up.Name}
	case errors.As(err, &je) && !errors.As(err, new(*RetryableError)):
		out.Result, out.Error = "tool_error", "jsonrpc"
	default:
		h.log.Warn("mcp relay failed", "tenant_id", rs.snap.tenant.ID, "upstream", up.Slug, "request_id", rs.requestID, "err", err)
		out.Result, out.Error = "upstream_error", "unreachable"
		err = &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: up.Name + " could not be reached or did not answer; this is usually temporary, retry in a moment"}
	}
	out.Latency = h.cfg.Now().Sub(start)
	if aerr := h.cfg.Audit.Outcome(context.WithoutCancel(ctx), rs.snap.tenant.ID, auditID, out); aerr != nil {
		h.log.ErrorContext(ctx, "mcp audit outcome failed", "audit_id", auditID, "request_id", rs.requestID, "err", aerr)
	}
	return err
}

// featureConsent is the error for a relayed read that needs the user to
// (re)connect up: -32042 with a URL elicitation for clients that declared
// it, otherwise an error whose message and data carry the link.
func (h *Handler) featureConsent(rs *reqState, req sdk.Request, up tenants.Upstream, cre *ConsentRequiredError) error {
	link := cre.ConsentURL
	if link == "" {
		link = h.consentURL(rs.snap.tenant.Slug, up.Slug, cre.MissingScopes)
	}
	msg := "this needs access to " + up.Name + ": open the link to grant it, then retry"
	proto := rs.version
	if s := req.GetSession(); s != nil {
		if ss, ok := s.(*sdk.ServerSession); ok && ss.InitializeParams() != nil && ss.InitializeParams().ProtocolVersion != "" {
			proto = ss.InitializeParams().ProtocolVersion
		}
	}
	if proto >= version20251125 && h.caps.has(rs.tokenKey) {
		return sdk.URLElicitationRequiredError([]*sdk.ElicitParams{{Mode: "url", Message: msg, URL: link, ElicitationID: randomID()}})
	}
	return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: msg + ": " + link}
}
