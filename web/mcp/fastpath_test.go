package mcp_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	webmcp "github.com/locksmithhq/locksmith/web/mcp"
)

// The fast path writes results exactly as CallToolResult.MarshalJSON does.
func TestFastPathResultEncoding(t *testing.T) {
	t.Parallel()
	texts := []string{"", "plain", `quote " backslash \ slash /`, "<b>&amp;</b>", "tab\tnl\ncr\rbs\bff\f\x00\x01\x1f\x7f",
		"é 日本 🔑", "\u2028\u2029", "bad \xff\xfe utf-8", strings.Repeat("x", 5000)}
	structured := []any{nil, json.RawMessage(`{"a":1}`), json.RawMessage("{ \"a\" : [1, 2.50, \"<x>&\u2028\"],\n\t\"b\":{} }"),
		json.RawMessage(`{"result":[1,2]}`), map[string]any{"error": map[string]any{"kind": "policy", "message": "a <b> & c"}}}
	for _, text := range texts {
		for _, sc := range structured {
			for _, isErr := range []bool{false, true} {
				res := &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: text}}, StructuredContent: sc, IsError: isErr}
				want, err := json.Marshal(res)
				require.NoError(t, err)
				var got bytes.Buffer
				require.True(t, webmcp.AppendResult(&got, res))
				require.Equal(t, string(want), got.String(), "text %q, structured %v", text, sc)
			}
		}
	}
	// Other shapes are left to json.Marshal.
	for _, res := range []*sdk.CallToolResult{
		{Content: []sdk.Content{&sdk.TextContent{Text: "a"}, &sdk.TextContent{Text: "b"}}},
		{Content: []sdk.Content{&sdk.ImageContent{Data: []byte{1}, MIMEType: "image/png"}}},
		{Content: []sdk.Content{&sdk.TextContent{Text: "a"}}, StructuredContent: []int{1}},
		{Content: []sdk.Content{&sdk.TextContent{Text: "a"}}, Meta: sdk.Meta{"k": "v"}},
	} {
		require.False(t, webmcp.AppendResult(&bytes.Buffer{}, res))
	}
}

func TestFastPathPlainIDs(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		`0`: true, `7`: true, `-12`: true, `123456789012345`: true, `"abc-1:2"`: true, `""`: true,
		`-0`: false, `07`: false, `1.0`: false, `1e2`: false, `1234567890123456`: false, `"a\"b"`: false,
		`"\u0041"`: false, `"é"`: false, `null`: false, ``: false, `-`: false,
	} {
		require.Equal(t, want, webmcp.PlainID(json.RawMessage(id)), id)
	}
}

// elicitationIDs are random per answer; comparisons blank them.
var elicitationIDs = regexp.MustCompile(`"elicitationId":"[^"]*"`)

// The fast path answers byte for byte as the SDK path does. A request whose
// params carry an empty _meta goes through the SDK (and means the same).
func TestFastPathMatchesSDKPath(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tokenA := b.tokenA(t)
	post := func(version, body string, extra map[string]string) (*http.Response, string) {
		hdr := map[string]string{"Authorization": "Bearer " + tokenA, "Mcp-Protocol-Version": version}
		for k, v := range extra {
			hdr[k] = v
		}
		return rpc(t, http.MethodPost, b.resource, body, hdr)
	}
	compare := func(name, version, id, params string) {
		t.Helper()
		before := webmcp.FastCalls(b.handler)
		fastResp, fast := post(version, `{"jsonrpc":"2.0","id":`+id+`,"method":"tools/call","params":`+params+`}`, nil)
		require.Equal(t, before+1, webmcp.FastCalls(b.handler), "%s: served by the fast path", name)
		slowParams := strings.TrimSuffix(params, "}") + `,"_meta":{}}`
		slowResp, slow := post(version, `{"jsonrpc":"2.0","id":`+id+`,"method":"tools/call","params":`+slowParams+`}`, nil)
		require.Equal(t, before+1, webmcp.FastCalls(b.handler), "%s: served by the SDK", name)
		require.Equal(t, slowResp.StatusCode, fastResp.StatusCode, name)
		for _, h := range []string{"Content-Type", "Cache-Control", "Connection"} {
			require.Equal(t, slowResp.Header.Values(h), fastResp.Header.Values(h), "%s: %s", name, h)
		}
		require.Equal(t, elicitationIDs.ReplaceAllString(slow, ""), elicitationIDs.ReplaceAllString(fast, ""), name)
	}

	// Before consent: the tool error with the link (2025-06-18) and -32042
	// (2025-11-25, after an initialize declaring URL elicitation).
	compare("consent link", "2025-06-18", `1`, `{"name":"list_tasks","arguments":{}}`)
	resp, body := post("2025-11-25", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{"url":{}}},"clientInfo":{"name":"raw","version":"1"}}}`, nil)
	require.Equal(t, 200, resp.StatusCode, body)
	compare("-32042", "2025-11-25", `2`, `{"name":"list_tasks","arguments":{}}`)

	b.grant(t)
	_, body = post("2025-11-25", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"create_task","arguments":{"title":"Fix <b>bold</b> & \"quotes\" \u2028 é"}}}`, nil)
	created := sseJSON(t, body)["result"].(map[string]any)["structuredContent"].(map[string]any)
	id := created["id"].(string)

	compare("list", "2025-11-25", `4`, `{"name":"list_tasks","arguments":{}}`)
	compare("list, string id", "2025-06-18", `"req-5"`, `{"name":"list_tasks"}`)
	compare("get with HTML and unicode", "2025-11-25", `6`, `{"name":"get_task","arguments":{"id":"`+id+`"}}`)
	compare("not found", "2025-11-25", `7`, `{"name":"get_task","arguments":{"id":"nope"}}`)
	compare("missing argument", "2025-11-25", `8`, `{"name":"create_task","arguments":{}}`)
	compare("unknown argument", "2025-11-25", `9`, `{"name":"create_task","arguments":{"title":"x","owner":"y"}}`)
	compare("approval", "2025-11-25", `10`, `{"name":"delete_task","arguments":{"id":"`+id+`"}}`)
	compare("disabled", "2025-11-25", `11`, `{"name":"archived_tool","arguments":{}}`)

	// Requests the fast path leaves to the SDK.
	before := webmcp.FastCalls(b.handler)
	for _, c := range []struct {
		version, body string
		hdr           map[string]string
	}{
		{"2026-07-28", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_tasks"}}`, nil},
		{"2025-03-26", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_tasks"}}`, nil},
		{"2025-11-25", `{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"list_tasks"}}`, nil},
		{"2025-11-25", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"list_tasks"}}`, nil},
		{"2025-11-25", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"no_such_tool"}}`, nil},
		{"2025-11-25", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_tasks","_meta":{"progressToken":1}}}`, nil},
		{"2025-11-25", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_tasks","arguments":[]}}`, nil},
		{"2025-11-25", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_tasks"}}`, map[string]string{"Accept": "application/json"}},
		{"2025-11-25", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_tasks"}}`, map[string]string{"Mcp-Method": "tools/call"}},
	} {
		post(c.version, c.body, c.hdr)
	}
	require.Equal(t, before, webmcp.FastCalls(b.handler))
}
