package web

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/sql/sqltest"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/seal"
)

// Tests of the registration pages: identity provider, upstreams, tools (and
// the OpenAPI import) and the MCP endpoint.

// deadURL is a loopback address where nothing listens; the test services
// allow private targets, so URLs on it pass the egress guard without DNS.
const deadURL = "https://127.0.0.1:9"

// tenantID looks a tenant's id up by slug.
func (b *consoleBundle) tenantID(t *testing.T, slug string) uuid.UUID {
	t.Helper()
	tn, err := b.svc.TenantBySlug(context.Background(), slug)
	require.NoError(t, err)
	return tn.ID
}

// addUpstream registers an upstream directly through the domain.
func (b *consoleBundle) addUpstream(t *testing.T, slug string, in tenants.UpstreamInput) tenants.Upstream {
	t.Helper()
	if in.BaseURL == "" {
		in.BaseURL = deadURL
	}
	if in.AuthMode == "" {
		in.AuthMode = tenants.AuthNone
	}
	u, err := b.svc.CreateUpstream(context.Background(), b.tenantID(t, slug), in)
	require.NoError(t, err)
	return u
}

// addTool creates a tool directly through the domain.
func (b *consoleBundle) addTool(t *testing.T, slug string, in tenants.ToolInput) tenants.Tool {
	t.Helper()
	tool, err := b.svc.CreateTool(context.Background(), b.tenantID(t, slug), in)
	require.NoError(t, err)
	return tool
}

// postMultipart posts fields and, when file is not nil, a "file" part.
func (br *browser) postMultipart(path string, fields url.Values, file []byte) response {
	br.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, vs := range fields {
		for _, v := range vs {
			require.NoError(br.t, mw.WriteField(k, v))
		}
	}
	if file != nil {
		fw, err := mw.CreateFormFile("file", "openapi.json")
		require.NoError(br.t, err)
		_, err = fw.Write(file)
		require.NoError(br.t, err)
	}
	require.NoError(br.t, mw.Close())
	return br.do(http.MethodPost, path, body.String(), map[string]string{"Content-Type": mw.FormDataContentType()})
}

// tasksDocument is a small OpenAPI document: list, create and delete tasks.
func tasksDocument(deleteScope string) []byte {
	return []byte(`{"openapi":"3.0.3","info":{"title":"T","version":"1"},
"paths":{
 "/tasks":{"get":{"operationId":"listTasks","summary":"List tasks","security":[{"oauth2":["tasks.read"]}],"responses":{"200":{"description":"ok"}}},
           "post":{"operationId":"createTask","security":[{"oauth2":["tasks.write"]}],"requestBody":{"content":{"application/json":{"schema":{"type":"object","properties":{"title":{"type":"string"}}}}}},"responses":{"201":{"description":"ok"}}}},
 "/tasks/{id}":{"delete":{"operationId":"deleteTask","security":[{"oauth2":["` + deleteScope + `"]}],"parameters":[{"name":"id","in":"path","required":true,"schema":{"type":"string"}}],"responses":{"204":{"description":"ok"}}}}},
"components":{"securitySchemes":{"oauth2":{"type":"oauth2","flows":{"authorizationCode":{"authorizationUrl":"https://a.example/authorize","tokenUrl":"https://a.example/token","scopes":{}}}}}}}`)
}

func TestRegistrationFormErrors(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	br, slug, _ := b.newOwner(t, "Acme")
	tp := "/console/t/" + slug
	up := b.addUpstream(t, slug, tenants.UpstreamInput{Slug: "tasks", Name: "Tasks", ScopesOffered: []string{"tasks.read", "tasks.write"}})
	b.addTool(t, slug, tenants.ToolInput{UpstreamID: up.ID, Name: "taken", Method: "GET", PathTemplate: "/x"})
	_, otherSlug, _ := b.newOwner(t, "Other")
	foreign := b.addUpstream(t, otherSlug, tenants.UpstreamInput{Slug: "theirs", Name: "Theirs"})

	idp := func(kv ...string) string {
		v := url.Values{"issuer": {"https://idp.invalid"}, "preset": {"generic"}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	upstream := func(kv ...string) string {
		v := url.Values{"name": {"GitHub"}, "slug": {"gh-" + uniq()}, "kind": {"rest"}, "base_url": {deadURL}, "auth_mode": {"oauth2"},
			"authorize_url": {deadURL + "/authorize"}, "token_url": {deadURL + "/token"}, "client_id": {"cid"}, "preset": {"custom"}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	tool := func(kv ...string) string {
		v := url.Values{"upstream_id": {up.ID.String()}, "name": {"t-" + uniq()}, "method": {"GET"}, "path_template": {"/tasks"}, "risk": {""}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	tests := []struct {
		name, path, body string
		wantStatus       int
		wantContains     []string
	}{
		{"idp: no issuer", tp + "/idp", idp("issuer", ""), 422, []string{`data-testid="idp-issuer-error"`, "Enter the issuer URL.", `data-testid="error-summary"`, `href="#idp-issuer"`}},
		{"idp: not a URL", tp + "/idp", idp("issuer", "ftp://idp.example"), 422, []string{`data-testid="idp-issuer-error"`, "absolute https URL"}},
		{"idp: query", tp + "/idp", idp("issuer", "https://idp.example/?a=b"), 422, []string{`data-testid="idp-issuer-error"`, "query or fragment"}},
		{"idp: unknown preset", tp + "/idp", idp("preset", "azure-ad"), 422, []string{`data-testid="idp-preset-error"`, "hoose one of generic"}},
		{"idp: claim with space", tp + "/idp", idp("claims.subject", "user id"), 422, []string{`data-testid="idp-claims-subject-error"`, "spaces"}},
		{"idp: bad scope", tp + "/idp", idp("required_scopes", `mcp "x"`), 422, []string{`data-testid="idp-required-scopes-error"`, "not a valid scope"}},
		{"idp: audience with space", tp + "/idp", idp("audience", "a b"), 422, []string{`data-testid="idp-audience-error"`}},
		{"idp: secret without client", tp + "/idp", idp("client_secret", "s3cr3t-typed"), 422, []string{`data-testid="idp-client-id-error"`, "client ID that goes with"}},
		{"idp: unknown preset to apply", tp + "/idp/preset", idp("preset", "nope"), 422, []string{`data-testid="idp-preset-error"`}},
		{"idp: delete without one", tp + "/idp/delete", "confirm=" + slug, 404, nil},

		{"upstream: no slug", tp + "/upstreams", upstream("slug", ""), 422, []string{`data-testid="upstream-slug-error"`, "2 to 40 characters", `href="#upstream-slug"`}},
		{"upstream: bad slug", tp + "/upstreams", upstream("slug", "Git Hub"), 422, []string{`data-testid="upstream-slug-error"`, "lowercase letters"}},
		{"upstream: taken slug", tp + "/upstreams", upstream("slug", "tasks"), 409, []string{`data-testid="upstream-slug-error"`, "already uses the slug"}},
		{"upstream: no name", tp + "/upstreams", upstream("name", ""), 422, []string{`data-testid="upstream-name-error"`}},
		{"upstream: bad kind", tp + "/upstreams", upstream("kind", "soap"), 422, []string{`data-testid="upstream-kind-error"`, "rest or mcp"}},
		{"upstream: no base URL", tp + "/upstreams", upstream("base_url", ""), 422, []string{`data-testid="upstream-base-url-error"`, "base URL"}},
		{"upstream: placeholder", tp + "/upstreams", upstream("base_url", "https://{site}.example"), 422, []string{`data-testid="upstream-base-url-error"`, "placeholder"}},
		{"upstream: bad auth mode", tp + "/upstreams", upstream("auth_mode", "basic"), 422, []string{`data-testid="upstream-auth-mode-error"`}},
		{"upstream: no authorization endpoint", tp + "/upstreams", upstream("authorize_url", ""), 422, []string{`data-testid="upstream-authorize-url-error"`, "authorization endpoint"}},
		{"upstream: no token endpoint", tp + "/upstreams", upstream("token_url", ""), 422, []string{`data-testid="upstream-token-url-error"`, "token endpoint"}},
		{"upstream: no client", tp + "/upstreams", upstream("client_id", ""), 422, []string{`data-testid="upstream-client-id-error"`, "/oauth/callback"}},
		{"upstream: bad scope", tp + "/upstreams", upstream("scopes_offered", `repo "x"`), 422, []string{`data-testid="upstream-scopes-error"`}},
		{"upstream: bad auth params", tp + "/upstreams", upstream("auth_params", "access_type"), 422, []string{`data-testid="upstream-auth-params-error"`, "name=value"}},
		{"upstream: reserved auth param", tp + "/upstreams", upstream("auth_params", "client_id=x"), 422, []string{`data-testid="upstream-auth-params-error"`, "set by Locksmith"}},
		{"upstream: exchange without audience", tp + "/upstreams", upstream("auth_mode", "token_exchange"), 422, []string{`data-testid="upstream-exchange-audience-error"`}},
		{"upstream: unknown preset", tp + "/upstreams", upstream("preset", "myspace"), 422, []string{"nknown preset"}},
		{"upstream: revoke after use without revocation endpoint", tp + "/upstreams", upstream("revoke_after_use", "on"), 422,
			[]string{`data-testid="upstream-revoke-after-use-error"`, "needs a revocation endpoint", `href="#upstream-revoke-after-use"`}},

		{"tool: no upstream", tp + "/tools", tool("upstream_id", ""), 422, []string{`data-testid="tool-upstream-error"`, "hoose the upstream"}},
		{"tool: garbage upstream", tp + "/tools", tool("upstream_id", "nope"), 422, []string{`data-testid="tool-upstream-error"`}},
		{"tool: another tenant's upstream", tp + "/tools", tool("upstream_id", foreign.ID.String()), 422, []string{`data-testid="tool-upstream-error"`, "doesn&#39;t exist"}},
		{"tool: bad name", tp + "/tools", tool("name", "list tasks!"), 422, []string{`data-testid="tool-name-input-error"`, "1 to 64 letters", `href="#tool-name"`}},
		{"tool: taken name", tp + "/tools", tool("name", "taken"), 409, []string{`data-testid="tool-name-input-error"`, "already exists"}},
		{"tool: bad method", tp + "/tools", tool("method", "TRACE"), 422, []string{`data-testid="tool-method-error"`}},
		{"tool: relative path", tp + "/tools", tool("path_template", "tasks"), 422, []string{`data-testid="tool-path-error"`, "must start with /"}},
		{"tool: path param not in schema", tp + "/tools", tool("path_template", "/tasks/{id}"), 422, []string{`data-testid="tool-path-error"`, "{id} is not a property"}},
		{"tool: schema not JSON", tp + "/tools", tool("input_schema", "{"), 422, []string{`data-testid="tool-input-schema-error"`, "not valid JSON"}},
		{"tool: schema not an object", tp + "/tools", tool("input_schema", `{"type":"array"}`), 422, []string{`data-testid="tool-input-schema-error"`, "&#34;type&#34;: &#34;object&#34;"}},
		{"tool: query param not in schema", tp + "/tools", tool("query_params", "limit"), 422, []string{`data-testid="tool-query-params-error"`, "not a property"}},
		{"tool: body on GET", tp + "/tools", tool("input_schema", `{"type":"object","properties":{"t":{"type":"string"}}}`, "body_params", "t"), 422, []string{`data-testid="tool-body-params-error"`, "GET request has no body"}},
		{"tool: scope not offered", tp + "/tools", tool("required_scopes", "tasks.delete"), 422, []string{`data-testid="tool-scopes-error"`, "doesn&#39;t offer the scope"}},
		{"tool: bad risk", tp + "/tools", tool("risk", "scary"), 422, []string{`data-testid="tool-risk-error"`}},

		{"import: nothing to read", tp + "/tools/import/preview", url.Values{"upstream_id": {up.ID.String()}}.Encode(), 422, []string{`data-testid="import-url-error"`, "choose a file"}},
		{"import: foreign upstream", tp + "/tools/import/preview", url.Values{"upstream_id": {foreign.ID.String()}, "url": {deadURL}}.Encode(), 422, []string{`data-testid="import-upstream-error"`}},
		{"import: unreachable URL", tp + "/tools/import/preview", url.Values{"upstream_id": {up.ID.String()}, "url": {deadURL + "/openapi.json"}}.Encode(), 422, []string{`data-testid="import-url-error"`, "Could not connect to fetch the OpenAPI document"}},
		{"import: not a document", tp + "/tools/import", url.Values{"upstream_id": {up.ID.String()}, "document": {"hello"}, "pick": {"0"}}.Encode(), 422, []string{`data-testid="import-file-error"`}},
		{"import: nothing picked", tp + "/tools/import", url.Values{"upstream_id": {up.ID.String()}, "document": {string(tasksDocument("tasks.write"))}}.Encode(), 422, []string{`data-testid="form-error"`, "hoose at least one tool"}},

		{"mcp: empty token", tp + "/mcp/test-token", "token=", 422, []string{`data-testid="token-test-token-error"`, "Paste an access token"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := br.do(http.MethodPost, tt.path, tt.body, nil)
			require.Equal(t, tt.wantStatus, r.status, r.body)
			for _, s := range tt.wantContains {
				requireBody(t, r.body, s)
			}
		})
	}

	// Nothing was half-saved: no IdP, no new upstream, no new tool.
	ctx := context.Background()
	tid := b.tenantID(t, slug)
	_, err := b.svc.IdP(ctx, tid)
	require.ErrorIs(t, err, tenants.ErrNotFound)
	ups, err := b.svc.Upstreams(ctx, tid)
	require.NoError(t, err)
	require.Len(t, ups, 1)
	tools, err := b.svc.Tools(ctx, tid)
	require.NoError(t, err)
	require.Len(t, tools, 1)

	// A secret typed into a failing form is not sent back; the page asks for it again.
	r := br.post(tp+"/upstreams", mustParse(upstream("slug", "", "client_secret", "typed-secret-9f2c")))
	require.Equal(t, 422, r.status)
	require.NotContains(t, r.body, "typed-secret-9f2c")
	requireBody(t, r.body, "Enter the secret again")
}

// requireBody is require.Contains that reports only the page's main
// content on failure.
func requireBody(t *testing.T, body, want string) {
	t.Helper()
	if strings.Contains(body, want) {
		return
	}
	main := body
	if i := strings.Index(main, `<main`); i >= 0 {
		main = main[i:]
	}
	main = regexp.MustCompile(`(?s)<svg.*?</svg>|<nav.*?</nav>`).ReplaceAllString(main, "")
	if len(main) > 4000 {
		main = main[:4000] + "…"
	}
	t.Fatalf("the page doesn't contain %q:\n%s", want, main)
}

func mustParse(q string) url.Values {
	v, err := url.ParseQuery(q)
	if err != nil {
		panic(err)
	}
	return v
}

// TestImportAllOrNothing: a failed import saves no tools, and its error
// names the tool at fault.
func TestImportAllOrNothing(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	br, slug, _ := b.newOwner(t, "Acme")
	tp := "/console/t/" + slug
	tid := b.tenantID(t, slug)
	up := b.addUpstream(t, slug, tenants.UpstreamInput{Slug: "tasks", Name: "Tasks", ScopesOffered: []string{"tasks.read", "tasks.write"}})

	// The preview (an upload) flags the operation whose scope isn't offered and leaves it unticked.
	doc := tasksDocument("tasks.delete")
	r := br.postMultipart(tp+"/tools/import/preview", url.Values{"upstream_id": {up.ID.String()}}, doc)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Equal(t, 3, strings.Count(r.body, `data-testid="import-row"`))
	requireBody(t, r.body, `data-testid="import-row-warning"`)
	requireBody(t, r.body, "doesn&#39;t offer the scope “tasks.delete”")
	require.Equal(t, 2, strings.Count(r.body, `checked data-testid="import-pick"`), "the failing operation is not picked")
	requireBody(t, r.body, `data-risk="destructive"`)

	// Importing it anyway fails as a whole, naming the tool; nothing is saved.
	form := url.Values{"upstream_id": {up.ID.String()}, "document": {string(doc)}, "pick": {"0", "1", "2"}}
	r = br.postMultipart(tp+"/tools/import", form, nil)
	require.Equal(t, http.StatusUnprocessableEntity, r.status, r.body)
	requireBody(t, r.body, "Tool “deleteTask”:")
	requireBody(t, r.body, "Nothing was imported")
	require.Contains(t, r.body, `data-testid="import-preview-card"`, "the preview is shown again")
	tools, err := b.svc.Tools(context.Background(), tid)
	require.NoError(t, err)
	require.Empty(t, tools)

	// A name that is taken meanwhile: a conflict, still nothing saved.
	b.addTool(t, slug, tenants.ToolInput{UpstreamID: up.ID, Name: "createTask", Method: "GET", PathTemplate: "/x"})
	r = br.postMultipart(tp+"/tools/import", url.Values{"upstream_id": {up.ID.String()}, "document": {string(tasksDocument("tasks.write"))}, "pick": {"0", "1", "2"}}, nil)
	require.Equal(t, http.StatusConflict, r.status, r.body)
	requireBody(t, r.body, "“createTask”")
	tools, err = b.svc.Tools(context.Background(), tid)
	require.NoError(t, err)
	require.Len(t, tools, 1)

	// Picking only what can be imported works.
	r = br.postMultipart(tp+"/tools/import", url.Values{"upstream_id": {up.ID.String()}, "document": {string(tasksDocument("tasks.write"))}, "pick": {"0", "2"}}, nil)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Equal(t, tp+"/tools?done=tools-imported", r.location)
	r = br.get(tp + "/tools")
	requireBody(t, r.body, `data-tool="deleteTask"`)
	requireBody(t, r.body, `data-tool="listTasks"`)
	require.Equal(t, 3, strings.Count(r.body, `data-testid="tool-row"`))
}

func TestRegistrationViewerCannotChange(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	owner, slug, _ := b.newOwner(t, "Acme")
	viewer, _ := b.joinAs(t, owner, slug, "viewer")
	tp := "/console/t/" + slug
	up := b.addUpstream(t, slug, tenants.UpstreamInput{Slug: "tasks", Name: "Tasks"})
	tool := b.addTool(t, slug, tenants.ToolInput{UpstreamID: up.ID, Name: "list", Method: "GET", PathTemplate: "/tasks", Enabled: true})

	for _, path := range []string{
		"/idp", "/idp/check", "/idp/preset", "/idp/delete",
		"/upstreams", "/upstreams/discover", "/upstreams/" + up.ID.String(), "/upstreams/" + up.ID.String() + "/discover",
		"/upstreams/" + up.ID.String() + "/delete",
		"/tools", "/tools/" + tool.ID.String(), "/tools/" + tool.ID.String() + "/enabled", "/tools/" + tool.ID.String() + "/delete",
		"/tools/import/preview", "/tools/import", "/mcp/test-token",
	} {
		r := viewer.post(tp+path, url.Values{"issuer": {deadURL}, "confirm": {"tasks"}, "enabled": {"false"}, "name": {"x"}, "slug": {"x"}})
		require.Equal(t, http.StatusForbidden, r.status, path)
		require.Contains(t, r.body, "view-only access", path)
	}
	// The viewer reads every page, with the forms disabled and no buttons that change anything.
	for _, path := range []string{"/idp", "/upstreams", "/upstreams/" + up.ID.String(), "/tools", "/tools/" + tool.ID.String(), "/tools/import", "/mcp"} {
		r := viewer.get(tp + path)
		require.Equal(t, http.StatusOK, r.status, path)
		require.NotContains(t, r.body, `data-testid="danger-zone"`, path)
		for _, id := range []string{"idp-save", "upstream-save", "tool-save", "tool-toggle", "import-preview", "token-test-submit"} {
			require.NotContains(t, r.body, `data-testid="`+id+`"`, path)
		}
	}
	require.Contains(t, viewer.get(tp+"/idp").body, "<fieldset class=\"plain\" disabled")
	// Nothing changed.
	got, err := b.svc.Tool(context.Background(), b.tenantID(t, slug), tool.ID)
	require.NoError(t, err)
	require.True(t, got.Enabled)
	_, err = b.svc.Upstream(context.Background(), b.tenantID(t, slug), up.ID)
	require.NoError(t, err)
}

func TestRegistrationOtherTenantIDs(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	_, slugA, _ := b.newOwner(t, "Tenant A")
	brB, slugB, _ := b.newOwner(t, "Tenant B")
	upA := b.addUpstream(t, slugA, tenants.UpstreamInput{Slug: "tasks", Name: "Tasks A"})
	toolA := b.addTool(t, slugA, tenants.ToolInput{UpstreamID: upA.ID, Name: "list", Method: "GET", PathTemplate: "/tasks", Enabled: true})
	tp := "/console/t/" + slugB

	for _, tc := range []struct{ method, path string }{
		{"GET", "/upstreams/" + upA.ID.String()},
		{"POST", "/upstreams/" + upA.ID.String()},
		{"POST", "/upstreams/" + upA.ID.String() + "/discover"},
		{"POST", "/upstreams/" + upA.ID.String() + "/delete"},
		{"GET", "/tools/" + toolA.ID.String()},
		{"POST", "/tools/" + toolA.ID.String()},
		{"POST", "/tools/" + toolA.ID.String() + "/enabled"},
		{"POST", "/tools/" + toolA.ID.String() + "/delete"},
		{"GET", "/upstreams/not-a-uuid"},
		{"GET", "/tools/not-a-uuid"},
	} {
		form := url.Values{"confirm": {"tasks"}, "enabled": {"false"}, "name": {"list"}, "slug": {"tasks"}, "base_url": {deadURL}, "auth_mode": {"none"}}
		r := brB.do(tc.method, tp+tc.path, form.Encode(), nil)
		require.Equal(t, http.StatusNotFound, r.status, "%s %s", tc.method, tc.path)
		require.NotContains(t, r.body, "Tasks A", "%s %s", tc.method, tc.path)
	}
	// Tenant A's objects are untouched.
	ctx := context.Background()
	got, err := b.svc.Tool(ctx, b.tenantID(t, slugA), toolA.ID)
	require.NoError(t, err)
	require.True(t, got.Enabled)
	u, err := b.svc.Upstream(ctx, b.tenantID(t, slugA), upA.ID)
	require.NoError(t, err)
	require.Equal(t, "Tasks A", u.Name)
	// And tenant B can't import into A's upstream.
	r := brB.post(tp+"/tools/import", url.Values{"upstream_id": {upA.ID.String()}, "document": {string(tasksDocument("tasks.write"))}, "pick": {"0"}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	tools, err := b.svc.Tools(ctx, b.tenantID(t, slugA))
	require.NoError(t, err)
	require.Len(t, tools, 1)
}

func TestRegistrationSecretsNeverSentBack(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	br, slug, _ := b.newOwner(t, "Acme")
	tp := "/console/t/" + slug
	const idpSecret, upSecret = "idp-secret-7c1e0b", "upstream-secret-51aa9d"

	r := br.post(tp+"/idp", url.Values{"issuer": {deadURL}, "preset": {"generic"}, "client_id": {"console"}, "client_secret": {idpSecret}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Equal(t, tp+"/idp?done=idp-saved", r.location)
	ghForm := func(kv ...string) url.Values {
		v := url.Values{"name": {"GitHub"}, "slug": {"github"}, "preset": {"custom"}, "client_id": {"Iv1.abc"}, "auth_mode": {"oauth2"},
			"kind": {"rest"}, "base_url": {deadURL}, "authorize_url": {deadURL + "/authorize"}, "token_url": {deadURL + "/token"}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	r = br.post(tp+"/upstreams", ghForm("client_secret", upSecret))
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	upPath := strings.SplitN(r.location, "?", 2)[0]
	require.Regexp(t, `/upstreams/[0-9a-f-]{36}$`, upPath)

	secret, err := b.svc.UpstreamClientSecret(context.Background(), b.tenantID(t, slug), uuid.MustParse(upPath[len(upPath)-36:]))
	require.NoError(t, err)
	require.Equal(t, upSecret, secret, "the secret was stored")

	pages := []string{tp, tp + "/idp", tp + "/upstreams", upPath, tp + "/tools", tp + "/tools/new", tp + "/tools/import", tp + "/mcp", tp + "/settings"}
	for _, p := range pages {
		r := br.get(p)
		require.Equal(t, http.StatusOK, r.status, p)
		require.NotContains(t, r.body, idpSecret, p)
		require.NotContains(t, r.body, upSecret, p)
	}
	require.Contains(t, br.get(tp+"/idp").body, `data-testid="idp-client-secret-state"`)
	require.Contains(t, br.get(upPath).body, `data-testid="upstream-client-secret-state"`)
	// Nor on pages that re-render the forms: a check, a preset, a failed save, a discovery.
	for _, rr := range []response{
		br.post(tp+"/idp/check", url.Values{"issuer": {deadURL}, "client_secret": {"new-" + idpSecret}}),
		br.post(tp+"/idp/preset", url.Values{"issuer": {deadURL}, "preset": {"okta"}, "client_secret": {"new-" + idpSecret}}),
		br.post(tp+"/idp", url.Values{"issuer": {""}, "client_secret": {"new-" + idpSecret}}),
		br.post(upPath, url.Values{"name": {""}, "slug": {"github"}, "client_secret": {"new-" + upSecret}}),
		br.post(upPath+"/discover", url.Values{"issuer": {deadURL}, "client_secret": {"new-" + upSecret}}),
	} {
		require.NotContains(t, rr.body, idpSecret)
		require.NotContains(t, rr.body, upSecret)
	}
	// Saving without typing a secret keeps it; the clear box removes it.
	r = br.post(upPath, ghForm())
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	secret, err = b.svc.UpstreamClientSecret(context.Background(), b.tenantID(t, slug), uuid.MustParse(upPath[len(upPath)-36:]))
	require.NoError(t, err)
	require.Equal(t, upSecret, secret)
	r = br.post(upPath, ghForm("clear_client_secret", "on"))
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.NotContains(t, br.get(upPath).body, `data-testid="upstream-client-secret-state"`)
}

func TestRegistrationNamesRenderInert(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	br, slug, _ := b.newOwner(t, "Acme")
	tp := "/console/t/" + slug
	const evil = `<script>alert(1)</script>`
	r := br.post(tp+"/upstreams", url.Values{"name": {evil + " API"}, "slug": {"evil"}, "base_url": {deadURL}, "auth_mode": {"none"}, "kind": {"rest"}, "preset": {"custom"}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	upPath := strings.SplitN(r.location, "?", 2)[0]
	upID := upPath[len(upPath)-36:]
	r = br.post(tp+"/tools", url.Values{"upstream_id": {upID}, "name": {"evil.tool"}, "title": {evil}, "description": {evil + " does things"},
		"method": {"GET"}, "path_template": {"/x"}, "enabled": {"on"}, "condition": {evil}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	// A tool name itself can't hold markup.
	r = br.post(tp+"/tools", url.Values{"upstream_id": {upID}, "name": {evil}, "method": {"GET"}, "path_template": {"/x"}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.NotContains(t, r.body, evil)

	tools, err := b.svc.Tools(context.Background(), b.tenantID(t, slug))
	require.NoError(t, err)
	require.Len(t, tools, 1)
	for _, p := range []string{tp + "/upstreams", upPath, tp + "/tools", tp + "/tools/" + tools[0].ID.String(), tp + "/tools/import", tp + "/tools/new"} {
		r := br.get(p)
		require.Equal(t, http.StatusOK, r.status, p)
		require.NotContains(t, r.body, evil, p)
		require.Contains(t, r.body, "&lt;script&gt;alert(1)&lt;/script&gt;", p)
	}
}

// strictConsole is a console whose egress guard refuses private targets,
// as in production.
func strictConsole(t *testing.T) *consoleBundle {
	t.Helper()
	hs := httptest.NewUnstartedServer(nil)
	base := "https://" + hs.Listener.Addr().String()
	u, err := url.Parse(base)
	require.NoError(t, err)
	logger := slog.New(slog.DiscardHandler)
	key, err := seal.GenerateMasterKey("test")
	require.NoError(t, err)
	mk, err := seal.ParseMasterKeys(key)
	require.NoError(t, err)
	db := sqltest.DB(t)
	sealer, err := seal.New(db, mk)
	require.NoError(t, err)
	eg, err := egress.New(egress.Options{AllowPrivate: false})
	require.NoError(t, err)
	svc, err := tenants.New(tenants.Config{DB: db, Sealer: sealer, Egress: eg, Logger: logger, BaseURL: base})
	require.NoError(t, err)
	s, err := New(Config{Logger: logger, BaseURL: u, Ready: fakeReady{}, Registry: NewRegistry(), Tenants: svc})
	require.NoError(t, err)
	hs.Config.Handler = s
	hs.StartTLS()
	t.Cleanup(hs.Close)
	return &consoleBundle{srv: s, http: hs, svc: svc, base: base, logs: &strings.Builder{}}
}

func TestPrivateTargetsRefused(t *testing.T) {
	t.Parallel()
	b := strictConsole(t)
	br, slug, _ := b.newOwner(t, "Acme")
	tp := "/console/t/" + slug
	for _, tc := range []struct{ issuer, want string }{
		{"https://127.0.0.1", "loopback and not allowed"},
		{"https://10.1.2.3/realms/x", "private and not allowed"},
		{"https://169.254.169.254", "the cloud metadata address and not allowed"},
		{"https://[::1]:8443", "loopback and not allowed"},
		{"https://0x7f.1", "loopback and not allowed"},
		{"http://idp.example", "must use https"},
	} {
		r := br.post(tp+"/idp", url.Values{"issuer": {tc.issuer}, "preset": {"generic"}})
		require.Equal(t, http.StatusUnprocessableEntity, r.status, tc.issuer)
		require.Regexp(t, `data-testid="idp-issuer-error">[^<]*`+regexp.QuoteMeta(tc.want), r.body, tc.issuer)

		r = br.post(tp+"/idp/check", url.Values{"issuer": {tc.issuer}, "preset": {"generic"}})
		require.Equal(t, http.StatusOK, r.status, tc.issuer)
		require.Contains(t, r.body, `data-testid="idp-check-problem"`, tc.issuer)
		require.Contains(t, r.body, tc.want, tc.issuer)
		require.Contains(t, r.body, `data-testid="idp-issuer-error"`, tc.issuer)
		require.Contains(t, r.body, "How to fix:", tc.issuer)
	}
	_, err := b.svc.IdP(context.Background(), b.tenantID(t, slug))
	require.ErrorIs(t, err, tenants.ErrNotFound, "nothing was saved")

	r := br.post(tp+"/upstreams", url.Values{"name": {"Internal"}, "slug": {"internal"}, "base_url": {"https://192.168.1.10/api"}, "auth_mode": {"none"}, "preset": {"custom"}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	requireBody(t, r.body, `data-testid="upstream-base-url-error"`)
	requireBody(t, r.body, "private and not allowed")
	r = br.post(tp+"/upstreams/discover", url.Values{"issuer": {"https://127.0.0.1:8443"}})
	require.Equal(t, http.StatusOK, r.status)
	requireBody(t, r.body, `data-testid="upstream-discover-problem"`)
	requireBody(t, r.body, "loopback and not allowed")
}

// TestRegistrationLiveChecks registers the demo IdP and Acme Tasks through
// the console: live check, discovery, import from the document's URL, and
// testing tokens.
func TestRegistrationLiveChecks(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	br, slug, _ := b.newOwner(t, "Acme")
	tp := "/console/t/" + slug
	demo := idp.NewTestServer(t)
	acme, err := tasks.New(tasks.Config{})
	require.NoError(t, err)
	require.NoError(t, acme.Start("127.0.0.1:0"))
	t.Cleanup(func() { _ = acme.Close(context.Background()) })

	// Identity provider: empty, checked live, saved, checked from storage.
	r := br.get(tp + "/idp")
	requireBody(t, r.body, `data-testid="idp-empty"`)
	require.Contains(t, r.body, b.base+"/t/"+slug+"/mcp", "the default audience is shown")
	r = br.post(tp+"/idp/check", url.Values{"issuer": {demo.URL()}, "preset": {"generic"}})
	require.Equal(t, http.StatusOK, r.status)
	requireBody(t, r.body, `data-testid="idp-check-ok"`)
	requireBody(t, r.body, demo.JWKSURL())
	requireBody(t, r.body, `aria-live="polite" id="idp-check-region"`)
	require.Contains(t, r.body, `value="`+demo.URL()+`"`, "the typed issuer is kept")
	r = br.post(tp+"/idp/check", url.Values{"issuer": {demo.URL() + "/"}, "preset": {"generic"}})
	requireBody(t, r.body, `data-testid="idp-check-problem"`)
	requireBody(t, r.body, "doesn&#39;t match")
	requireBody(t, r.body, "including any trailing slash")
	r = br.post(tp+"/idp", url.Values{"issuer": {demo.URL()}, "preset": {"generic"}, "claims.subject": {"sub"}, "claims.email": {"email"},
		"claims.groups": {"groups"}, "claims.scopes": {"scope"}, "claims.agent": {"client_id"}, "require_at_jwt": {"on"}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	r = br.get(tp + "/idp?done=idp-saved")
	requireBody(t, r.body, `data-testid="idp-check-ok"`)
	requireBody(t, r.body, `data-testid="notice"`)
	require.NotContains(t, r.body, `data-testid="idp-empty"`)
	requireBody(t, r.body, `data-testid="idp-delete"`)
	// A preset fills the claim names.
	r = br.post(tp+"/idp/preset", url.Values{"issuer": {demo.URL()}, "preset": {"okta"}})
	require.Equal(t, http.StatusOK, r.status)
	requireBody(t, r.body, `value="uid"`)
	requireBody(t, r.body, `value="cid"`)

	// Test a token: verified, with the principal; refused, with the reason. Never echoed.
	mcpURL := b.base + "/t/" + slug + "/mcp"
	good, err := demo.MintAccessToken(idp.MintRequest{User: idp.UsernameEngineer, Audience: []string{mcpURL}, Scopes: []string{"tasks.read"}})
	require.NoError(t, err)
	r = br.post(tp+"/mcp/test-token", url.Values{"token": {"Bearer " + good}})
	require.Equal(t, http.StatusOK, r.status)
	requireBody(t, r.body, `data-testid="token-test-ok"`)
	requireBody(t, r.body, "engineer@acme.example")
	requireBody(t, r.body, "engineering")
	requireBody(t, r.body, "tasks.read")
	require.NotContains(t, r.body, good)
	require.NotContains(t, r.body, strings.Split(good, ".")[1], "not even the payload")
	wrong, err := demo.MintAccessToken(idp.MintRequest{User: idp.UsernameEngineer, Audience: []string{"https://elsewhere.example"}})
	require.NoError(t, err)
	r = br.post(tp+"/mcp/test-token", url.Values{"token": {wrong}})
	requireBody(t, r.body, `data-testid="token-test-problem"`)
	requireBody(t, r.body, "wrong_audience")
	requireBody(t, r.body, mcpURL)
	require.NotContains(t, r.body, wrong)
	r = br.post(tp+"/mcp/test-token", url.Values{"token": {"not.a.jwt"}})
	requireBody(t, r.body, `data-testid="token-test-problem"`)
	requireBody(t, r.body, "malformed")

	// Upstream: the preset picker, discovery, create.
	r = br.get(tp + "/upstreams")
	requireBody(t, r.body, `data-testid="upstreams-empty"`)
	requireBody(t, r.body, tp+"/upstreams/new")
	r = br.get(tp + "/upstreams/new?preset=github")
	requireBody(t, r.body, `value="https://github.com/login/oauth/authorize"`)
	requireBody(t, r.body, `data-testid="upstream-preset-notes"`)
	requireBody(t, r.body, `value="`+b.base+`/oauth/callback"`)
	requireBody(t, r.body, `data-testid="upstream-redirect-uri-copy"`)
	for _, p := range []string{"github", "google", "slack", "atlassian", "microsoft-graph", "salesforce", "hubspot", "linear", "notion", "custom"} {
		requireBody(t, r.body, `data-testid="preset-`+p+`"`)
	}
	form := url.Values{"name": {"Acme Tasks"}, "slug": {"acme-tasks"}, "kind": {"rest"}, "base_url": {acme.URL()}, "auth_mode": {"oauth2"},
		"issuer": {acme.URL()}, "client_id": {tasks.DefaultClientID}, "client_secret": {tasks.DefaultClientSecret}, "preset": {"custom"}, "pkce": {"on"}}
	r = br.post(tp+"/upstreams/discover", form)
	require.Equal(t, http.StatusOK, r.status)
	requireBody(t, r.body, `data-testid="upstream-discover-ok"`)
	requireBody(t, r.body, `value="`+acme.URL()+`/token"`)
	requireBody(t, r.body, `value="tasks:read tasks:write tasks:delete"`)
	require.NotContains(t, r.body, tasks.DefaultClientSecret)
	r = br.post(tp+"/upstreams", form)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	up, err := b.svc.UpstreamBySlug(context.Background(), b.tenantID(t, slug), "acme-tasks")
	require.NoError(t, err)
	require.Equal(t, acme.URL()+"/token", up.TokenURL)
	require.True(t, up.PKCE)

	// Tools: import from the document's URL, preview, import selected.
	r = br.get(tp + "/tools")
	requireBody(t, r.body, `data-testid="tools-empty"`)
	requireBody(t, r.body, `data-testid="tools-import"`)
	r = br.postMultipart(tp+"/tools/import/preview", url.Values{"upstream_id": {up.ID.String()}, "url": {acme.URL() + "/openapi.json"}}, nil)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Equal(t, 5, strings.Count(r.body, `data-testid="import-row"`))
	require.Equal(t, 5, strings.Count(r.body, `checked data-testid="import-pick"`))
	doc := regexp.MustCompile(`name="document" value="([^"]*)"`).FindStringSubmatch(r.body)
	require.NotNil(t, doc)
	r = br.postMultipart(tp+"/tools/import", url.Values{"upstream_id": {up.ID.String()}, "document": {htmlUnescape(doc[1])}, "pick": {"0", "1", "2", "3", "4"}}, nil)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	r = br.get(tp + "/tools")
	require.Equal(t, 5, strings.Count(r.body, `data-testid="tool-row"`))
	requireBody(t, r.body, `data-risk="destructive"`)
	require.Regexp(t, `data-tool="deleteTask"(?s:.*?)data-risk="destructive"`, r.body)

	// Filter, toggle.
	r = br.get(tp + "/tools?risk=read")
	require.Equal(t, 2, strings.Count(r.body, `data-testid="tool-row"`))
	requireBody(t, r.body, "2 of 5 tools match")
	r = br.get(tp + "/tools?q=delete")
	require.Equal(t, 1, strings.Count(r.body, `data-testid="tool-row"`))
	r = br.get(tp + "/tools?q=nothing-like-this")
	requireBody(t, r.body, `data-testid="tools-no-match"`)
	del, err := b.svc.ToolByName(context.Background(), b.tenantID(t, slug), "deleteTask")
	require.NoError(t, err)
	r = br.post(tp+"/tools/"+del.ID.String()+"/enabled", url.Values{"enabled": {"false"}, "risk": {"destructive"}})
	require.Equal(t, http.StatusSeeOther, r.status)
	require.Equal(t, tp+"/tools?done=tool-disabled&risk=destructive", r.location)
	del, err = b.svc.Tool(context.Background(), b.tenantID(t, slug), del.ID)
	require.NoError(t, err)
	require.False(t, del.Enabled)

	// Edit keeps what the form doesn't show; delete needs the typed name.
	r = br.get(tp + "/tools/" + del.ID.String())
	requireBody(t, r.body, `data-testid="danger-zone"`)
	r = br.post(tp+"/tools/"+del.ID.String()+"/delete", url.Values{"confirm": {"delete"}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	requireBody(t, r.body, `data-testid="tool-delete-confirm-error"`)
	r = br.post(tp+"/tools/"+del.ID.String()+"/delete", url.Values{"confirm": {"deleteTask"}})
	require.Equal(t, http.StatusSeeOther, r.status)

	// The overview's checklist has the first three steps done.
	r = br.get(tp)
	requireBody(t, r.body, "3 of 5 steps done")

	// MCP page: URLs and client configurations with copy buttons.
	r = br.get(tp + "/mcp")
	require.NotContains(t, r.body, `data-testid="mcp-needs-idp"`)
	requireBody(t, r.body, `value="`+b.base+`/.well-known/oauth-protected-resource/t/`+slug+`/mcp"`)
	for _, id := range []string{"mcp-url-copy", "mcp-metadata-url-copy", "snippet-claude-code-copy", "snippet-claude-desktop-copy", "snippet-cursor-copy", "snippet-vscode-copy"} {
		requireBody(t, r.body, `data-testid="`+id+`"`)
	}
	requireBody(t, r.body, "claude mcp add --transport http locksmith-"+slug+" "+mcpURL)
	requireBody(t, r.body, "mcp-remote")
	requireBody(t, r.body, "&#34;type&#34;: &#34;http&#34;")

	// Delete the upstream (typed slug): its tools go with it.
	r = br.post(tp+"/upstreams/"+up.ID.String()+"/delete", url.Values{"confirm": {"tasks"}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	requireBody(t, r.body, `data-testid="upstream-delete-confirm-error"`)
	r = br.post(tp+"/upstreams/"+up.ID.String()+"/delete", url.Values{"confirm": {"acme-tasks"}})
	require.Equal(t, http.StatusSeeOther, r.status)
	tools, err := b.svc.Tools(context.Background(), b.tenantID(t, slug))
	require.NoError(t, err)
	require.Empty(t, tools)
}

// htmlUnescape undoes templ's attribute escaping for a test that reads a
// value back out of a page.
func htmlUnescape(s string) string {
	return strings.NewReplacer("&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
}

func TestToolsPagination(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	br, slug, _ := b.newOwner(t, "Acme")
	up := b.addUpstream(t, slug, tenants.UpstreamInput{Slug: "tasks", Name: "Tasks"})
	for i := range toolsPageSize + 3 {
		b.addTool(t, slug, tenants.ToolInput{UpstreamID: up.ID, Name: fmt.Sprintf("tool-%03d", i), Method: "GET", PathTemplate: "/x"})
	}
	tp := "/console/t/" + slug
	r := br.get(tp + "/tools")
	require.Equal(t, toolsPageSize, strings.Count(r.body, `data-testid="tool-row"`))
	m := regexp.MustCompile(`href="([^"]*)" data-testid="tools-next"`).FindStringSubmatch(r.body)
	require.NotNil(t, m)
	r = br.get(htmlUnescape(m[1]))
	require.Equal(t, 3, strings.Count(r.body, `data-testid="tool-row"`))
	requireBody(t, r.body, `data-tool="tool-050"`)
	require.NotContains(t, r.body, `data-testid="tools-next"`)
	requireBody(t, r.body, `data-testid="tools-first"`)
}

// TestImportBodyLimit: the import posts accept a document up to
// tenants.MaxOpenAPIBytes; every other route keeps the default limit.
func TestImportBodyLimit(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	br, slug, _ := b.newOwner(t, "Acme")
	tp := "/console/t/" + slug
	up := b.addUpstream(t, slug, tenants.UpstreamInput{Slug: "tasks", Name: "Tasks", ScopesOffered: []string{"tasks.read", "tasks.write"}})

	doc := tasksDocument("tasks.write")
	big := append([]byte(`{"x-padding":"`+strings.Repeat("a", 3<<20)+`",`), doc[1:]...)
	r := br.postMultipart(tp+"/tools/import/preview", url.Values{"upstream_id": {up.ID.String()}}, big)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, 3, strings.Count(r.body, `data-testid="import-row"`))

	tooBig := append([]byte(`{"x-padding":"`+strings.Repeat("a", 5<<20)+`",`), doc[1:]...)
	r = br.postMultipart(tp+"/tools/import/preview", url.Values{"upstream_id": {up.ID.String()}}, tooBig)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.status)

	r = br.post(tp+"/tools", url.Values{"description": {strings.Repeat("a", 2<<20)}})
	require.Equal(t, http.StatusRequestEntityTooLarge, r.status)
}
