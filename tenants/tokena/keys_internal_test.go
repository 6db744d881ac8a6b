package tokena

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"
)

// TestKeepIdentity: a refetch that returns an unchanged key keeps the same
// *key, so tokens cached under it stay cached; a changed key under the same
// kid does not.
func TestKeepIdentity(t *testing.T) {
	t.Parallel()
	k1, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	k2, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	doc := func(keys ...jose.JSONWebKey) []byte {
		b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
		require.NoError(t, err)
		return b
	}
	first, _, err := parseJWKS(doc(jose.JSONWebKey{Key: &k1.PublicKey, KeyID: "a", Use: "sig"}))
	require.NoError(t, err)
	cached, _ := first.find("a", algRS256)
	require.NotNil(t, cached)

	same, _, err := parseJWKS(doc(jose.JSONWebKey{Key: &k1.PublicKey, KeyID: "a", Use: "sig"}, jose.JSONWebKey{Key: &k2.PublicKey, KeyID: "b", Use: "sig"}))
	require.NoError(t, err)
	same.keepIdentity(first)
	require.True(t, same.has(cached))
	got, _ := same.find("a", algRS256)
	require.Same(t, cached, got)

	changed, _, err := parseJWKS(doc(jose.JSONWebKey{Key: &k2.PublicKey, KeyID: "a", Use: "sig"}))
	require.NoError(t, err)
	changed.keepIdentity(first)
	require.False(t, changed.has(cached), "new material under an old kid is a new key")
}

func TestSameResource(t *testing.T) {
	t.Parallel()
	const aud = "https://locksmith.example/t/acme/mcp"
	for in, want := range map[string]bool{
		aud:                                     true,
		"HTTPS://LOCKSMITH.EXAMPLE/t/acme/mcp":  true,
		"https://locksmith.example/t/Acme/mcp":  false,
		"https://locksmith.example/t/acme/mcp/": false,
		"https://locksmith.example/t/acme/mcP":  false,
		"https://u@locksmith.example/t/acme/mc": false,
		"urn:locksmith:acme":                    false,
	} {
		require.Equal(t, want, sameResource(in, aud), in)
	}
}
