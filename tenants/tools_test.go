package tenants_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/tenants"
)

const taskSchema = `{"type":"object","properties":{"id":{"type":"string"},"title":{"type":"string"},"done":{"type":"boolean"},"limit":{"type":"integer"}},"required":["id"]}`

// toolBundle adds an upstream in each tenant to regBundle.
type toolBundle struct {
	*regBundle
	upA, upB tenants.Upstream
}

func setupTools(t *testing.T) *toolBundle {
	t.Helper()
	b := &toolBundle{regBundle: setupReg(t)}
	var err error
	b.upA, err = b.strict.CreateUpstream(b.ctx, b.a.ID, manualUpstream("api-a"))
	require.NoError(t, err)
	b.upB, err = b.strict.CreateUpstream(b.ctx, b.b.ID, manualUpstream("api-b"))
	require.NoError(t, err)
	return b
}

func validTool(upstream uuid.UUID, name string) tenants.ToolInput {
	return tenants.ToolInput{
		UpstreamID: upstream, Name: name, Title: "Update a task", Description: "Changes a task's title or done flag.",
		Method: "patch", PathTemplate: "/tasks/{id}", QueryParams: []string{"limit"}, BodyParams: []string{"title", "done"},
		InputSchema: json.RawMessage(taskSchema), RequiredScopes: []string{"write"}, Enabled: true,
	}
}

func TestToolCRUD(t *testing.T) {
	t.Parallel()
	b := setupTools(t)

	tool, err := b.strict.CreateTool(b.ctx, b.a.ID, validTool(b.upA.ID, "update_task"))
	require.NoError(t, err)
	require.Equal(t, "PATCH", tool.Method)
	require.Equal(t, tenants.RiskWrite, tool.Risk, "an empty risk follows the method")
	require.Equal(t, "api-a", tool.UpstreamSlug)
	require.Equal(t, "Example API", tool.UpstreamName)
	require.JSONEq(t, taskSchema, string(tool.InputSchema))
	require.True(t, tool.Enabled)
	require.Nil(t, tool.ApprovalsRequired)

	got, err := b.strict.Tool(b.ctx, b.a.ID, tool.ID)
	require.NoError(t, err)
	require.Equal(t, tool, got)
	got, err = b.strict.ToolByName(b.ctx, b.a.ID, "update_task")
	require.NoError(t, err)
	require.Equal(t, tool, got)
	list, err := b.strict.Tools(b.ctx, b.a.ID)
	require.NoError(t, err)
	require.Equal(t, []tenants.Tool{tool}, list)

	in := validTool(b.upA.ID, "delete_task")
	in.Method, in.BodyParams, in.Risk, in.ApprovalsRequired, in.Condition = "DELETE", nil, tenants.RiskDestructive, ptr(3), `principal.email.endsWith("@acme.example")`
	updated, err := b.strict.UpdateTool(b.ctx, b.a.ID, tool.ID, in)
	require.NoError(t, err)
	require.Equal(t, tool.ID, updated.ID)
	require.Equal(t, "delete_task", updated.Name)
	require.Equal(t, tenants.RiskDestructive, updated.Risk)
	require.Equal(t, 3, *updated.ApprovalsRequired)
	require.Equal(t, in.Condition, updated.Condition)
	require.Empty(t, updated.BodyParams)

	require.NoError(t, b.strict.SetToolEnabled(b.ctx, b.a.ID, tool.ID, false))
	got, err = b.strict.Tool(b.ctx, b.a.ID, tool.ID)
	require.NoError(t, err)
	require.False(t, got.Enabled)

	require.NoError(t, b.strict.DeleteTool(b.ctx, b.a.ID, tool.ID))
	_, err = b.strict.Tool(b.ctx, b.a.ID, tool.ID)
	require.ErrorIs(t, err, tenants.ErrNotFound)
	require.ErrorIs(t, b.strict.DeleteTool(b.ctx, b.a.ID, tool.ID), tenants.ErrNotFound)
	_, err = b.strict.ToolByName(b.ctx, b.a.ID, "not a valid name")
	require.ErrorIs(t, err, tenants.ErrNotFound)

	// Deleting the upstream deletes its tools.
	tool, err = b.strict.CreateTool(b.ctx, b.a.ID, validTool(b.upA.ID, "again"))
	require.NoError(t, err)
	require.NoError(t, b.strict.DeleteUpstream(b.ctx, b.a.ID, b.upA.ID))
	_, err = b.strict.Tool(b.ctx, b.a.ID, tool.ID)
	require.ErrorIs(t, err, tenants.ErrNotFound)
}

func TestToolValidation(t *testing.T) {
	t.Parallel()
	b := setupTools(t)
	cases := []struct {
		name   string
		mutate func(*tenants.ToolInput)
		field  string
		want   string
	}{
		{"no upstream", func(in *tenants.ToolInput) { in.UpstreamID = uuid.Nil }, "upstream_id", "choose the upstream"},
		{"empty name", func(in *tenants.ToolInput) { in.Name = "" }, "name", "1 to 64"},
		{"name with space", func(in *tenants.ToolInput) { in.Name = "update task" }, "name", "1 to 64"},
		{"name too long", func(in *tenants.ToolInput) { in.Name = strings.Repeat("a", 65) }, "name", "1 to 64"},
		{"title too long", func(in *tenants.ToolInput) { in.Title = strings.Repeat("t", 201) }, "title", "200"},
		{"description too long", func(in *tenants.ToolInput) { in.Description = strings.Repeat("d", 9000) }, "description", "too long"},
		{"bad method", func(in *tenants.ToolInput) { in.Method = "HEAD" }, "method", "GET, POST, PUT, PATCH or DELETE"},
		{"empty path", func(in *tenants.ToolInput) { in.PathTemplate = "" }, "path_template", "enter the path"},
		{"relative path", func(in *tenants.ToolInput) { in.PathTemplate = "tasks/{id}" }, "path_template", "start with /"},
		{"unclosed brace", func(in *tenants.ToolInput) { in.PathTemplate = "/tasks/{id" }, "path_template", "{ without a matching }"},
		{"stray closing brace", func(in *tenants.ToolInput) { in.PathTemplate = "/tasks/id}" }, "path_template", "} without a matching {"},
		{"nested braces", func(in *tenants.ToolInput) { in.PathTemplate = "/tasks/{{id}}" }, "path_template", "{ without a matching }"},
		{"empty param", func(in *tenants.ToolInput) { in.PathTemplate = "/tasks/{}" }, "path_template", "not a valid parameter name"},
		{"bad param name", func(in *tenants.ToolInput) { in.PathTemplate = "/tasks/{task id}" }, "path_template", "spaces"},
		{"param twice", func(in *tenants.ToolInput) { in.PathTemplate = "/tasks/{id}/{id}" }, "path_template", "twice"},
		{"param not in schema", func(in *tenants.ToolInput) { in.PathTemplate = "/lists/{list}/tasks/{id}" }, "path_template", "{list} is not a property"},
		{"query in path", func(in *tenants.ToolInput) { in.PathTemplate = "/tasks?id={id}" }, "path_template", "query parameters"},
		{"dot-dot segment", func(in *tenants.ToolInput) { in.PathTemplate = "/tasks/../admin/{id}" }, "path_template", ".."},
		{"query param not in schema", func(in *tenants.ToolInput) { in.QueryParams = []string{"page"} }, "query_params", "“page” is not a property"},
		{"body param not in schema", func(in *tenants.ToolInput) { in.BodyParams = []string{"owner"} }, "body_params", "“owner” is not a property"},
		{"path param also in body", func(in *tenants.ToolInput) { in.BodyParams = []string{"id"} }, "body_params", "already sent in the path"},
		{"query param also in body", func(in *tenants.ToolInput) { in.BodyParams = []string{"limit"} }, "body_params", "already sent in the query"},
		{"GET with body", func(in *tenants.ToolInput) { in.Method = "GET" }, "body_params", "GET request has no body"},
		{"schema not JSON", func(in *tenants.ToolInput) { in.InputSchema = json.RawMessage(`{"type":`) }, "input_schema", "not valid JSON"},
		{"schema not an object", func(in *tenants.ToolInput) { in.InputSchema = json.RawMessage(`[1]`) }, "input_schema", "JSON object"},
		{"schema not type object", func(in *tenants.ToolInput) { in.InputSchema = json.RawMessage(`{"type":"array"}`) }, "input_schema", `"type": "object"`},
		{"schema properties not an object", func(in *tenants.ToolInput) { in.InputSchema = json.RawMessage(`{"type":"object","properties":[]}`) }, "input_schema", `"properties" must be an object`},
		{"schema property not a schema", func(in *tenants.ToolInput) {
			in.InputSchema = json.RawMessage(`{"type":"object","properties":{"id":"string"}}`)
		}, "input_schema", "property “id” must be an object"},
		{"required not a property", func(in *tenants.ToolInput) {
			in.InputSchema = json.RawMessage(`{"type":"object","properties":{"id":{}},"required":["owner"]}`)
		}, "input_schema", "“owner” is required but not a property"},
		{"schema too large", func(in *tenants.ToolInput) {
			in.InputSchema = json.RawMessage(`{"type":"object","description":"` + strings.Repeat("x", 70<<10) + `"}`)
		}, "input_schema", "too large"},
		{"schema with NUL", func(in *tenants.ToolInput) {
			in.InputSchema = json.RawMessage(`{"type":"object","description":"a\u0000b","properties":{"id":{},"title":{},"done":{},"limit":{}}}`)
		}, "input_schema", `\u0000`},
		{"scope not offered", func(in *tenants.ToolInput) { in.RequiredScopes = []string{"admin"} }, "required_scopes", "doesn't offer the scope “admin” (it offers read, write, delete)"},
		{"bad scope", func(in *tenants.ToolInput) { in.RequiredScopes = []string{`wr"ite`} }, "required_scopes", "not a valid scope"},
		{"bad risk", func(in *tenants.ToolInput) { in.Risk = "dangerous" }, "risk", "read, write or destructive"},
		{"zero approvals", func(in *tenants.ToolInput) { in.ApprovalsRequired = ptr(0) }, "approvals_required", "between 1 and 10"},
		{"eleven approvals", func(in *tenants.ToolInput) { in.ApprovalsRequired = ptr(11) }, "approvals_required", "between 1 and 10"},
		{"condition too long", func(in *tenants.ToolInput) { in.Condition = strings.Repeat("x", 4097) }, "condition", "too long"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := validTool(b.upA.ID, "tool_"+strings.ReplaceAll(uuid.NewString(), "-", "")[:8])
			tc.mutate(&in)
			_, err := b.strict.CreateTool(b.ctx, b.a.ID, in)
			requireFieldError(t, err, tenants.ErrInvalid, tc.field, tc.want)
		})
	}

	// Another tenant's upstream is not found.
	_, err := b.strict.CreateTool(b.ctx, b.a.ID, validTool(b.upB.ID, "cross_tenant"))
	requireFieldError(t, err, tenants.ErrNotFound, "upstream_id", "doesn't exist")
	_, err = b.strict.CreateTool(b.ctx, b.a.ID, validTool(uuid.New(), "unknown_upstream"))
	requireFieldError(t, err, tenants.ErrNotFound, "upstream_id", "doesn't exist")

	list, err := b.strict.Tools(b.ctx, b.a.ID)
	require.NoError(t, err)
	require.Empty(t, list, "refused tools are not stored")

	// A duplicate name is a conflict on "name", on create and on rename.
	_, err = b.strict.CreateTool(b.ctx, b.a.ID, validTool(b.upA.ID, "dup"))
	require.NoError(t, err)
	_, err = b.strict.CreateTool(b.ctx, b.a.ID, validTool(b.upA.ID, "dup"))
	requireFieldError(t, err, tenants.ErrConflict, "name", "a tool named “dup” already exists")
	other, err := b.strict.CreateTool(b.ctx, b.a.ID, validTool(b.upA.ID, "other"))
	require.NoError(t, err)
	_, err = b.strict.UpdateTool(b.ctx, b.a.ID, other.ID, validTool(b.upA.ID, "dup"))
	requireFieldError(t, err, tenants.ErrConflict, "name", "already exists")
	// The same name in another tenant is fine.
	_, err = b.strict.CreateTool(b.ctx, b.b.ID, validTool(b.upB.ID, "dup"))
	require.NoError(t, err)

	// An upstream that lists no scopes accepts any valid scope; an empty
	// schema means an object without properties.
	in := manualUpstream("open-scopes")
	in.ScopesOffered = nil
	open, err := b.strict.CreateUpstream(b.ctx, b.a.ID, in)
	require.NoError(t, err)
	tool, err := b.strict.CreateTool(b.ctx, b.a.ID, tenants.ToolInput{UpstreamID: open.ID, Name: "ping", Method: "GET", PathTemplate: "/ping", RequiredScopes: []string{"anything"}})
	require.NoError(t, err)
	require.JSONEq(t, `{"type":"object"}`, string(tool.InputSchema))
	require.Equal(t, tenants.RiskRead, tool.Risk)
}

func TestValidateToolRisks(t *testing.T) {
	t.Parallel()
	up := uuid.New()
	for method, risk := range map[string]string{"GET": tenants.RiskRead, "POST": tenants.RiskWrite, "PUT": tenants.RiskWrite, "PATCH": tenants.RiskWrite, "DELETE": tenants.RiskDestructive} {
		v, err := tenants.ValidateTool(tenants.ToolInput{UpstreamID: up, Name: "t", Method: method, PathTemplate: "/"}, nil)
		require.NoError(t, err)
		require.Equal(t, risk, v.Risk, method)
	}
}

func TestToolTwoTenantIsolation(t *testing.T) {
	t.Parallel()
	b := setupTools(t)
	tb, err := b.strict.CreateTool(b.ctx, b.b.ID, validTool(b.upB.ID, "b_tool"))
	require.NoError(t, err)

	_, err = b.strict.Tool(b.ctx, b.a.ID, tb.ID)
	require.ErrorIs(t, err, tenants.ErrNotFound)
	_, err = b.strict.ToolByName(b.ctx, b.a.ID, "b_tool")
	require.ErrorIs(t, err, tenants.ErrNotFound)
	_, err = b.strict.UpdateTool(b.ctx, b.a.ID, tb.ID, validTool(b.upA.ID, "hijacked"))
	require.ErrorIs(t, err, tenants.ErrNotFound)
	require.ErrorIs(t, b.strict.SetToolEnabled(b.ctx, b.a.ID, tb.ID, false), tenants.ErrNotFound)
	require.ErrorIs(t, b.strict.DeleteTool(b.ctx, b.a.ID, tb.ID), tenants.ErrNotFound)
	list, err := b.strict.Tools(b.ctx, b.a.ID)
	require.NoError(t, err)
	require.Empty(t, list)

	// B's own tool can't be moved onto A's upstream either.
	_, err = b.strict.UpdateTool(b.ctx, b.b.ID, tb.ID, validTool(b.upA.ID, "b_tool"))
	requireFieldError(t, err, tenants.ErrNotFound, "upstream_id", "doesn't exist")

	after, err := b.strict.Tool(b.ctx, b.b.ID, tb.ID)
	require.NoError(t, err)
	require.Equal(t, tb, after)
	require.True(t, after.Enabled)
}
