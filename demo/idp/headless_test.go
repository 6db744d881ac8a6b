package idp_test

import (
	"context"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/idp"
)

func TestHeadlessLogin(t *testing.T) {
	t.Parallel()
	p := idp.NewTestServer(t)
	ctx := context.Background()
	const resource = "http://localhost:8080/t/acme/mcp"
	tok, err := idp.HeadlessLogin{Issuer: p.URL(), Username: idp.UsernameEngineer, Resource: resource, Scopes: []string{"email"}}.Run(ctx)
	require.NoError(t, err)

	provider, err := oidc.NewProvider(ctx, p.URL())
	require.NoError(t, err)
	v := provider.Verifier(&oidc.Config{ClientID: resource, SupportedSigningAlgs: []string{"RS256"}})
	at, err := v.Verify(ctx, tok.AccessToken)
	require.NoError(t, err)
	require.Equal(t, idp.UserEngineer, at.Subject)

	_, err = idp.HeadlessLogin{Issuer: p.URL(), Username: "nobody"}.Run(ctx)
	require.ErrorContains(t, err, "nobody")
}
