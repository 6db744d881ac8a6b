package mcp_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRequestLimitsAndMalformedJSONRPC(t *testing.T) {
	t.Parallel()
	b := setup(t)
	auth := "Bearer " + b.tokenA(t)
	big := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"pad":"` + strings.Repeat("x", 1<<20) + `"}}`
	tests := []struct {
		name   string
		method string
		body   string
		hdr    map[string]string
		status int
		code   float64 // JSON-RPC error code, 0 for none checked
		batch  int     // expected number of errors in a batch answer
		want   string
	}{
		{name: "body over 1 MiB", body: big, status: 413, code: -32600, want: "larger than the limit"},
		{name: "not JSON", body: `{"jsonrpc":`, status: 400, code: -32700},
		{name: "empty body", body: ``, status: 400, code: -32600},
		{name: "JSON but not an object", body: `42`, status: 400, code: -32600},
		{name: "wrong jsonrpc version", body: `{"jsonrpc":"1.0","id":1,"method":"tools/list"}`, status: 400, code: -32600},
		{name: "no method", body: `{"jsonrpc":"2.0","id":1}`, status: 400, code: -32600},
		{name: "object id", body: `{"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"}`, status: 400, code: -32600},
		{name: "empty batch", body: `[]`, status: 400, code: -32600},
		{name: "batch of invalid requests", body: `[1, "x", {"jsonrpc":"2.0"}, {"id":4,"method":"ping"}]`, status: 400, batch: 4},
		{name: "valid batch under 2025-06-18", body: `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/list"}]`,
			hdr: map[string]string{"Mcp-Protocol-Version": "2025-06-18"}, status: 400, want: "batching is not supported"},
		{name: "unsupported protocol version", body: listBody, hdr: map[string]string{"Mcp-Protocol-Version": "1999-01-01"}, status: 400, code: -32022},
		{name: "unsupported future protocol version", body: listBody, hdr: map[string]string{"Mcp-Protocol-Version": "2099-01-01"}, status: 400, code: -32022},
		{name: "2026-07-28 without Mcp-Method", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_tasks","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`,
			hdr: map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Name": "list_tasks"}, status: 400, code: -32020},
		{name: "2026-07-28 with mismatched Mcp-Name", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_tasks","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`,
			hdr: map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "delete_task"}, status: 400, code: -32020},
		{name: "2026-07-28 with mismatched Mcp-Method", body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`,
			hdr: map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call"}, status: 400, code: -32020},
		{name: "2026-07-28 with matching headers", body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`,
			hdr: map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"}, status: 200},
		{name: "GET is not served", method: http.MethodGet, status: 405},
		{name: "DELETE is not served", method: http.MethodDelete, status: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hdr := map[string]string{"Authorization": auth}
			for k, v := range tt.hdr {
				hdr[k] = v
			}
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			resp, body := rpc(t, method, b.resource, tt.body, hdr)
			require.Equal(t, tt.status, resp.StatusCode, body)
			if tt.want != "" {
				require.Contains(t, body, tt.want)
			}
			if tt.batch > 0 {
				var errs []map[string]any
				require.NoError(t, json.Unmarshal([]byte(body), &errs), body)
				require.Len(t, errs, tt.batch)
				for _, e := range errs {
					require.EqualValues(t, -32600, e["error"].(map[string]any)["code"])
				}
			}
			if tt.code != 0 {
				m := sseJSON(t, body)
				require.Equal(t, tt.code, m["error"].(map[string]any)["code"], body)
			}
		})
	}
	require.Empty(t, b.acme.Requests())
}
