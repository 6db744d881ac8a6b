package web

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEndUserScopeSentences(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ scope, sentence, risk string }{
		{"tasks:read", "Read your tasks", "read"},
		{"tasks:write", "Create and change your tasks", "write"},
		{"tasks:delete", "Delete your tasks", "destructive"},
		{"read:org", "Read your org", "read"},
		{"calendar_events.read", "Read your calendar events", "read"},
		{"Files.ReadWrite", "Use the “Files.ReadWrite” permission", ""},
		{"repo", "Use the “repo” permission", ""},
		{"channels:history", "Read the history of your channels", "read"},
		{"a:b:c", "Use the “a:b:c” permission", ""},
		{"offline_access", "Stay connected while you are away", "read"},
		{"x:<img>", "Use the “x:<img>” permission", ""},
	} {
		l := scopeLine(tc.scope)
		require.Equal(t, tc.sentence, l.Sentence, tc.scope)
		require.Equal(t, tc.risk, l.Risk, tc.scope)
	}
}
