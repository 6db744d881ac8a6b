package tenants_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/tenants"
)

// acmeUpstream registers Acme Tasks (discovered from its issuer) for tenant A.
func acmeUpstream(t *testing.T, b *regBundle, srv *tasks.Server) tenants.Upstream {
	t.Helper()
	u, err := b.svc.CreateUpstream(b.ctx, b.a.ID, tenants.UpstreamInput{
		Slug: "acme-tasks", Name: "Acme Tasks", BaseURL: srv.URL(), Issuer: srv.URL(),
		ClientID: tasks.DefaultClientID, ClientSecret: ptr(tasks.DefaultClientSecret), PKCE: true,
	})
	require.NoError(t, err)
	return u
}

func toolsByName(ts []tenants.ToolInput) map[string]tenants.ToolInput {
	m := map[string]tenants.ToolInput{}
	for _, t := range ts {
		m[t.Name] = t
	}
	return m
}

func TestImportAcmeTasks(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	srv := startTasks(t)
	up := acmeUpstream(t, b, srv)

	doc, err := b.svc.FetchOpenAPI(b.ctx, srv.URL()+"/openapi.json")
	require.NoError(t, err)
	require.JSONEq(t, string(tasks.OpenAPIDocument(srv.URL())), string(doc))

	preview, warnings, err := b.svc.ImportPreview(b.ctx, b.a.ID, up.ID, doc)
	require.NoError(t, err)
	require.Empty(t, warnings)
	require.Len(t, preview, 5)

	want := []struct {
		name, method, path, risk, scope string
		query, body                     []string
		schema                          string
	}{
		{"listTasks", "GET", "/tasks", tenants.RiskRead, tasks.ScopeRead, nil, nil,
			`{"type":"object","additionalProperties":false,"properties":{}}`},
		{"createTask", "POST", "/tasks", tenants.RiskWrite, tasks.ScopeWrite, nil, []string{"done", "title"},
			fmt.Sprintf(`{"type":"object","additionalProperties":false,"required":["title"],"properties":{
				"done":{"type":"boolean","default":false},
				"title":{"type":"string","minLength":1,"maxLength":%d}}}`, tasks.MaxTitleLength)},
		{"getTask", "GET", "/tasks/{id}", tenants.RiskRead, tasks.ScopeRead, nil, nil,
			`{"type":"object","additionalProperties":false,"required":["id"],"properties":{"id":{"type":"string","description":"Task id."}}}`},
		{"updateTask", "PATCH", "/tasks/{id}", tenants.RiskWrite, tasks.ScopeWrite, nil, []string{"done", "title"},
			fmt.Sprintf(`{"type":"object","additionalProperties":false,"required":["id"],"properties":{
				"id":{"type":"string","description":"Task id."},
				"done":{"type":"boolean"},
				"title":{"type":"string","minLength":1,"maxLength":%d}}}`, tasks.MaxTitleLength)},
		{"deleteTask", "DELETE", "/tasks/{id}", tenants.RiskDestructive, tasks.ScopeDelete, nil, nil,
			`{"type":"object","additionalProperties":false,"required":["id"],"properties":{"id":{"type":"string","description":"Task id."}}}`},
	}
	for i, w := range want {
		got := preview[i]
		require.Equal(t, w.name, got.Name)
		require.Equal(t, up.ID, got.UpstreamID)
		require.Equal(t, w.method, got.Method, w.name)
		require.Equal(t, w.path, got.PathTemplate, w.name)
		require.Equal(t, w.risk, got.Risk, w.name)
		require.Equal(t, []string{w.scope}, got.RequiredScopes, w.name)
		require.Equal(t, w.query, got.QueryParams, w.name)
		require.Equal(t, w.body, got.BodyParams, w.name)
		require.JSONEq(t, w.schema, string(got.InputSchema), w.name)
		require.NotEmpty(t, got.Description, w.name)
		require.True(t, got.Enabled)
	}
	require.Equal(t, "Delete one of your tasks", preview[4].Title)
	require.Equal(t, "List your tasks\n\nReturns the caller's tasks, oldest first.", preview[0].Description)

	created, err := b.svc.ImportTools(b.ctx, b.a.ID, up.ID, preview)
	require.NoError(t, err)
	require.Len(t, created, 5)
	list, err := b.svc.Tools(b.ctx, b.a.ID)
	require.NoError(t, err)
	require.Len(t, list, 5)
	del, err := b.svc.ToolByName(b.ctx, b.a.ID, "deleteTask")
	require.NoError(t, err)
	require.Equal(t, tenants.RiskDestructive, del.Risk)
	require.Equal(t, "acme-tasks", del.UpstreamSlug)
	require.Equal(t, []string{tasks.ScopeDelete}, del.RequiredScopes)

	// A second preview warns that the names are taken; importing again
	// fails on the first and saves nothing more.
	_, warnings, err = b.svc.ImportPreview(b.ctx, b.a.ID, up.ID, doc)
	require.NoError(t, err)
	require.Len(t, warnings, 5)
	require.Contains(t, warnings[0], "tool “listTasks”: a tool with this name already exists")
	_, err = b.svc.ImportTools(b.ctx, b.a.ID, up.ID, preview)
	requireFieldError(t, err, tenants.ErrConflict, "name", "tool “listTasks”")
	list, err = b.svc.Tools(b.ctx, b.a.ID)
	require.NoError(t, err)
	require.Len(t, list, 5)
}

// withOperation adds an operation to an OpenAPI document.
func withOperation(t *testing.T, doc []byte, path, method string, op map[string]any) []byte {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(doc, &m))
	paths := m["paths"].(map[string]any)
	item, _ := paths[path].(map[string]any)
	if item == nil {
		item = map[string]any{}
		paths[path] = item
	}
	item[method] = op
	out, err := json.Marshal(m)
	require.NoError(t, err)
	return out
}

func TestImportAllOrNothing(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	srv := startTasks(t)
	up := acmeUpstream(t, b, srv)

	// One operation needs a scope the upstream doesn't offer.
	doc := withOperation(t, tasks.OpenAPIDocument(srv.URL()), "/tasks/{id}/archive", "post", map[string]any{
		"operationId": "archiveTask",
		"security":    []any{map[string]any{"oauth2": []string{"tasks:admin"}}},
		"parameters":  []any{map[string]any{"name": "id", "in": "path", "required": true, "schema": map[string]any{"type": "string"}}},
	})
	preview, warnings, err := b.svc.ImportPreview(b.ctx, b.a.ID, up.ID, doc)
	require.NoError(t, err)
	require.Len(t, preview, 6)
	require.Len(t, warnings, 1)
	require.Contains(t, warnings[0], "tool “archiveTask”: the upstream doesn't offer the scope “tasks:admin”")

	_, err = b.svc.ImportTools(b.ctx, b.a.ID, up.ID, preview)
	requireFieldError(t, err, tenants.ErrInvalid, "required_scopes", "tool “archiveTask”: the upstream doesn't offer the scope “tasks:admin”")
	list, err := b.svc.Tools(b.ctx, b.a.ID)
	require.NoError(t, err)
	require.Empty(t, list, "a failed import saves no tool")

	// An edited preview with a bad path fails the same way.
	good := preview[:5]
	bad := append([]tenants.ToolInput(nil), good...)
	bad[3].PathTemplate = "/tasks/{id"
	_, err = b.svc.ImportTools(b.ctx, b.a.ID, up.ID, bad)
	requireFieldError(t, err, tenants.ErrInvalid, "path_template", "tool “"+bad[3].Name+"”")
	// So does a batch naming one tool twice.
	dup := append([]tenants.ToolInput(nil), good...)
	dup[4].Name = dup[0].Name
	_, err = b.svc.ImportTools(b.ctx, b.a.ID, up.ID, dup)
	requireFieldError(t, err, tenants.ErrConflict, "name", "two tools in the import")
	_, err = b.svc.ImportTools(b.ctx, b.a.ID, up.ID, nil)
	requireFieldError(t, err, tenants.ErrInvalid, "tools", "at least one")
	list, err = b.svc.Tools(b.ctx, b.a.ID)
	require.NoError(t, err)
	require.Empty(t, list)

	// Dropping the bad tool imports the rest.
	created, err := b.svc.ImportTools(b.ctx, b.a.ID, up.ID, good)
	require.NoError(t, err)
	require.Len(t, created, 5)
}

func TestImportPreviewYAML(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	in := manualUpstream("pets")
	in.BaseURL = "https://pets.example.com/v2"
	in.ScopesOffered = []string{"pets:read", "pets:write", "pets:delete"}
	up, err := b.strict.CreateUpstream(b.ctx, b.a.ID, in)
	require.NoError(t, err)
	doc, err := os.ReadFile("testdata/petstore.yaml")
	require.NoError(t, err)

	preview, warnings, err := b.strict.ImportPreview(b.ctx, b.a.ID, up.ID, doc)
	require.NoError(t, err)
	byName := toolsByName(preview)
	var names []string
	for _, p := range preview {
		names = append(names, p.Name)
	}
	require.Equal(t, []string{"list_pets", "createPet", "get_pets_petId", "replacePet", "deletePet", "listTrees"}, names)

	list := byName["list_pets"]
	require.Equal(t, []string{"pets:read"}, list.RequiredScopes, "the document's security applies")
	require.Equal(t, []string{"limit"}, list.QueryParams)
	require.JSONEq(t, `{"type":"object","additionalProperties":false,"properties":{
		"limit":{"type":"integer","minimum":1,"maximum":100,"default":20,"description":"How many pets to return."}}}`, string(list.InputSchema))

	create := byName["createPet"]
	require.Equal(t, []string{"pets:write"}, create.RequiredScopes, "the first oauth2 alternative wins")
	require.Equal(t, []string{"born", "name", "tag"}, create.BodyParams, "allOf is merged; readOnly id is left out")
	require.Equal(t, "Add a pet\n\nAdds a pet to the store.", create.Description)
	require.JSONEq(t, `{"type":"object","additionalProperties":false,"required":["name"],"properties":{
		"born":{"type":"string","format":"date"},
		"name":{"type":"string","example":{"$ref":"not a schema"}},
		"tag":{"type":"string"}}}`, string(create.InputSchema))

	get := byName["get_pets_petId"]
	require.Equal(t, "/pets/{petId}", get.PathTemplate)
	require.JSONEq(t, `{"type":"object","additionalProperties":false,"required":["petId"],"properties":{
		"petId":{"type":"integer","format":"int64","description":"The pet's id."}}}`, string(get.InputSchema))

	replace := byName["replacePet"]
	require.Equal(t, "PUT", replace.Method)
	require.Equal(t, tenants.RiskWrite, replace.Risk)
	require.Equal(t, []string{"born", "name"}, replace.BodyParams, "+json media types count as JSON")

	del := byName["deletePet"]
	require.Equal(t, tenants.RiskDestructive, del.Risk)
	require.Equal(t, []string{"pets:write", "pets:delete"}, del.RequiredScopes)

	trees := byName["listTrees"]
	require.Empty(t, trees.RequiredScopes, "security: [] means none")
	require.JSONEq(t, `{"type":"object","additionalProperties":false,"properties":{"filter":{"type":"object","properties":{
		"name":{"type":"string"},"children":{"type":"array","items":{}}}}}}`, string(trees.InputSchema), "recursion stops at {}")

	joined := strings.Join(warnings, "\n")
	for _, w := range []string{
		"GET /owners/{ownerId} (getOwner): skipped: it needs the header parameter “X-Tenant”",
		"GET /pets (list pets!): optional header parameter “X-Request-Id” is left out",
		"POST /pets (createPet): it accepts several sets of scopes",
		"POST /pets/search (searchPets): skipped: the application/json request body is not a JSON object",
		"PUT /pets/{petId} (replacePet): the operation is deprecated",
		"HEAD /pets/{petId}: skipped",
		"POST /pets/{petId}/photo (uploadPhoto): skipped: the request body is multipart/form-data, not JSON",
	} {
		require.Contains(t, joined, w)
	}
	require.NotContains(t, joined, "base URL", "the server path matches the base URL")

	_, err = b.strict.ImportTools(b.ctx, b.a.ID, up.ID, preview)
	require.NoError(t, err)
}

func TestImportPreviewRejects(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	up, err := b.strict.CreateUpstream(b.ctx, b.a.ID, manualUpstream("docs"))
	require.NoError(t, err)
	cases := []struct {
		name, doc, want string
	}{
		{"empty", "  \n", "the document is empty"},
		{"malformed JSON", "{\n  \"openapi\": \"3.0.0\",\n  \"paths\": {,}\n}", "the document is not valid JSON (line 3, column"},
		{"truncated JSON", `{"openapi": "3.0.0", "paths": {`, "the document is not valid JSON"},
		{"trailing data", `{"openapi": "3.0.0", "paths": {}} {}`, "more after the end"},
		{"JSON array", `[1, 2]`, "must be a JSON (or YAML) object"},
		{"swagger 2", `{"swagger": "2.0", "paths": {}}`, "Swagger 2.0"},
		{"no version", `{"paths": {}}`, `no "openapi": "3.x" version`},
		{"no paths", `{"openapi": "3.1.0"}`, `no "paths" object`},
		{"bad YAML", "openapi: 3.0.0\npaths: [unclosed\n", "neither JSON nor valid YAML"},
		{"YAML scalar", "just some text", "must be a JSON (or YAML) object"},
		{"too large", `{"openapi":"3.0.0","x":"` + strings.Repeat("a", tenants.MaxOpenAPIBytes) + `"}`, "larger than 4 MiB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := b.strict.ImportPreview(b.ctx, b.a.ID, up.ID, []byte(tc.doc))
			requireFieldError(t, err, tenants.ErrInvalid, "document", tc.want)
		})
	}
}

func TestImportPreviewLimits(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	up, err := b.strict.CreateUpstream(b.ctx, b.a.ID, manualUpstream("limits"))
	require.NoError(t, err)

	// Each schema refers four times to the next: inlining would make 4^14
	// copies.
	schemas := map[string]any{"S14": map[string]any{"type": "string"}}
	for i := 0; i < 14; i++ {
		next := map[string]any{"$ref": fmt.Sprintf("#/components/schemas/S%d", i+1)}
		schemas[fmt.Sprintf("S%d", i)] = map[string]any{"type": "object", "properties": map[string]any{"a": next, "b": next, "c": next, "d": next}}
	}
	doc, err := json.Marshal(map[string]any{
		"openapi": "3.0.3",
		"paths": map[string]any{
			"/bomb": map[string]any{"post": map[string]any{"operationId": "bomb", "requestBody": map[string]any{
				"content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/S0"}}}}}},
			"/fine":    map[string]any{"get": map[string]any{"operationId": "fine"}},
			"/missing": map[string]any{"get": map[string]any{"operationId": "missing", "parameters": []any{map[string]any{"$ref": "#/components/parameters/Nope"}}}},
			"/remote":  map[string]any{"get": map[string]any{"operationId": "remote", "parameters": []any{map[string]any{"$ref": "https://example.com/params.json#/Limit"}}}},
		},
		"components": map[string]any{"schemas": schemas},
	})
	require.NoError(t, err)
	preview, warnings, err := b.strict.ImportPreview(b.ctx, b.a.ID, up.ID, doc)
	require.NoError(t, err)
	require.Len(t, preview, 1)
	require.Equal(t, "fine", preview[0].Name)
	joined := strings.Join(warnings, "\n")
	require.Contains(t, joined, "POST /bomb (bomb): skipped: its schemas are too large to inline")
	require.Contains(t, joined, `GET /missing (missing): skipped: a parameter has an unresolvable $ref "#/components/parameters/Nope"`)
	require.Contains(t, joined, "GET /remote (remote): skipped: a parameter uses the $ref")
	require.Contains(t, joined, "only references inside the document")
}

func TestFetchOpenAPI(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	_, err := b.svc.FetchOpenAPI(b.ctx, srv.URL+"/openapi.json")
	requireFieldError(t, err, tenants.ErrInvalid, "url", "HTTP 404")

	for _, u := range []string{"https://10.0.0.1/openapi.json", "https://169.254.169.254/openapi.json", "https://127.0.0.1/openapi.json"} {
		_, err = b.strict.FetchOpenAPI(b.ctx, u)
		requireFieldError(t, err, tenants.ErrInvalid, "url", "not allowed")
	}
	_, err = b.strict.FetchOpenAPI(b.ctx, "openapi.json")
	requireFieldError(t, err, tenants.ErrInvalid, "url", "absolute")
}

func TestImportTwoTenantIsolation(t *testing.T) {
	t.Parallel()
	b := setupReg(t)
	inB := manualUpstream("b-docs")
	ub, err := b.strict.CreateUpstream(b.ctx, b.b.ID, inB)
	require.NoError(t, err)
	doc := tasks.OpenAPIDocument("https://api.example.com")

	_, _, err = b.strict.ImportPreview(b.ctx, b.a.ID, ub.ID, doc)
	require.ErrorIs(t, err, tenants.ErrNotFound)
	_, err = b.strict.ImportTools(b.ctx, b.a.ID, ub.ID, []tenants.ToolInput{{Name: "x", Method: "GET", PathTemplate: "/"}})
	require.ErrorIs(t, err, tenants.ErrNotFound)
	list, err := b.strict.Tools(b.ctx, b.b.ID)
	require.NoError(t, err)
	require.Empty(t, list)
}

func FuzzImportPreview(f *testing.F) {
	b := setupReg(f)
	up, err := b.strict.CreateUpstream(b.ctx, b.a.ID, manualUpstream("fuzz"))
	require.NoError(f, err)
	yamlDoc, err := os.ReadFile("testdata/petstore.yaml")
	require.NoError(f, err)
	f.Add(tasks.OpenAPIDocument("https://api.example.com"))
	f.Add(yamlDoc)
	f.Add([]byte(`{"openapi":"3.1.0","paths":{"/a/{b}":{"get":{"parameters":[{"$ref":"#/paths/~1a~1{b}/get/parameters/0"}]}}}}`))
	f.Add([]byte(`{"openapi":"3.0.0","paths":{"/x":{"post":{"requestBody":{"$ref":"#/components/requestBodies/B"}}}},"components":{"requestBodies":{"B":{"$ref":"#/components/requestBodies/B"}}}}`))
	f.Add([]byte("openapi: 3.0.0\npaths:\n  /x:\n    get: &a\n      operationId: *a\n"))
	f.Add([]byte(`{"openapi":"3.0.0","paths":{"/{":{"delete":{"operationId":"\u0000é"}}}}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		preview, _, err := b.strict.ImportPreview(b.ctx, b.a.ID, up.ID, doc)
		if err != nil {
			var fe *tenants.Error
			require.ErrorAs(t, err, &fe)
			require.Equal(t, "document", fe.Field)
			return
		}
		seen := map[string]bool{}
		for _, tool := range preview {
			require.False(t, seen[tool.Name], "duplicate name %q", tool.Name)
			seen[tool.Name] = true
			require.Regexp(t, `^[A-Za-z0-9_.-]{1,64}$`, tool.Name)
			require.True(t, json.Valid(tool.InputSchema))
			require.Contains(t, []string{"GET", "POST", "PUT", "PATCH", "DELETE"}, tool.Method)
		}
	})
}
