package audit_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/tenants/audit"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	big := `{"note": "` + strings.Repeat("x", 100) + `"}`
	tests := []struct {
		name string
		body string
		max  int
		want string // JSON; "" means nil
	}{
		{"empty", "", 0, ""},
		{"plain", `{"title": "milk", "n": 12345678901234567890}`, 0, `{"title": "milk", "n": 12345678901234567890}`},
		{"top-level keys, any case", `{"Password": "p", "TOKEN": "t", "Api-Key": "k", "user": "ann"}`, 0,
			`{"Password": "[redacted]", "TOKEN": "[redacted]", "Api-Key": "[redacted]", "user": "ann"}`},
		{"every listed key", `{"passwd":1,"secret":2,"access_token":3,"refresh_token":4,"id_token":5,"authorization":6,"apikey":7,"client_secret":8,"cookie":9,"private_key":10,"ssn":11,"card_number":12}`, 0,
			`{"passwd":"[redacted]","secret":"[redacted]","access_token":"[redacted]","refresh_token":"[redacted]","id_token":"[redacted]","authorization":"[redacted]","apikey":"[redacted]","client_secret":"[redacted]","cookie":"[redacted]","private_key":"[redacted]","ssn":"[redacted]","card_number":"[redacted]"}`},
		{"nested", `{"user": {"name": "ann", "auth": {"refresh_token": "r", "scopes": ["a"]}}}`, 0,
			`{"user": {"name": "ann", "auth": {"refresh_token": "[redacted]", "scopes": ["a"]}}}`},
		{"whole object under a sensitive key", `{"secret": {"a": 1}}`, 0, `{"secret": "[redacted]"}`},
		{"arrays", `[{"card_number": "4111"}, {"items": [{"ssn": "123"}, "ssn"]}]`, 0,
			`[{"card_number": "[redacted]"}, {"items": [{"ssn": "[redacted]"}, "ssn"]}]`},
		{"scalar", `"just a string"`, 0, `"just a string"`},
		{"not a secret key by substring", `{"tokens_used": 3, "password_hint": "x"}`, 0, `{"tokens_used": 3, "password_hint": "x"}`},
		{"truncated", big, 50, `{"truncated": true, "bytes": ` + itoa(len(big)) + `}`},
		{"fits exactly", `{"a":"b"}`, 9, `{"a":"b"}`},
		{"default limit", `{"a": "` + strings.Repeat("y", 9000) + `"}`, 0, `{"truncated": true, "bytes": 9009}`},
		{"redaction happens before the size check", `{"token": "` + strings.Repeat("z", 100) + `"}`, 40, `{"token": "[redacted]"}`},
		{"non-JSON", `password=hunter2`, 0, `{"unparsed": true, "bytes": 16}`},
		{"trailing garbage", `{"a": 1} {"password": "x"}`, 0, `{"unparsed": true, "bytes": 26}`},
		{"broken JSON", `{"password": "x"`, 0, `{"unparsed": true, "bytes": 16}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := audit.Redact([]byte(tc.body), tc.max)
			if tc.want == "" {
				require.Nil(t, got)
				return
			}
			require.True(t, json.Valid(got), string(got))
			require.JSONEq(t, tc.want, string(got))
			if tc.max > 0 {
				require.LessOrEqual(t, len(got), max(tc.max, 64))
			}
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
