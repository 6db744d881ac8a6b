package web

import (
	"bytes"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/static"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/web/views"
)

// TestConsoleOnboarding walks a new admin from sign-up to every page of a
// new tenant, then through the changes an owner makes.
func TestConsoleOnboarding(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	br := b.browser(t)

	// Signed out, the root and the console send you to sign in.
	r := br.get("/")
	require.Equal(t, http.StatusSeeOther, r.status)
	require.Equal(t, "/signin", r.location)
	r = br.get("/signup")
	require.Equal(t, http.StatusOK, r.status)
	for _, id := range []string{"signup-email", "signup-password", "signup-submit"} {
		require.Contains(t, r.body, `data-testid="`+id+`"`)
	}

	id := uniq()
	email := "admin-" + id + "@acme.example"
	br.signUp(email)
	r = br.get("/console")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `data-testid="tenants-empty"`)
	for _, id := range []string{"tenant-name", "tenant-slug", "tenant-create", "account-email", "signout"} {
		require.Contains(t, r.body, `data-testid="`+id+`"`)
	}
	slug := br.createTenant("acme-"+id, "Acme Corp")
	tp := "/console/t/" + slug

	tests := []struct {
		name, method, path, body string
		wantStatus               int
		wantContains             []string
	}{
		{"overview", "GET", tp + "?done=created", "", 200, []string{
			`data-testid="onboarding"`, `data-testid="step-idp"`, `data-testid="step-upstream"`, `data-testid="step-tools"`,
			`data-testid="step-agent"`, `data-testid="step-call"`, `data-done="false"`, "0 of 5 steps done",
			`data-testid="calls-empty"`, "Calls appear here once agents connect", `data-testid="grants-empty"`,
			`data-testid="denials-empty"`, `data-testid="approvals-empty"`, `data-testid="notice"`,
			`data-testid="nav-overview" aria-current="page"`, `data-testid="tenant-switcher"`, "Acme Corp"}},
		{"nav entries", "GET", tp, "", 200, []string{
			`data-testid="nav-idp"`, `data-testid="nav-upstreams"`, `data-testid="nav-tools"`, `data-testid="nav-mcp"`,
			`data-testid="nav-policies"`, `data-testid="nav-approvals"`, `data-testid="nav-audit"`, `data-testid="nav-members"`,
			`data-testid="nav-api-keys"`, `data-testid="nav-billing"`, `data-testid="nav-settings"`, `data-testid="nav-menu"`}},
		{"idp", "GET", tp + "/idp", "", 200, []string{`data-testid="idp-empty"`, "Identity provider"}},
		{"upstreams", "GET", tp + "/upstreams", "", 200, []string{`data-testid="upstreams-empty"`}},
		{"tools", "GET", tp + "/tools", "", 200, []string{`data-testid="tools-empty"`}},
		{"policies", "GET", tp + "/policies", "", 200, []string{`data-testid="policies-empty"`}},
		{"approvals", "GET", tp + "/approvals", "", 200, []string{`data-testid="approvals-empty"`}},
		{"audit", "GET", tp + "/audit", "", 200, []string{`data-testid="audit-empty"`}},
		{"billing", "GET", tp + "/billing", "", 200, []string{`data-testid="billing-empty"`}},
		{"mcp", "GET", tp + "/mcp", "", 200, []string{`data-testid="mcp-url"`, `value="` + b.base + "/t/" + slug + `/mcp"`,
			`data-testid="mcp-url-copy"`, `data-testid="mcp-needs-idp"`}},
		{"members", "GET", tp + "/members", "", 200, []string{`data-testid="members-table"`, email, `data-testid="invite-create"`,
			`data-testid="remove-confirm"`}},
		{"api keys empty", "GET", tp + "/api-keys", "", 200, []string{`data-testid="apikeys-empty"`, `data-testid="apikey-create"`}},
		{"settings", "GET", tp + "/settings", "", 200, []string{`data-testid="settings-name"`, `value="Acme Corp"`, `readonly`}},
		{"bad slug", "POST", "/console/tenants", "slug=No+Caps&name=X", 422, []string{`data-testid="tenant-slug-error"`, "lowercase letters"}},
		{"reserved slug", "POST", "/console/tenants", "slug=admin&name=X", 422, []string{"is reserved"}},
		{"taken slug", "POST", "/console/tenants", "slug=" + slug + "&name=X", 409, []string{"slug is taken"}},
		{"empty name", "POST", "/console/tenants", "slug=acme-x" + id + "&name=", 422, []string{`data-testid="tenant-name-error"`}},
		{"create key", "POST", tp + "/api-keys", "name=CI+deploy&role=admin", 200, []string{`data-testid="apikey-new"`, `value="lsk_`,
			`data-testid="apikey-row"`, "CI deploy", "Never", `data-testid="revoke-confirm"`}},
		{"key without name", "POST", tp + "/api-keys", "name=&role=admin", 422, []string{`data-testid="apikey-name-error"`}},
		{"key as owner role", "POST", tp + "/api-keys", "name=x&role=owner", 422, []string{"API key is admin or viewer"}},
		{"rename empty", "POST", tp + "/settings", "name=", 422, []string{`data-testid="settings-name-error"`, "Enter a name."}},
		{"rename", "POST", tp + "/settings", "name=Acme+Inc", 303, nil},
		{"renamed", "GET", tp + "/settings?done=renamed", "", 200, []string{`value="Acme Inc"`, "The tenant was renamed."}},
		{"demote last owner", "POST", tp + "/members/role", "", 409, []string{"at least one owner"}},
		{"unknown section", "GET", tp + "/nope", "", 404, []string{`data-testid="error-page"`, `data-testid="sidebar"`}},
		{"no such tenant", "GET", "/console/t/nope-" + id, "", 404, []string{`data-testid="error-request-id"`, `data-testid="account-email"`}},
		{"static css", "GET", static.URL("app.css"), "", 200, []string{"--accent"}},
		{"static unhashed", "GET", "/static/app.css", "", 404, nil},
	}
	// The last-owner case needs the owner's account id.
	members := br.get(tp + "/members").body
	ownerID := regexp.MustCompile(`name="account_id" value="([^"]+)"`).FindStringSubmatch(members)[1]
	for i := range tests {
		if tests[i].name == "demote last owner" {
			tests[i].body = url.Values{"account_id": {ownerID}, "role": {"admin"}}.Encode()
		}
	}
	for _, tt := range tests {
		r := br.do(tt.method, tt.path, tt.body, nil)
		require.Equal(t, tt.wantStatus, r.status, "%s: %s", tt.name, r.body)
		for _, want := range tt.wantContains {
			require.Contains(t, r.body, want, tt.name)
		}
		if strings.HasPrefix(tt.path, "/console") {
			require.Equal(t, "no-store", r.header.Get("Cache-Control"), tt.name)
		}
	}

	// Static assets are cached for a year.
	r = br.get(static.URL("app.js"))
	require.Equal(t, "public, max-age=31536000, immutable", r.header.Get("Cache-Control"))
	require.Contains(t, r.header.Get("Content-Type"), "javascript")

	// Revoke the key: the wrong name is refused, the right one works.
	keys := br.get(tp + "/api-keys").body
	keyID := regexp.MustCompile(`<option value="([^"]+)"[^>]*>CI deploy`).FindStringSubmatch(keys)[1]
	r = br.post(tp+"/api-keys/revoke", url.Values{"key_id": {keyID}, "confirm": {"CI"}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.Contains(t, r.body, `data-testid="revoke-confirm-error"`)
	r = br.post(tp+"/api-keys/revoke", url.Values{"key_id": {keyID}, "confirm": {"CI deploy"}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	r = br.get(r.location)
	require.Contains(t, r.body, "Revoked")
	require.NotContains(t, r.body, `data-testid="revoke-form"`, "no active key left to revoke")

	// Sign out ends the session server-side: the old cookie no longer works.
	old := br.session()
	r = br.post("/signout", nil)
	require.Equal(t, http.StatusSeeOther, r.status)
	require.Empty(t, br.session())
	br.setSession(old)
	r = br.get("/console")
	require.Equal(t, http.StatusSeeOther, r.status)
	require.Equal(t, "/signin?next=%2Fconsole", r.location)

	// Sign in again, and land where you were going.
	r = br.post("/signin", url.Values{"email": {email}, "password": {testPassword}, "next": {tp + "/members"}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Equal(t, tp+"/members", r.location)
	require.Equal(t, http.StatusOK, br.get(tp+"/members").status)
}

func TestMembersInviteRoleRemove(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	owner, slug, _ := b.newOwner(t, "Acme")
	tp := "/console/t/" + slug
	member, memberEmail := b.joinAs(t, owner, slug, "viewer")

	r := member.get(tp + "?done=joined")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, "You joined this tenant.")

	// An invitation works once.
	path := owner.invite(slug, "admin")
	other := b.browser(t)
	other.signUp("other-" + uniq() + "@acme.example")
	require.Equal(t, http.StatusSeeOther, other.post(path, nil).status)
	r = b.browser(t).get(path)
	require.Equal(t, http.StatusOK, r.status)
	third := b.browser(t)
	third.signUp("third-" + uniq() + "@acme.example")
	r = third.post(path, nil)
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.Contains(t, r.body, "expired or was already used")
	// An unknown tenant in the link says the same.
	r = third.post("/invite/nope-"+uniq()+"/inv_x", nil)
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.Contains(t, r.body, "expired or was already used")

	members := owner.get(tp + "/members").body
	memberID := regexp.MustCompile(`<option value="([^"]+)"[^>]*>` + regexp.QuoteMeta(memberEmail)).FindStringSubmatch(members)[1]

	r = owner.post(tp+"/members/role", url.Values{"account_id": {memberID}, "role": {"admin"}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Contains(t, owner.get(r.location).body, "The member&#39;s role was changed.")
	require.Equal(t, http.StatusSeeOther, member.post(tp+"/settings", url.Values{"name": {"Acme by an admin"}}).status, "now an admin")
	require.Equal(t, http.StatusForbidden, member.post(tp+"/members/invite", url.Values{"role": {"viewer"}}).status, "admins don't manage members")

	r = owner.post(tp+"/members/remove", url.Values{"account_id": {memberID}, "confirm": {"someone@else.example"}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.Contains(t, r.body, `data-testid="remove-confirm-error"`)
	r = owner.post(tp+"/members/remove", url.Values{"account_id": {memberID}, "confirm": {memberEmail}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Equal(t, http.StatusNotFound, member.get(tp).status, "a removed member can't see the tenant")
}

func TestSetPasswordLink(t *testing.T) {
	t.Parallel()
	b := setupConsole(t)
	email := "bootstrap-" + uniq() + "@acme.example"
	acct, err := b.svc.SignUp(t.Context(), email, "a temporary passphrase")
	require.NoError(t, err)
	tok, err := b.svc.SetPasswordToken(t.Context(), acct.ID)
	require.NoError(t, err)

	br := b.browser(t)
	require.Equal(t, http.StatusBadRequest, br.get("/set-password").status)
	r := br.get("/set-password?token=" + url.QueryEscape(tok))
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `data-testid="setpw-password"`)
	r = br.post("/set-password", url.Values{"token": {tok}, "password": {"short"}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.Contains(t, r.body, `data-testid="setpw-password-error"`)
	r = br.post("/set-password", url.Values{"token": {tok}, "password": {testPassword}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Equal(t, "/signin?done=password", r.location, "setting a password asks to sign in")
	r = br.get(r.location)
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, "signed out everywhere. Sign in with the new password.")
	require.Equal(t, http.StatusSeeOther, br.get("/console").status, "not signed in by the link")

	r = b.browser(t).post("/set-password", url.Values{"token": {tok}, "password": {testPassword}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.Contains(t, r.body, "expired or was already used")
	require.Contains(t, r.body, `data-testid="setpw-new-link"`, "a dead link points to a new one")
	require.Equal(t, http.StatusSeeOther, b.browser(t).signIn(email, testPassword).status)
}

// TestCallsChart checks the chart's layout and its text fallback.
func TestCallsChart(t *testing.T) {
	t.Parallel()
	require.True(t, callsChart(nil).IsEmpty)
	require.True(t, callsChart([]dayCount{{Calls: 0}}).IsEmpty)
	days := make([]dayCount, 14)
	for i := range days {
		days[i] = dayCount{Day: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i), Calls: i * 3}
	}
	c := callsChart(days)
	require.False(t, c.IsEmpty)
	require.Len(t, c.Bars, 14)
	require.Len(t, c.Rows, 14)
	require.Equal(t, []string{"0", "25", "50"}, []string{c.YTicks[0].Label, c.YTicks[1].Label, c.YTicks[2].Label})
	require.Equal(t, "273 calls in the last 14 days; the busiest day was 14 Mar with 39 calls.", c.Summary)
	var labels []string
	for _, tk := range c.XTicks {
		labels = append(labels, tk.Label)
	}
	// Every 4th day and the last; 13 Mar would crowd 14 Mar and is left out.
	require.Equal(t, []string{"1 Mar", "5 Mar", "9 Mar", "14 Mar"}, labels)
	require.Equal(t, "0.0", c.Bars[0].H)
	for _, n := range [][2]int{{0, 1}, {1, 1}, {3, 5}, {7, 10}, {11, 20}, {150, 200}, {501, 1000}} {
		require.Equal(t, n[1], niceCeil(n[0]), n[0])
	}

	// Rendered, it is an SVG with a title and the summary.
	f := views.Frame{Tenant: views.TenantRef{Slug: "acme", Name: "Acme"}, Active: "overview"}
	p := overviewModel(f, tenants.SetupCounts{IdPs: 1, Upstreams: 1, Tools: 1}, activity{CallsPerDay: days, AgentConnected: true})
	require.Equal(t, 4, p.StepsDone)
	var buf bytes.Buffer
	require.NoError(t, views.Overview(p).Render(t.Context(), &buf))
	html := buf.String()
	require.Contains(t, html, "<svg")
	require.Contains(t, html, `data-testid="calls-chart-summary"`)
	require.Contains(t, html, "<title id=\"calls-chart-title\">Tool calls per day</title>")
	require.NotContains(t, html, `data-testid="calls-empty"`)
}
