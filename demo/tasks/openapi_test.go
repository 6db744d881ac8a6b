package tasks_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/tasks"
)

type openAPIDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Servers    []struct{ URL string }                `json:"servers"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		SecuritySchemes map[string]struct {
			Type  string `json:"type"`
			Flows struct {
				AuthorizationCode struct {
					AuthorizationURL string            `json:"authorizationUrl"`
					TokenURL         string            `json:"tokenUrl"`
					Scopes           map[string]string `json:"scopes"`
				} `json:"authorizationCode"`
			} `json:"flows"`
		} `json:"securitySchemes"`
	} `json:"components"`
}

type openAPIOperation struct {
	OperationID string                `json:"operationId"`
	Security    []map[string][]string `json:"security"`
}

func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, body := b.do(t, http.MethodGet, "/openapi.json", "", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.JSONEq(t, string(tasks.OpenAPIDocument(b.srv.URL()+"/")), body)

	var doc openAPIDoc
	require.NoError(t, json.Unmarshal([]byte(body), &doc))
	require.Equal(t, "3.0.3", doc.OpenAPI)
	require.Equal(t, b.srv.URL(), doc.Servers[0].URL)
	scheme := doc.Components.SecuritySchemes["oauth2"]
	require.Equal(t, "oauth2", scheme.Type)
	require.Equal(t, b.srv.AuthURL(), scheme.Flows.AuthorizationCode.AuthorizationURL)
	require.Equal(t, b.srv.TokenURL(), scheme.Flows.AuthorizationCode.TokenURL)
	require.Len(t, scheme.Flows.AuthorizationCode.Scopes, 3)

	want := map[string]struct{ path, method, scope string }{
		"listTasks":  {"/tasks", "get", tasks.ScopeRead},
		"createTask": {"/tasks", "post", tasks.ScopeWrite},
		"getTask":    {"/tasks/{id}", "get", tasks.ScopeRead},
		"updateTask": {"/tasks/{id}", "patch", tasks.ScopeWrite},
		"deleteTask": {"/tasks/{id}", "delete", tasks.ScopeDelete},
	}
	for id, w := range want {
		var op openAPIOperation
		require.NoError(t, json.Unmarshal(doc.Paths[w.path][w.method], &op), id)
		require.Equal(t, id, op.OperationID)
		require.Equal(t, []map[string][]string{{"oauth2": {w.scope}}}, op.Security, id)
	}
}
