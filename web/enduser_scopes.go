package web

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/web/views"
)

// Scope sentences: what a scope lets an agent do, in plain words, derived
// from the scope's name. Names of the form "resource:action" or
// "action:resource" (also with "." or "/" as separator) with a known action
// become "Read your tasks", "Create and change your tasks", "Delete your
// tasks" (risky); a few well-known names have their own sentence; anything
// else is "Use the “x” permission".

// scopeAction maps an action word to a sentence verb and a risk.
var scopeActions = map[string]struct {
	verb string
	risk string
}{
	"read":     {"Read", tenants.RiskRead},
	"view":     {"See", tenants.RiskRead},
	"get":      {"Read", tenants.RiskRead},
	"list":     {"List", tenants.RiskRead},
	"history":  {"Read the history of", tenants.RiskRead},
	"readonly": {"Read", tenants.RiskRead},
	"write":    {"Create and change", tenants.RiskWrite},
	"edit":     {"Change", tenants.RiskWrite},
	"update":   {"Change", tenants.RiskWrite},
	"create":   {"Create", tenants.RiskWrite},
	"manage":   {"Manage", tenants.RiskWrite},
	"delete":   {"Delete", tenants.RiskDestructive},
	"remove":   {"Delete", tenants.RiskDestructive},
	"destroy":  {"Delete", tenants.RiskDestructive},
	"admin":    {"Administer", tenants.RiskDestructive},
}

// wellKnownScopes have a fixed sentence.
var wellKnownScopes = map[string]views.ScopeLine{
	"openid":         {Sentence: "Know who you are", Risk: tenants.RiskRead},
	"profile":        {Sentence: "See your name and profile", Risk: tenants.RiskRead},
	"email":          {Sentence: "See your email address", Risk: tenants.RiskRead},
	"offline_access": {Sentence: "Stay connected while you are away", Risk: tenants.RiskRead},
}

// scopeLine describes one scope for the consent and "my connections" pages.
func scopeLine(scope string) views.ScopeLine {
	if l, ok := wellKnownScopes[scope]; ok {
		l.Scope = scope
		return l
	}
	line := views.ScopeLine{Scope: scope, Sentence: "Use the “" + scope + "” permission"}
	for _, sep := range []string{":", ".", "/"} {
		a, b, ok := strings.Cut(scope, sep)
		if !ok || strings.Contains(b, sep) {
			continue
		}
		action, resource := strings.ToLower(b), a
		act, known := scopeActions[action]
		if !known {
			action, resource = strings.ToLower(a), b
			act, known = scopeActions[action]
		}
		noun := scopeNoun(resource)
		if known && noun != "" {
			line.Sentence = act.verb + " your " + noun
			line.Risk = act.risk
		}
		break
	}
	return line
}

// scopeNoun turns "calendar_events" into "calendar events"; "" when the
// name holds anything but letters, digits and - _ separators.
func scopeNoun(s string) string {
	if s == "" || len(s) > 60 || !utf8.ValidString(s) {
		return ""
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '-' || r == '_':
			b.WriteByte(' ')
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(unicode.ToLower(r))
		default:
			return ""
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// scopeLines describes scopes in order; already marks those the user
// granted before.
func scopeLines(scopes []string, already []string) []views.ScopeLine {
	out := make([]views.ScopeLine, 0, len(scopes))
	for _, s := range scopes {
		l := scopeLine(s)
		for _, a := range already {
			if a == s {
				l.AlreadyGranted = true
			}
		}
		out = append(out, l)
	}
	return out
}
