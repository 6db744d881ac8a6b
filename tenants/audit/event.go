package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Decisions recorded on a call (the policy's effects).
const (
	DecisionAllow    = "allow"
	DecisionDeny     = "deny"
	DecisionApproval = "approval"
)

// Results of a call, derived from its decision and outcome.
const (
	// ResultNotCalled: the policy denied or held the call; nothing went upstream.
	ResultNotCalled = "not_called"
	// ResultUnknown: allowed, but no outcome was recorded (a crash, or still running).
	ResultUnknown = "unknown"
	// ResultOK: the upstream answered with a status below 400.
	ResultOK = "ok"
	// ResultFailed: the upstream answered 400 or above, or the call failed.
	ResultFailed = "failed"
)

// User is the person a call was made for, as named by Token A.
type User struct {
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
	Email   string `json:"email,omitempty"`
}

// Call is what the MCP layer records before acting (Writer.Intent): the
// request, who and which agent, the tool and upstream request, the Token B
// scopes and the policy's decision. Secrets and bodies never belong here;
// Detail carries redacted bodies only when the tool opts in.
type Call struct {
	RequestID string
	User      User
	// Agent is the client id; Act the delegation chain, outermost first.
	Agent string
	Act   []string
	Tool  string
	// Upstream is the upstream's slug; UpstreamName its display name.
	Upstream     string
	UpstreamName string
	// Method and PathTemplate describe the upstream request (the template,
	// not the expanded path).
	Method       string
	PathTemplate string
	// Scopes are the Token B scopes used; Narrowed says they were narrowed
	// below the grant's.
	Scopes   []string
	Narrowed bool
	// Decision is DecisionAllow, DecisionDeny or DecisionApproval; Rule and
	// Reason come from the policy decision.
	Decision string
	Rule     string
	Reason   string
	// ApprovalID is the approval request that authorised (or is holding)
	// the call, if any.
	ApprovalID uuid.UUID
	// Detail is optional JSON (redacted request/response bodies).
	Detail json.RawMessage
	// RequestBody is the call's arguments, already redacted (see Redact),
	// recorded only for tools that opt in (tools.log_bodies); nil otherwise.
	RequestBody json.RawMessage
}

// Outcome is what happened upstream (Writer.Outcome).
type Outcome struct {
	// Status is the upstream's HTTP status (0 if none was received).
	Status  int
	Latency time.Duration
	// Error describes a failure (timeout, refused, tool error); "" on success.
	Error  string
	Detail json.RawMessage
	// ResponseBody is the upstream's answer, already redacted (see Redact),
	// recorded only for tools that opt in; nil otherwise.
	ResponseBody json.RawMessage
}

// OutcomeRecord is a stored outcome.
type OutcomeRecord struct {
	Seq     int64         `json:"seq"`
	At      time.Time     `json:"at"`
	Status  int           `json:"status"`
	Latency time.Duration `json:"latency_ns"`
	Error   string        `json:"error,omitempty"`
	// ResponseBody is the redacted upstream answer, if the tool opted in.
	ResponseBody json.RawMessage `json:"response_body,omitempty"`
}

// Event is one recorded call with its outcome, if any.
type Event struct {
	// Seq is the event's number in the tenant's trail (its id).
	Seq          int64           `json:"seq"`
	At           time.Time       `json:"at"`
	RequestID    string          `json:"request_id,omitempty"`
	User         User            `json:"user"`
	Agent        string          `json:"agent"`
	Act          []string        `json:"act,omitempty"`
	Tool         string          `json:"tool"`
	Upstream     string          `json:"upstream,omitempty"`
	UpstreamName string          `json:"upstream_name,omitempty"`
	Method       string          `json:"method,omitempty"`
	PathTemplate string          `json:"path_template,omitempty"`
	Scopes       []string        `json:"scopes,omitempty"`
	Narrowed     bool            `json:"narrowed"`
	Decision     string          `json:"decision"`
	Rule         string          `json:"rule,omitempty"`
	Reason       string          `json:"reason,omitempty"`
	ApprovalID   *uuid.UUID      `json:"approval_id,omitempty"`
	Detail       json.RawMessage `json:"detail,omitempty"`
	// RequestBody is the redacted call arguments, if the tool opted in.
	RequestBody json.RawMessage `json:"request_body,omitempty"`
	Outcome     *OutcomeRecord  `json:"outcome,omitempty"`
	Result      string          `json:"result"`
}

func result(decision string, o *OutcomeRecord) string {
	switch {
	case decision != DecisionAllow:
		return ResultNotCalled
	case o == nil:
		return ResultUnknown
	case o.Error != "" || o.Status >= 400:
		return ResultFailed
	default:
		return ResultOK
	}
}

// Sentence renders an event for people, e.g.
//
//	engineer@acme.example via claude-desktop called tasks.delete on Acme Tasks — denied: needs 2 approvals
//
// The result is plain text: HTML-escape it where it is shown.
func Sentence(e Event) string {
	var b strings.Builder
	who := e.User.Email
	if who == "" {
		who = e.User.Subject
	}
	if who == "" {
		who = "someone"
	}
	b.WriteString(who)
	if e.Agent != "" {
		b.WriteString(" via ")
		b.WriteString(e.Agent)
	}
	b.WriteString(" called ")
	b.WriteString(e.Tool)
	if on := cmpOr(e.UpstreamName, e.Upstream); on != "" {
		b.WriteString(" on ")
		b.WriteString(on)
	}
	b.WriteString(" — ")
	switch e.Decision {
	case DecisionDeny, DecisionApproval:
		b.WriteString("denied")
		if e.Reason != "" {
			b.WriteString(": ")
			b.WriteString(e.Reason)
		}
	case DecisionAllow:
		b.WriteString("allowed")
		switch o := e.Outcome; {
		case o == nil:
			b.WriteString(", outcome unknown")
		case o.Error != "":
			fmt.Fprintf(&b, ", failed after %s: %s", roundLatency(o.Latency), o.Error)
		default:
			fmt.Fprintf(&b, ", %d in %s", o.Status, roundLatency(o.Latency))
		}
	default:
		b.WriteString(e.Decision)
	}
	return b.String()
}

func roundLatency(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	default:
		return d.Round(time.Microsecond).String()
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Field limits (bytes) applied when writing; longer values are cut.
const (
	maxShort  = 512
	maxReason = 2048
	maxDetail = 64 << 10
)

// clean makes s storable: valid UTF-8, no NUL, at most max bytes.
func clean(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	if len(s) > max {
		s = s[:max]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// cleanList cleans each element, copying the list only when one changes.
func cleanList(in []string) []string {
	var out []string
	for i, s := range in {
		c := clean(s, maxShort)
		if c != s && out == nil {
			out = append(make([]string, 0, len(in)), in[:i]...)
		}
		if out != nil {
			out = append(out, c)
		}
	}
	if out == nil {
		return in
	}
	return out
}

// cleanDetail returns valid JSON PostgreSQL accepts as jsonb, or nil.
func cleanDetail(d json.RawMessage) *string {
	if len(d) == 0 || len(d) > maxDetail || !json.Valid(d) {
		return nil
	}
	// jsonb refuses the NUL escape.
	d = bytes.ReplaceAll(d, []byte(`\u0000`), []byte(`\ufffd`))
	s := string(d)
	return &s
}

// arrayLiteral encodes a text[] literal ('{"a","b"}').
func arrayLiteral(in []string) string {
	if len(in) == 0 {
		return "{}"
	}
	n := 2
	for _, s := range in {
		n += len(s) + 3
	}
	var b strings.Builder
	b.Grow(n + n/8)
	b.WriteByte('{')
	for i, s := range in {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for _, r := range s {
			if r == '"' || r == '\\' {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}
