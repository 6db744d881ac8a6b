package tokena_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/egress"
	"github.com/locksmithhq/locksmith/tenants/tokena"
)

// A Verifier is built once with the SSRF-guarded client and shared by every
// tenant; each call names the tenant's IdP registration and its audience.
func Example() {
	ctx := context.Background()
	provider, _ := idp.New(idp.Config{Logger: slog.New(slog.DiscardHandler)})
	_ = provider.Start("127.0.0.1:0")
	defer func() {
		closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = provider.Close(closeCtx)
	}()

	ec, _ := egress.New(egress.Options{AllowPrivate: true}) // dev and tests only
	defer ec.HTTPClient().CloseIdleConnections()
	v, err := tokena.New(tokena.Config{HTTP: ec.HTTPClient(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}

	preset, _ := tokena.PresetNamed(tokena.PresetGeneric)
	reg := tenants.IdP{
		Issuer:       provider.URL(),
		JWKSURI:      provider.JWKSURL(),
		Preset:       preset.Name,
		RequireATJWT: preset.RequireATJWT,
	}
	const audience = "https://locksmith.example/t/acme/mcp"

	token, _ := provider.MintAccessToken(idp.MintRequest{User: idp.UserEngineer, Audience: []string{audience}, Scopes: []string{"tasks:read"}})
	p, err := v.Verify(ctx, reg, audience, token)
	fmt.Println(p.Subject, p.AgentClientID, p.Scopes, p.HasScopes("tasks:write"), err)

	other, _ := provider.MintAccessToken(idp.MintRequest{User: idp.UserEngineer, Audience: []string{"https://locksmith.example/t/globex/mcp"}})
	_, err = v.Verify(ctx, reg, audience, other)
	var refusal *tokena.Error
	if errors.As(err, &refusal) {
		fmt.Println(refusal.Reason)
		fmt.Println(refusal.PublicMessage())
	}
	// Output:
	// demo-user-engineer mcp-agent [tasks:read] false <nil>
	// wrong_audience
	// the token was issued for a different audience (expected https://locksmith.example/t/acme/mcp)
}
