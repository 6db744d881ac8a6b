package consent_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/tenants"
)

type staticExchange consent.ExchangeClient

func (s staticExchange) ExchangeClient(context.Context, uuid.UUID) (consent.ExchangeClient, error) {
	return consent.ExchangeClient(s), nil
}

func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3, "not a JWT")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var claims map[string]any
	require.NoError(t, json.Unmarshal(raw, &claims))
	return claims
}

func TestTokenExchangeAtTheDemoIdP(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	provider := idp.NewTestServer(t)
	up := e.addUpstream(t, nil, upstreamOpts{authMode: tenants.AuthTokenExchange, exchangeAudience: "https://tasks.example.test"})
	b := e.newBroker(t, brokerOpts{exchange: staticExchange{TokenURL: provider.TokenURL(), ClientID: idp.ClientLocksmith, ClientSecret: idp.DefaultLocksmithSecret}})

	tokenA, err := provider.MintAccessToken(idp.MintRequest{User: idp.UsernameEngineer, Scopes: []string{"openid", tasks.ScopeRead, tasks.ScopeWrite}})
	require.NoError(t, err)
	user := consent.User{Issuer: provider.URL(), Subject: idp.UserEngineer, RawTokenA: tokenA}

	tok, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.NotEqual(t, tokenA, tok.Value, "Token A is never handed out as Token B")
	require.True(t, tok.Narrowed)
	require.Equal(t, []string{tasks.ScopeRead}, tok.Scopes)
	require.Equal(t, uuid.Nil, tok.GrantID)
	claims := jwtClaims(t, tok.Value)
	require.Equal(t, idp.UserEngineer, claims["sub"])
	require.Equal(t, "https://tasks.example.test", claims["aud"])
	require.Equal(t, tasks.ScopeRead, claims["scope"])
	require.Equal(t, idp.ClientLocksmith, claims["client_id"])
	require.EqualValues(t, 1, provider.TokenExchangeCount())

	// Cached until expiry, for that Token A.
	again, err := b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.Equal(t, tok.Value, again.Value)
	require.EqualValues(t, 1, provider.TokenExchangeCount())

	// Another session (another Token A) of the same user exchanges its own.
	otherA, err := provider.MintAccessToken(idp.MintRequest{User: idp.UsernameEngineer, Scopes: []string{tasks.ScopeRead}})
	require.NoError(t, err)
	user.RawTokenA = otherA
	_, err = b.Token(ctx, e.tenantID, up.ID, user, []string{tasks.ScopeRead})
	require.NoError(t, err)
	require.EqualValues(t, 2, provider.TokenExchangeCount())

	// A missing Token A is a clear error.
	_, err = b.Token(ctx, e.tenantID, up.ID, consent.User{Issuer: provider.URL(), Subject: idp.UserEngineer}, []string{tasks.ScopeWrite})
	require.ErrorIs(t, err, consent.ErrInvalid)
}

func TestTokenExchangeRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	provider := idp.NewTestServer(t)
	up := e.addUpstream(t, nil, upstreamOpts{authMode: tenants.AuthTokenExchange, exchangeAudience: "https://tasks.example.test"})

	expired, err := provider.MintAccessToken(idp.MintRequest{User: idp.UsernameEngineer, Lifetime: -time.Minute})
	require.NoError(t, err)
	good := staticExchange{TokenURL: provider.TokenURL(), ClientID: idp.ClientLocksmith, ClientSecret: idp.DefaultLocksmithSecret}
	b := e.newBroker(t, brokerOpts{exchange: good})
	_, err = b.Token(ctx, e.tenantID, up.ID, consent.User{Issuer: provider.URL(), Subject: idp.UserEngineer, RawTokenA: expired}, nil)
	var oe *consent.OAuthError
	require.ErrorAs(t, err, &oe)
	require.Equal(t, "token exchange", oe.Op)
	require.Equal(t, "invalid_request", oe.Code)
	require.Contains(t, err.Error(), "token exchange refused by the identity provider: invalid_request")
	require.NotContains(t, err.Error(), expired)

	// A wrong client secret is refused too, as invalid_client.
	tokenA, err := provider.MintAccessToken(idp.MintRequest{User: idp.UsernameEngineer})
	require.NoError(t, err)
	bad := good
	bad.ClientSecret = "wrong"
	b = e.newBroker(t, brokerOpts{exchange: bad})
	_, err = b.Token(ctx, e.tenantID, up.ID, consent.User{Issuer: provider.URL(), Subject: idp.UserEngineer, RawTokenA: tokenA}, nil)
	require.ErrorAs(t, err, &oe)
	require.Equal(t, "invalid_client", oe.Code)

	// Without an exchange client configured, a clear error.
	b = e.newBroker(t, brokerOpts{})
	_, err = b.Token(ctx, e.tenantID, up.ID, consent.User{Issuer: provider.URL(), Subject: idp.UserEngineer, RawTokenA: tokenA}, nil)
	require.ErrorContains(t, err, "no identity provider exchange client is configured")
}

// TestTokenExchangeEntraOBO checks the On-Behalf-Of request shape against a
// stand-in for Entra ID's token endpoint (the demo IdP does not offer the
// jwt-bearer grant).
func TestTokenExchangeEntraOBO(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t)
	var calls atomic.Int64
	entra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		require.NoError(t, r.ParseForm())
		_, _, basic := r.BasicAuth()
		switch {
		case basic, r.PostForm.Get("client_id") != "locksmith-app", r.PostForm.Get("client_secret") != "s3cret":
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
		case r.PostForm.Get("grant_type") != consent.GrantTypeJWTBearer,
			r.PostForm.Get("requested_token_use") != "on_behalf_of",
			r.PostForm.Get("scope") != "api://tasks/tasks.read":
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_request"}`))
		case r.PostForm.Get("assertion") != "token-a-of-the-user":
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"AADSTS50013: Assertion failed signature validation."}`))
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"token_type":"Bearer","scope":"api://tasks/tasks.read","expires_in":"3599","access_token":"obo-token-b"}`))
		}
	}))
	t.Cleanup(entra.Close)
	up := e.addUpstream(t, nil, upstreamOpts{authMode: tenants.AuthTokenExchange, exchangeVariant: tenants.ExchangeEntraOBO})
	b := e.newBroker(t, brokerOpts{exchange: staticExchange{TokenURL: entra.URL + "/oauth2/v2.0/token", ClientID: "locksmith-app", ClientSecret: "s3cret"}})

	user := consent.User{Issuer: "https://login.microsoftonline.com/tenant/v2.0", Subject: "oid-1", RawTokenA: "token-a-of-the-user"}
	tok, err := b.Token(ctx, e.tenantID, up.ID, user, []string{"api://tasks/tasks.read"})
	require.NoError(t, err)
	require.Equal(t, "obo-token-b", tok.Value)
	require.True(t, tok.Narrowed)
	require.WithinDuration(t, time.Now().Add(3599*time.Second), tok.ExpiresAt, 5*time.Second)

	user.RawTokenA = "forged"
	_, err = b.Token(ctx, e.tenantID, up.ID, user, []string{"api://tasks/tasks.read"})
	var oe *consent.OAuthError
	require.ErrorAs(t, err, &oe)
	require.Equal(t, "invalid_grant", oe.Code)
	require.Contains(t, err.Error(), "AADSTS50013")
	require.EqualValues(t, 2, calls.Load())
}
