package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// DefaultMaxBodyBytes is the most bytes of a redacted body Redact keeps
// when maxBytes is not positive: 8 KiB.
const DefaultMaxBodyBytes = 8 << 10

// redactedValue replaces the value of a sensitive key.
const redactedValue = "[redacted]"

// sensitiveKeys are the object keys (compared case-insensitively, with "-"
// read as "_") whose values Redact replaces, at any depth.
var sensitiveKeys = map[string]bool{
	"password": true, "passwd": true, "secret": true, "token": true,
	"access_token": true, "refresh_token": true, "id_token": true,
	"authorization": true, "api_key": true, "apikey": true, "client_secret": true,
	"cookie": true, "private_key": true, "ssn": true, "card_number": true,
}

func sensitive(key string) bool {
	return sensitiveKeys[strings.ReplaceAll(strings.ToLower(key), "-", "_")]
}

// Redact prepares a request or response body for the audit trail (tools
// that opt in with log_bodies): the JSON body with the value of every
// sensitive key (password, token, authorization, api_key, …, at any depth,
// including inside arrays) replaced by "[redacted]". A result longer than
// maxBytes (DefaultMaxBodyBytes when maxBytes <= 0) is replaced by
// {"truncated": true, "bytes": N}, and a body that is not JSON by
// {"unparsed": true, "bytes": N}, N being the body's length: nothing of
// such bodies is kept. An empty body gives nil.
func Redact(body []byte, maxBytes int) json.RawMessage {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBodyBytes
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || !atEOF(dec) {
		return marker("unparsed", len(body))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(redactValue(v)); err != nil {
		return marker("unparsed", len(body))
	}
	out := bytes.TrimRight(buf.Bytes(), "\n")
	if len(out) > maxBytes {
		return marker("truncated", len(body))
	}
	return json.RawMessage(out)
}

func atEOF(dec *json.Decoder) bool {
	_, err := dec.Token()
	return errors.Is(err, io.EOF)
}

func marker(kind string, n int) json.RawMessage {
	b, _ := json.Marshal(map[string]any{kind: true, "bytes": n})
	return b
}

func redactValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, val := range t {
			if sensitive(k) {
				t[k] = redactedValue
			} else {
				t[k] = redactValue(val)
			}
		}
		return t
	case []any:
		for i, val := range t {
			t[i] = redactValue(val)
		}
		return t
	default:
		return v
	}
}
