package consent_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/tasks"
)

// authorize runs Acme Tasks' authorization endpoint (auto-approved for
// user) and returns the code it redirects with.
func authorize(t *testing.T, acme *acmeServer, user, redirectURI, verifier string, scopes string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type": {"code"}, "client_id": {tasks.DefaultClientID}, "redirect_uri": {redirectURI},
		"scope": {scopes}, "state": {"st"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"}, "login_hint": {user},
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(acme.url + "/authorize?" + q.Encode())
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	loc, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	require.NotEmpty(t, loc.Query().Get("code"), loc.Query().Get("error_description"))
	return loc.Query().Get("code")
}

func TestExchangeCodeThenSaveGrant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	acme := startAcmeConfig(t, tasks.Config{AutoApprove: true})
	up := e.addUpstream(t, acme, upstreamOpts{})
	b := e.newBroker(t, brokerOpts{})
	redirect := "http://127.0.0.1:9999/oauth/callback"
	verifier := rand.Text() + rand.Text()

	code := authorize(t, acme, "engineer", redirect, verifier, "tasks:read tasks:write")
	toks, err := b.ExchangeCode(ctx, e.tenantID, up.ID, code, redirect, verifier, []string{tasks.ScopeRead, tasks.ScopeWrite})
	require.NoError(t, err)
	recordIssued(toks.AccessToken, toks.RefreshToken)
	require.Equal(t, []string{tasks.ScopeRead, tasks.ScopeWrite}, toks.Scopes)
	require.NotEmpty(t, toks.RefreshToken)
	g, err := e.vault.SaveGrant(ctx, e.tenantID, up.ID, testUser("engineer"), toks)
	require.NoError(t, err)
	tok, err := b.Token(ctx, e.tenantID, up.ID, testUser("engineer"), []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.Equal(t, g.ID, tok.GrantID)
	require.Equal(t, http.StatusOK, acme.listTasks(t, tok.Value))

	// A replayed code is refused (and Acme revokes what it issued).
	_, err = b.ExchangeCode(ctx, e.tenantID, up.ID, code, redirect, verifier, nil)
	var oe *consent.OAuthError
	require.ErrorAs(t, err, &oe)
	require.Equal(t, "invalid_grant", oe.Code)
	require.NotContains(t, err.Error(), code)

	// A wrong PKCE verifier is refused.
	code = authorize(t, acme, "finance", redirect, verifier, "tasks:read")
	_, err = b.ExchangeCode(ctx, e.tenantID, up.ID, code, redirect, verifier+"x", nil)
	require.ErrorAs(t, err, &oe)
	require.Equal(t, "invalid_grant", oe.Code)
}
