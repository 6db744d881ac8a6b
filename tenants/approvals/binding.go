package approvals

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
)

// Hash binds an approval to one exact call: SHA-256 over the tool name, the
// canonical JSON of the arguments, the requester's issuer and subject and
// the agent's client id (each length-prefixed).
type Hash [sha256.Size]byte

// String is the hash in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// ParseHash parses the hex form of a Hash.
func ParseHash(s string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return Hash{}, fmt.Errorf("approvals: %q is not a binding hash", s)
	}
	copy(h[:], b)
	return h, nil
}

// Bind computes the binding of a call and returns it with the canonical
// arguments. args is JSON (json.RawMessage, []byte) or any value
// encoding/json can encode; nil means {}.
func Bind(tool string, args any, requesterIssuer, requesterSubject, agent string) (Hash, json.RawMessage, error) {
	canon, err := CanonicalJSON(args)
	if err != nil {
		return Hash{}, nil, err
	}
	h := sha256.New()
	for _, part := range [][]byte{[]byte("locksmith-approval-v1"), []byte(tool), canon,
		[]byte(requesterIssuer), []byte(requesterSubject), []byte(agent)} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	var out Hash
	h.Sum(out[:0])
	return out, canon, nil
}

// CanonicalJSON re-encodes a JSON value with object keys sorted, no
// insignificant whitespace, strings escaped minimally (no HTML escaping) and
// numbers kept exactly as written (1.0 and 1 differ; large integers keep
// every digit). nil means {}.
func CanonicalJSON(v any) (json.RawMessage, error) {
	var raw []byte
	switch x := v.(type) {
	case nil:
		return json.RawMessage("{}"), nil
	case json.RawMessage:
		raw = x
	case []byte:
		raw = x
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return nil, fmt.Errorf("approvals: arguments: %w", err)
		}
		raw = b
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return json.RawMessage("{}"), nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var val any
	if err := dec.Decode(&val); err != nil {
		return nil, fmt.Errorf("approvals: arguments are not valid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("approvals: arguments hold more than one JSON value")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	// encoding/json sorts map keys and writes json.Number verbatim.
	if err := enc.Encode(val); err != nil {
		return nil, fmt.Errorf("approvals: arguments: %w", err)
	}
	return json.RawMessage(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), nil
}
