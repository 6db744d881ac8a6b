package idp

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"sync"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// rsaKeyBits is the size of generated signing keys.
const rsaKeyBits = 2048

// signingKey is one RSA key of the ring. It implements op.SigningKey (private side) and,
// through publicKey, op.Key.
type signingKey struct {
	id   string
	priv *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.priv }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct{ k *signingKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return &p.k.priv.PublicKey }

// keyRing holds the published signing keys, oldest first; the last one is current. A retired
// key is forgotten entirely, private half included.
type keyRing struct {
	mu   sync.RWMutex
	keys []*signingKey
}

func newSigningKey() (*signingKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, rsaKeyBits)
	if err != nil {
		return nil, fmt.Errorf("idp: generate rsa key: %w", err)
	}
	return &signingKey{id: uuid.NewString(), priv: priv}, nil
}

func newKeyRing() (*keyRing, error) {
	k, err := newSigningKey()
	if err != nil {
		return nil, err
	}
	return &keyRing{keys: []*signingKey{k}}, nil
}

func (r *keyRing) current() *signingKey {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.keys[len(r.keys)-1]
}

func (r *keyRing) find(kid string) (*signingKey, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, k := range r.keys {
		if k.id == kid {
			return k, true
		}
	}
	return nil, false
}

func (r *keyRing) rotate() (string, error) {
	k, err := newSigningKey()
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = append(r.keys, k)
	return k.id, nil
}

func (r *keyRing) retire(kid string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, k := range r.keys {
		if k.id != kid {
			continue
		}
		if i == len(r.keys)-1 {
			return fmt.Errorf("idp: retire key %s: %w", kid, ErrCurrentKey)
		}
		r.keys = append(r.keys[:i:i], r.keys[i+1:]...)
		return nil
	}
	return fmt.Errorf("idp: retire key %s: %w", kid, ErrUnknownKey)
}

func (r *keyRing) retireOld() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var retired []string
	for _, k := range r.keys[:len(r.keys)-1] {
		retired = append(retired, k.id)
	}
	r.keys = []*signingKey{r.keys[len(r.keys)-1]}
	return retired
}

func (r *keyRing) public() []op.Key {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]op.Key, 0, len(r.keys))
	for _, k := range r.keys {
		out = append(out, publicKey{k})
	}
	return out
}

func (r *keyRing) jwks() jose.JSONWebKeySet {
	r.mu.RLock()
	defer r.mu.RUnlock()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(r.keys))}
	for _, k := range r.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.id, Algorithm: string(jose.RS256), Use: "sig"})
	}
	return set
}
