package tasks_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/tasks"
)

func TestTasksAPI(t *testing.T) {
	t.Parallel()
	all := []string{tasks.ScopeRead, tasks.ScopeWrite, tasks.ScopeDelete}
	tests := []struct {
		name       string
		scopes     []string // token of "engineer"; nil means no token
		rawAuth    string   // overrides the Authorization header
		method     string
		path       string // "{own}" and "{other}" become task ids
		body       string
		wantStatus int
		wantHeader string // substring of WWW-Authenticate
		wantBody   string // substring of the body
	}{
		{name: "list", scopes: []string{tasks.ScopeRead}, method: "GET", path: "/tasks", wantStatus: 200, wantBody: `"title":"ship the release"`},
		{name: "list hides other users' tasks", scopes: all, method: "GET", path: "/tasks", wantStatus: 200, wantBody: `{"tasks":[{"id":`},
		{name: "list needs read", scopes: []string{tasks.ScopeWrite, tasks.ScopeDelete}, method: "GET", path: "/tasks", wantStatus: 403, wantHeader: `error="insufficient_scope", scope="tasks:read"`},
		{name: "get own", scopes: []string{tasks.ScopeRead}, method: "GET", path: "/tasks/{own}", wantStatus: 200, wantBody: `"done":false`},
		{name: "get other user's", scopes: all, method: "GET", path: "/tasks/{other}", wantStatus: 404, wantBody: `"error":"not_found"`},
		{name: "get missing", scopes: all, method: "GET", path: "/tasks/999999", wantStatus: 404},
		{name: "create", scopes: []string{tasks.ScopeWrite}, method: "POST", path: "/tasks", body: `{"title":"file expenses"}`, wantStatus: 201, wantBody: `"title":"file expenses"`},
		{name: "create needs write", scopes: []string{tasks.ScopeRead, tasks.ScopeDelete}, method: "POST", path: "/tasks", body: `{"title":"x"}`, wantStatus: 403, wantHeader: `scope="tasks:write"`},
		{name: "create empty title", scopes: all, method: "POST", path: "/tasks", body: `{"title":"  "}`, wantStatus: 400, wantBody: `"error":"invalid_request"`},
		{name: "create unknown field", scopes: all, method: "POST", path: "/tasks", body: `{"title":"x","owner":"approver"}`, wantStatus: 400},
		{name: "create malformed", scopes: all, method: "POST", path: "/tasks", body: `{"title":`, wantStatus: 400},
		{name: "create too long", scopes: all, method: "POST", path: "/tasks", body: `{"title":"` + strings.Repeat("a", tasks.MaxTitleLength+1) + `"}`, wantStatus: 400},
		{name: "update", scopes: []string{tasks.ScopeWrite}, method: "PATCH", path: "/tasks/{own}", body: `{"done":true}`, wantStatus: 200, wantBody: `"done":true`},
		{name: "update needs write", scopes: []string{tasks.ScopeRead}, method: "PATCH", path: "/tasks/{own}", body: `{"done":true}`, wantStatus: 403},
		{name: "update other user's", scopes: all, method: "PATCH", path: "/tasks/{other}", body: `{"done":true}`, wantStatus: 404},
		{name: "delete", scopes: []string{tasks.ScopeDelete}, method: "DELETE", path: "/tasks/{own}", wantStatus: 204},
		{name: "delete needs delete", scopes: []string{tasks.ScopeRead, tasks.ScopeWrite}, method: "DELETE", path: "/tasks/{own}", wantStatus: 403, wantHeader: `scope="tasks:delete"`},
		{name: "delete other user's", scopes: all, method: "DELETE", path: "/tasks/{other}", wantStatus: 404},
		{name: "no token", method: "GET", path: "/tasks", wantStatus: 401, wantHeader: `error="invalid_token"`},
		{name: "basic auth", rawAuth: "Basic ZW5naW5lZXI6eA==", method: "GET", path: "/tasks", wantStatus: 401, wantHeader: `error="invalid_token"`},
		{name: "unknown token", rawAuth: "Bearer acme_at_FORGED", method: "GET", path: "/tasks", wantStatus: 401, wantHeader: `error="invalid_token"`},
		{name: "lowercase scheme", rawAuth: "bearer {token}", method: "GET", path: "/tasks", scopes: all, wantStatus: 200},
		{name: "refresh token as bearer", rawAuth: "Bearer {refresh}", method: "GET", path: "/tasks", scopes: all, wantStatus: 401, wantHeader: `error="invalid_token"`},
		{name: "wrong method", scopes: all, method: "PUT", path: "/tasks", wantStatus: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			own, err := b.srv.SeedTask("engineer", "ship the release")
			require.NoError(t, err)
			other, err := b.srv.SeedTask("approver", "approve the release")
			require.NoError(t, err)
			path := strings.NewReplacer("{own}", own.ID, "{other}", other.ID).Replace(tt.path)

			var grant tasks.TokenResponse
			if tt.scopes != nil {
				grant = b.issue(t, "engineer", tt.scopes...)
			}
			req, err := http.NewRequestWithContext(t.Context(), tt.method, b.srv.URL()+path, strings.NewReader(tt.body))
			require.NoError(t, err)
			switch {
			case tt.rawAuth != "":
				req.Header.Set("Authorization", strings.NewReplacer("{token}", grant.AccessToken, "{refresh}", grant.RefreshToken).Replace(tt.rawAuth))
			case grant.AccessToken != "":
				req.Header.Set("Authorization", "Bearer "+grant.AccessToken)
			}
			resp, err := b.http.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			body := string(raw)

			require.Equal(t, tt.wantStatus, resp.StatusCode, body)
			require.Contains(t, resp.Header.Get("WWW-Authenticate"), tt.wantHeader)
			require.Contains(t, body, tt.wantBody)
			require.NotContains(t, body, "approve the release", "never another user's task")
		})
	}
}

func TestPerUserIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	eng := b.issue(t, "engineer", tasks.ScopeRead, tasks.ScopeWrite, tasks.ScopeDelete)
	appr := b.issue(t, "approver", tasks.ScopeRead, tasks.ScopeWrite, tasks.ScopeDelete)

	resp, body := b.do(t, http.MethodPost, "/tasks", eng.AccessToken, `{"title":"rotate the signing key"}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	var created tasks.Task
	require.NoError(t, json.Unmarshal([]byte(body), &created))
	require.Equal(t, "/tasks/"+created.ID, resp.Header.Get("Location"))
	require.Equal(t, b.clock.Now(), created.CreatedAt)

	resp, body = b.do(t, http.MethodGet, "/tasks", appr.AccessToken, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.JSONEq(t, `{"tasks":[]}`, body)
	for _, method := range []string{http.MethodGet, http.MethodPatch, http.MethodDelete} {
		resp, _ = b.do(t, method, "/tasks/"+created.ID, appr.AccessToken, `{"done":true}`)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, method)
	}
	require.Equal(t, []tasks.Task{created}, b.srv.TasksOf("engineer"))

	resp, body = b.do(t, http.MethodGet, "/tasks/"+created.ID, eng.AccessToken, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `"done":false`)
}

func TestExpiredAccessTokenRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		expire func(b *testBundle)
	}{
		{name: "clock passes lifetime", expire: func(b *testBundle) { b.clock.Advance(tasks.DefaultAccessTokenLifetime) }},
		{name: "ExpireAccessTokens", expire: func(b *testBundle) { b.srv.ExpireAccessTokens() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			grant := b.issue(t, "engineer", tasks.ScopeRead)
			resp, _ := b.do(t, http.MethodGet, "/tasks", grant.AccessToken, "")
			require.Equal(t, http.StatusOK, resp.StatusCode)

			tt.expire(b)
			resp, body := b.do(t, http.MethodGet, "/tasks", grant.AccessToken, "")
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			require.Contains(t, resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`)
			require.Contains(t, body, "token expired")

			// The refresh path still works and its token is accepted.
			tok, err := b.refresh(grant.RefreshToken)
			require.NoError(t, err)
			resp, _ = b.do(t, http.MethodGet, "/tasks", tok.AccessToken, "")
			require.Equal(t, http.StatusOK, resp.StatusCode)
		})
	}
}

func TestSetAccessTokenLifetime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.SetAccessTokenLifetime(30 * time.Second)
	grant := b.issue(t, "engineer", tasks.ScopeRead)
	require.Equal(t, int64(30), grant.ExpiresIn)

	b.clock.Advance(29 * time.Second)
	resp, _ := b.do(t, http.MethodGet, "/tasks", grant.AccessToken, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b.clock.Advance(time.Second)
	resp, _ = b.do(t, http.MethodGet, "/tasks", grant.AccessToken, "")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

// TestRecordedRequests shows how other packages assert that a brokered call
// ran as the right user with the right token (a "Token B") and never with
// someone else's ("Token A").
func TestRecordedRequests(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tokenA := b.issue(t, "engineer", tasks.ScopeRead)
	tokenB := b.issue(t, "approver", tasks.ScopeRead)

	resp, _ := b.do(t, http.MethodGet, "/tasks", tokenA.AccessToken, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b.srv.ResetRecords()
	require.Empty(t, b.srv.Requests())

	resp, _ = b.do(t, http.MethodGet, "/tasks?limit=5", tokenB.AccessToken, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = b.do(t, http.MethodPost, "/tasks", tokenB.AccessToken, `{"title":"x"}`)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = b.do(t, http.MethodGet, "/tasks", "", "")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	recs := b.srv.Requests()
	require.Len(t, recs, 3)
	for i, want := range []struct {
		method  string
		status  int
		subject string
		hash    string
	}{
		{http.MethodGet, http.StatusOK, "approver", tasks.TokenHash(tokenB.AccessToken)},
		{http.MethodPost, http.StatusForbidden, "approver", tasks.TokenHash(tokenB.AccessToken)},
		{http.MethodGet, http.StatusUnauthorized, "", ""},
	} {
		rec := recs[i]
		require.Equal(t, want.method, rec.Method)
		require.Equal(t, "/tasks", rec.Path)
		require.Equal(t, want.status, rec.Status)
		require.Equal(t, want.subject, rec.Subject)
		require.Equal(t, want.hash, rec.TokenHash)
		require.NotEqual(t, tasks.TokenHash(tokenA.AccessToken), rec.TokenHash, "never Token A")
		require.NotContains(t, rec.Authorization, tokenA.AccessToken)
	}
	require.Equal(t, "Bearer "+tokenB.AccessToken, recs[0].Authorization)
	require.Equal(t, tasks.DefaultClientID, recs[0].ClientID)
	require.Equal(t, []string{tasks.ScopeRead}, recs[0].Scopes)
	require.Equal(t, "missing bearer token", recs[2].TokenError)
}

func TestTaskLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *tasks.Config) { c.MaxTasksPerUser = 2 })
	grant := b.issue(t, "engineer", tasks.ScopeWrite)
	for range 2 {
		resp, _ := b.do(t, http.MethodPost, "/tasks", grant.AccessToken, `{"title":"x"}`)
		require.Equal(t, http.StatusCreated, resp.StatusCode)
	}
	resp, _ := b.do(t, http.MethodPost, "/tasks", grant.AccessToken, `{"title":"x"}`)
	require.Equal(t, http.StatusConflict, resp.StatusCode)
}
