package mcp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/tenants"
)

// startFeatureMCP is an upstream MCP server with one resource, one resource
// template and one prompt, all named after tag; it records Authorization.
func startFeatureMCP(t *testing.T, tag string) (url string, auths func() []string) {
	t.Helper()
	srv := sdk.NewServer(&sdk.Implementation{Name: tag, Version: "1"}, nil)
	srv.AddResource(&sdk.Resource{URI: "mem://" + tag + "/doc", Name: tag + "-doc", MIMEType: "text/plain"},
		func(_ context.Context, req *sdk.ReadResourceRequest) (*sdk.ReadResourceResult, error) {
			return &sdk.ReadResourceResult{Contents: []*sdk.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain", Text: "doc of " + tag}}}, nil
		})
	srv.AddResourceTemplate(&sdk.ResourceTemplate{URITemplate: "mem://" + tag + "/items/{id}", Name: tag + "-item"},
		func(_ context.Context, req *sdk.ReadResourceRequest) (*sdk.ReadResourceResult, error) {
			return &sdk.ReadResourceResult{Contents: []*sdk.ResourceContents{{URI: req.Params.URI, Text: "item " + req.Params.URI}}}, nil
		})
	srv.AddPrompt(&sdk.Prompt{Name: "greet", Arguments: []*sdk.PromptArgument{{Name: "who"}}},
		func(_ context.Context, req *sdk.GetPromptRequest) (*sdk.GetPromptResult, error) {
			return &sdk.GetPromptResult{Messages: []*sdk.PromptMessage{{Role: "user", Content: &sdk.TextContent{Text: tag + " greets " + req.Params.Arguments["who"]}}}}, nil
		})
	var mu sync.Mutex
	var seen []string
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return srv }, nil)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts.URL + "/mcp", func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

func TestRelayResourcesAndPrompts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	urlA, authsA := startFeatureMCP(t, "alpha")
	urlB, authsB := startFeatureMCP(t, "beta")
	for slug, u := range map[string]string{"alpha": urlA, "beta": urlB} {
		_, err := b.svc.CreateUpstream(ctx, b.tenantA.ID, tenants.UpstreamInput{Slug: slug, Name: slug, Kind: tenants.UpstreamMCP, BaseURL: u, AuthMode: tenants.AuthNone})
		require.NoError(t, err)
	}
	time.Sleep(60 * time.Millisecond) // past the tenant cache TTL

	tokenA := b.tokenA(t)
	cs := connect(t, b.resource, tokenA, nil)
	caps := cs.InitializeResult().Capabilities
	require.NotNil(t, caps.Resources)
	require.NotNil(t, caps.Prompts)
	require.False(t, caps.Resources.Subscribe, "subscriptions are not supported (stateless)")

	rl, err := cs.ListResources(ctx, nil)
	require.NoError(t, err)
	var uris []string
	for _, r := range rl.Resources {
		uris = append(uris, r.URI)
	}
	require.ElementsMatch(t, []string{"mem://alpha/doc", "mem://beta/doc"}, uris, "URIs stay the upstream's own")

	tl, err := cs.ListResourceTemplates(ctx, nil)
	require.NoError(t, err)
	require.Len(t, tl.ResourceTemplates, 2)

	for _, tag := range []string{"alpha", "beta"} {
		rr, err := cs.ReadResource(ctx, &sdk.ReadResourceParams{URI: "mem://" + tag + "/doc"})
		require.NoError(t, err)
		require.Equal(t, "doc of "+tag, rr.Contents[0].Text, "routed to the upstream that listed it")
		rr, err = cs.ReadResource(ctx, &sdk.ReadResourceParams{URI: "mem://" + tag + "/items/7"})
		require.NoError(t, err)
		require.Equal(t, "item mem://"+tag+"/items/7", rr.Contents[0].Text, "routed by template")
	}
	_, err = cs.ReadResource(ctx, &sdk.ReadResourceParams{URI: "mem://nobody/doc"})
	require.Error(t, err)

	pl, err := cs.ListPrompts(ctx, nil)
	require.NoError(t, err)
	var names []string
	for _, p := range pl.Prompts {
		names = append(names, p.Name)
	}
	require.ElementsMatch(t, []string{"alpha.greet", "beta.greet"}, names)
	gp, err := cs.GetPrompt(ctx, &sdk.GetPromptParams{Name: "beta.greet", Arguments: map[string]string{"who": "ana"}})
	require.NoError(t, err)
	require.Equal(t, "beta greets ana", gp.Messages[0].Content.(*sdk.TextContent).Text)
	_, err = cs.GetPrompt(ctx, &sdk.GetPromptParams{Name: "gamma.greet"})
	require.ErrorContains(t, err, "unknown prompt")

	for _, a := range append(authsA(), authsB()...) {
		require.Empty(t, a, "no credential to an auth-mode-none upstream, never Token A")
	}
}

func TestRelayResourcesNeedConsent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	u, auths := startFeatureMCP(t, "secure")
	secret := tasks.DefaultClientSecret
	_, err := b.svc.CreateUpstream(ctx, b.tenantA.ID, tenants.UpstreamInput{Slug: "secure", Name: "Secure Box", Kind: tenants.UpstreamMCP,
		BaseURL: u, AuthMode: tenants.AuthOAuth2, AuthorizeURL: b.acme.AuthURL(), TokenURL: b.acme.TokenURL(),
		ClientID: tasks.DefaultClientID, ClientSecret: &secret, ScopesOffered: []string{tasks.ScopeRead}, PKCE: true})
	require.NoError(t, err)
	time.Sleep(60 * time.Millisecond)

	cs := connect(t, b.resource, b.tokenA(t), nil)
	rl, err := cs.ListResources(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, rl.Resources, "an unconnected upstream lists nothing")
	_, err = cs.ReadResource(ctx, &sdk.ReadResourceParams{URI: "mem://secure/doc"})
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "/connect/secure"), err.Error())
	_, err = cs.GetPrompt(ctx, &sdk.GetPromptParams{Name: "secure.greet"})
	require.ErrorContains(t, err, "/connect/secure")
	require.Empty(t, auths(), "nothing reached the upstream without a grant")
}
