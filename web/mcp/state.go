package mcp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
)

// StateSealer seals small secrets under a tenant's data key (AES-256-GCM,
// bound to rowID and field). *seal.Sealer satisfies it.
type StateSealer interface {
	Seal(ctx context.Context, tenantID, rowID uuid.UUID, field string, plaintext []byte) ([]byte, error)
	Open(ctx context.Context, tenantID, rowID uuid.UUID, field string, sealed []byte) ([]byte, error)
}

// requestStateTTL bounds how long an input-required result can be answered.
const requestStateTTL = 10 * time.Minute

// stateRow and stateField bind sealed request states to their purpose.
var stateRow = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://locksmith/mcp/request-state"))

const stateField = "mcp_request_state"

// requestState is what an input-required result carries for the retry. It
// grants nothing (every retry runs the whole hot path again); it only lets
// the endpoint recognise the retry of its own request, for the same user,
// tool and tenant, within requestStateTTL.
type requestState struct {
	Tenant  uuid.UUID `json:"t"`
	Subject string    `json:"s"`
	Tool    string    `json:"n"`
	Expires int64     `json:"e"`
	Nonce   string    `json:"x"`
}

// errBadState is a requestState that failed verification.
var errBadState = errors.New("requestState failed verification")

// stateCodec seals request states with the tenant sealer, or with an HMAC
// key of this process when there is none.
type stateCodec struct {
	sealer StateSealer
	key    []byte
	now    func() time.Time
}

func newStateCodec(s StateSealer, now func() time.Time) (*stateCodec, error) {
	c := &stateCodec{sealer: s, now: now}
	if s == nil {
		c.key = make([]byte, 32)
		if _, err := rand.Read(c.key); err != nil {
			return nil, fmt.Errorf("mcp: state key: %w", err)
		}
	}
	return c, nil
}

func (c *stateCodec) encode(ctx context.Context, st requestState) (string, error) {
	st.Expires = c.now().Add(requestStateTTL).Unix()
	st.Nonce = randomID()
	pt, err := json.Marshal(st)
	if err != nil {
		return "", err
	}
	if c.sealer != nil {
		ct, err := c.sealer.Seal(ctx, st.Tenant, stateRow, stateField, pt)
		if err != nil {
			return "", fmt.Errorf("mcp: seal request state: %w", err)
		}
		return "s1." + base64.RawURLEncoding.EncodeToString(ct), nil
	}
	m := hmac.New(sha256.New, c.key)
	m.Write(pt)
	return "h1." + base64.RawURLEncoding.EncodeToString(pt) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

// decode opens and checks a request state for tenant, subject and tool.
func (c *stateCodec) decode(ctx context.Context, tenant uuid.UUID, subject, tool, s string) error {
	var pt []byte
	switch {
	case c.sealer != nil && len(s) > 3 && s[:3] == "s1.":
		ct, err := base64.RawURLEncoding.DecodeString(s[3:])
		if err != nil {
			return errBadState
		}
		if pt, err = c.sealer.Open(ctx, tenant, stateRow, stateField, ct); err != nil {
			return errBadState
		}
	case c.sealer == nil && len(s) > 3 && s[:3] == "h1.":
		var p, sig []byte
		var err error
		rest := s[3:]
		for i := len(rest) - 1; i >= 0; i-- {
			if rest[i] == '.' {
				if p, err = base64.RawURLEncoding.DecodeString(rest[:i]); err != nil {
					return errBadState
				}
				if sig, err = base64.RawURLEncoding.DecodeString(rest[i+1:]); err != nil {
					return errBadState
				}
				break
			}
		}
		m := hmac.New(sha256.New, c.key)
		m.Write(p)
		if p == nil || !hmac.Equal(sig, m.Sum(nil)) {
			return errBadState
		}
		pt = p
	default:
		return errBadState
	}
	var st requestState
	if err := json.Unmarshal(pt, &st); err != nil {
		return errBadState
	}
	if st.Tenant != tenant || st.Subject != subject || st.Tool != tool || c.now().Unix() > st.Expires {
		return errBadState
	}
	return nil
}

// capMemo remembers, per Token A (by hash), that the client declared URL
// elicitation in its initialize request. Stateless 2025-11-25 requests carry
// no capabilities, so this is how a later tools/call knows it may answer
// -32042. It is per instance and bounded: a call that lands on another
// instance, or after eviction, gets the tool-error form of the consent link,
// which every client can show.
type capMemo struct {
	mu  sync.Mutex
	m   map[[32]byte]time.Time
	now func() time.Time
}

const maxCapMemo = 100_000

func newCapMemo(now func() time.Time) *capMemo {
	return &capMemo{m: make(map[[32]byte]time.Time), now: now}
}

func (c *capMemo) put(k [32]byte, exp time.Time) {
	if exp.IsZero() {
		exp = c.now().Add(time.Hour)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCapMemo {
		now := c.now()
		for key, e := range c.m {
			if now.After(e) {
				delete(c.m, key)
			}
		}
		for key := range c.m {
			if len(c.m) < maxCapMemo {
				break
			}
			delete(c.m, key)
		}
	}
	c.m[k] = exp
}

func (c *capMemo) has(k [32]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	return ok && !c.now().After(e)
}
