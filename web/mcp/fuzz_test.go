package mcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/tokena"
	webmcp "github.com/locksmithhq/locksmith/web/mcp"
)

// memRegistry is one tenant in memory, for the fuzz target (no database).
type memRegistry struct {
	tenant tenants.Tenant
	idp    tenants.IdP
	ups    []tenants.Upstream
	tools  []tenants.Tool
}

func (m *memRegistry) TenantBySlug(_ context.Context, slug string) (tenants.Tenant, error) {
	if slug != m.tenant.Slug {
		return tenants.Tenant{}, tenants.ErrNotFound
	}
	return m.tenant, nil
}

func (m *memRegistry) IdP(context.Context, uuid.UUID) (tenants.IdP, error) { return m.idp, nil }

func (m *memRegistry) Catalog(context.Context, uuid.UUID) ([]tenants.Upstream, []tenants.Tool, error) {
	return m.ups, m.tools, nil
}

// fakeVerifier accepts the token "good" (and "noscope", without the
// endpoint scope) and refuses everything else like tokena does.
type fakeVerifier struct{}

func (fakeVerifier) Verify(_ context.Context, _ tenants.IdP, _ string, raw string) (tokena.Principal, error) {
	switch raw {
	case "good":
		return tokena.Principal{Issuer: "https://idp.example", Subject: "u1", Scopes: []string{endpointScope}, ExpiresAt: time.Now().Add(time.Hour)}, nil
	case "noscope":
		return tokena.Principal{Issuer: "https://idp.example", Subject: "u1", ExpiresAt: time.Now().Add(time.Hour)}, nil
	}
	return tokena.Principal{}, &tokena.Error{Reason: tokena.ReasonMalformed, Message: "the token is not a JWT"}
}

// fuzzHandler is the endpoint over an in-memory tenant whose one upstream
// (auth mode none) answers every request with a small JSON object.
func fuzzHandler(f *testing.F) (*webmcp.Handler, string) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	f.Cleanup(up.Close)
	tid, uid := uuid.New(), uuid.New()
	reg := &memRegistry{
		tenant: tenants.Tenant{ID: tid, Slug: "fuzz", Name: "Fuzz"},
		idp:    tenants.IdP{TenantID: tid, Issuer: "https://idp.example", RequiredScopes: []string{endpointScope}},
		ups:    []tenants.Upstream{{TenantID: tid, ID: uid, Slug: "api", Name: "API", Kind: tenants.UpstreamREST, BaseURL: up.URL, AuthMode: tenants.AuthNone}},
		tools: []tenants.Tool{
			{TenantID: tid, UpstreamID: uid, Name: "get_item", Method: "GET", PathTemplate: "/items/{id}", QueryParams: []string{"q"},
				InputSchema: json.RawMessage(`{"type":"object","properties":{"id":{"type":"string"},"q":{"type":"array"}},"required":["id"]}`), Risk: tenants.RiskRead, Enabled: true},
			{TenantID: tid, UpstreamID: uid, Name: "put_item", Method: "PUT", PathTemplate: "/items/{id}", BodyParams: []string{"v"}, Risk: tenants.RiskWrite, Enabled: true},
			{TenantID: tid, UpstreamID: uid, Name: "drop_item", Method: "DELETE", PathTemplate: "/items/{id}", Risk: tenants.RiskDestructive, Enabled: true},
		},
	}
	base, _ := url.Parse("http://fuzz.example")
	h, err := webmcp.New(webmcp.Config{BaseURL: base, Logger: testLogger(), Registry: reg, Verifier: fakeVerifier{}, HTTPClient: up.Client()})
	if err != nil {
		f.Fatal(err)
	}
	return h, "http://fuzz.example/t/fuzz/mcp"
}

// FuzzRequest drives whole requests (body, protocol and MCP headers, the
// Authorization header, Origin) through the endpoint: it must never panic,
// never answer 5xx, and refuse anything unauthenticated with 401.
func FuzzRequest(f *testing.F) {
	h, target := fuzzHandler(f)
	seeds := []struct {
		body                              string
		version, method, name, auth, orig string
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{"url":{}}},"clientInfo":{"name":"x","version":"1"}}}`, "", "", "", "Bearer good", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "2025-06-18", "", "", "Bearer good", ""},
		{`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_item","arguments":{"id":"1","q":["a","b"]}}}`, "2025-11-25", "", "", "Bearer good", ""},
		{`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"put_item","arguments":{"id":"..","v":{"x":1}}}}`, "2025-06-18", "", "", "Bearer good", ""},
		{`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"drop_item","arguments":{"id":"1"}}}`, "2025-06-18", "", "", "Bearer good", ""},
		{`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"get_item","arguments":{"id":"1"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`, "2026-07-28", "tools/call", "get_item", "Bearer good", ""},
		{`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"get_item","arguments":{"id":"1"}}}`, "2026-07-28", "tools/call", "other", "Bearer good", ""},
		{`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`, "2025-03-26", "", "", "Bearer good", ""},
		{`[1,2,{"id":null}]`, "", "", "", "Bearer good", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "", "", "", "Bearer bad", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "", "", "", "Bearer noscope", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "2099-01-01", "", "", "Bearer good", "https://evil.example"},
		{`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_item","arguments":{"id":"1"},"requestState":"h1.e30.AA","inputResponses":{"x":{"action":"accept"}}}}`, "2026-07-28", "tools/call", "get_item", "Bearer good", ""},
		{`{"jsonrpc":"2.0","id":"s","method":"resources/list"}`, "2025-11-25", "", "", "Bearer good", "http://fuzz.example"},
		{`{"jsonrpc":"2.0","id":1,"result":{}}`, "", "", "", "Bearer good", ""},
		{``, "", "", "", "", ""},
	}
	for _, s := range seeds {
		f.Add([]byte(s.body), s.version, s.method, s.name, s.auth, s.orig)
	}
	f.Fuzz(func(t *testing.T, body []byte, version, method, name, auth, origin string) {
		req := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		set := func(k, v string) {
			if v != "" && validHeaderValue(v) {
				req.Header.Set(k, v)
			}
		}
		set("Mcp-Protocol-Version", version)
		set("Mcp-Method", method)
		set("Mcp-Name", name)
		set("Authorization", auth)
		set("Origin", origin)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.WithContext(ctx))
		if rec.Code >= 500 {
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body.String())
		}
		if a := req.Header.Get("Authorization"); rec.Code == http.StatusOK && !strings.Contains(a, "good") {
			t.Fatalf("unauthenticated request answered 200: auth %q", a)
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("request hung")
		}
	})
}

// validHeaderValue filters what net/http would refuse to send anyway.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
