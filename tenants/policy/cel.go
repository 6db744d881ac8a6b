package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"

	"github.com/locksmithhq/locksmith/tenants"
)

// Limits on conditions.
const (
	// MaxConditionLength is the longest condition accepted, in bytes.
	MaxConditionLength = 4096
	// CostLimit bounds one evaluation, in CEL cost units (roughly one per
	// operation; a comprehension costs per iteration). Evaluation stops with
	// an error past it, and an expression whose worst case exceeds it with
	// empty inputs is refused at save.
	CostLimit = 100_000
	// EvalTimeout bounds one evaluation in wall time.
	EvalTimeout = 50 * time.Millisecond
	// maxCachedPrograms bounds the per-Engine program cache.
	maxCachedPrograms = 4096
)

// Condition results.
const (
	resultApproval = "approval"
	resultAllow    = "allow"
	resultDeny     = "deny"
)

// celEnv is the one CEL environment conditions compile in. It is immutable
// once built and shared by every Engine.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(reflect.TypeFor[Principal](), reflect.TypeFor[ToolInfo](), ext.ParseStructTags(true)),
		cel.Variable("principal", cel.ObjectType("policy.Principal")),
		cel.Variable("tool", cel.ObjectType("policy.ToolInfo")),
		cel.Variable("args", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("now", cel.TimestampType),
		cel.Variable("tz", cel.StringType),
		cel.CrossTypeNumericComparisons(true),
		ext.Strings(),
	)
})

// compileMu serialises compiles (check, cost estimate, program) in
// celEnv. cel-go v0.33.2's checker fills the environment's catalog lazily
// (sync.Once, on an undeclared reference) while another check may read that
// field unguarded (entering a comprehension's scope): a data race that
// `go test -race` found. Compiles are rare (at save, and once per condition
// and process: programCache), so the lock costs nothing on the call path;
// evaluation does not take it.
var compileMu sync.Mutex

// CompileCondition checks a condition as it is saved: syntax, names and
// types, the result type (bool or string), and the cost. The error is a
// *tenants.Error of kind ErrInvalid with Field "condition" and a message
// that points at the first problem, e.g.
//
//	line 1, column 1: undeclared reference to 'principle' (did you mean 'principal'?)
//
// An empty condition is valid (no condition).
func CompileCondition(expr string) error {
	_, err := compile(expr)
	return err
}

func compile(expr string) (cel.Program, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, nil
	}
	if len(expr) > MaxConditionLength {
		return nil, tenants.Invalid("condition", fmt.Sprintf("the condition is too long: at most %d characters", MaxConditionLength))
	}
	env, err := celEnv()
	if err != nil {
		return nil, fmt.Errorf("policy: cel environment: %w", err)
	}
	compileMu.Lock()
	defer compileMu.Unlock()
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, tenants.Invalid("condition", issueMessage(iss))
	}
	switch out := ast.OutputType(); {
	case out.IsExactType(cel.BoolType), out.IsExactType(cel.StringType), out.IsExactType(cel.DynType):
	default:
		return nil, tenants.Invalid("condition", fmt.Sprintf(
			"the condition must evaluate to true, false or \"approval\", not a %s", out))
	}
	est, err := env.EstimateCost(ast, sizeEstimator{})
	if err != nil {
		return nil, tenants.Invalid("condition", "the condition's cost could not be estimated: "+err.Error())
	}
	if est.Max > CostLimit {
		return nil, tenants.Invalid("condition", fmt.Sprintf(
			"the condition is too costly: it can take up to %d cost units before even looking at the arguments, the limit is %d (avoid nested loops over large lists)", est.Max, CostLimit))
	}
	prg, err := env.Program(ast,
		cel.CostLimit(CostLimit),
		cel.InterruptCheckFrequency(64),
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		return nil, tenants.Invalid("condition", "the condition could not be prepared: "+err.Error())
	}
	return prg, nil
}

// issueMessage formats the first compile issue as "line L, column C: msg".
func issueMessage(iss *cel.Issues) string {
	errs := iss.Errors()
	if len(errs) == 0 {
		return "the condition is not valid"
	}
	e := errs[0]
	msg := strings.TrimSuffix(e.Message, " (in container '')")
	if len(errs) > 1 {
		msg += fmt.Sprintf(" (and %d more problems)", len(errs)-1)
	}
	return fmt.Sprintf("line %d, column %d: %s", e.Location.Line(), e.Location.Column()+1, msg)
}

// sizeEstimator sizes every input (arguments, principal fields) as empty,
// so the estimate's maximum is the worst case the expression itself forces
// (constant lists, nesting) whatever the call. Costs that grow with the
// arguments are bounded at evaluation instead.
type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(cost.AstNode) *cost.SizeEstimate { return &cost.SizeEstimate{} }
func (sizeEstimator) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

// programCache caches compiled programs by expression text. Programs are
// safe for concurrent evaluation.
type programCache struct {
	mu sync.RWMutex
	m  map[string]programEntry
}

type programEntry struct {
	prg cel.Program
	err error
}

func (c *programCache) get(expr string) (cel.Program, error) {
	c.mu.RLock()
	e, ok := c.m[expr]
	c.mu.RUnlock()
	if ok {
		return e.prg, e.err
	}
	prg, err := compile(expr)
	c.mu.Lock()
	if len(c.m) >= maxCachedPrograms {
		clear(c.m) // crude but bounded; conditions are few per tenant
	}
	c.m[expr] = programEntry{prg, err}
	c.mu.Unlock()
	return prg, err
}

// evaluation is the outcome of one condition.
type evaluation struct {
	effect Effect
	err    error // evaluation failure (effect is then deny)
}

// evaluate runs prg with the call's variables under the cost limit and
// timeout.
func evaluate(ctx context.Context, prg cel.Program, p Principal, tool ToolInfo, args map[string]any, now time.Time, tz string) evaluation {
	ctx, cancel := context.WithTimeout(ctx, EvalTimeout)
	defer cancel()
	if p.Groups == nil {
		p.Groups = []string{}
	}
	if p.Scopes == nil {
		p.Scopes = []string{}
	}
	if p.Act == nil {
		p.Act = []string{}
	}
	if tool.Scopes == nil {
		tool.Scopes = []string{}
	}
	if args == nil {
		args = map[string]any{}
	}
	out, _, err := prg.ContextEval(ctx, map[string]any{
		"principal": p,
		"tool":      tool,
		"args":      args,
		"now":       now,
		"tz":        tz,
	})
	if err != nil {
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return evaluation{effect: EffectDeny, err: fmt.Errorf("condition timed out after %s", EvalTimeout)}
		}
		return evaluation{effect: EffectDeny, err: fmt.Errorf("condition: %w", err)}
	}
	return evaluation{effect: resultEffect(out)}.orError(out)
}

func resultEffect(v ref.Val) Effect {
	switch v := v.(type) {
	case types.Bool:
		if v {
			return EffectAllow
		}
		return EffectDeny
	case types.String:
		switch string(v) {
		case resultApproval:
			return EffectApproval
		case resultAllow:
			return EffectAllow
		case resultDeny:
			return EffectDeny
		}
	}
	return ""
}

func (e evaluation) orError(v ref.Val) evaluation {
	if e.effect == "" {
		return evaluation{effect: EffectDeny, err: fmt.Errorf("condition returned %v (%s); want true, false or \"approval\"", v, v.Type())}
	}
	return e
}

// NormalizeArgs turns a tool call's arguments into the map conditions see:
// json.RawMessage and []byte are decoded, and whole-number float64 values
// (how encoding/json decodes every number) within ±2^53 become int64, so
// args.count == 3 and args.amount + 1 behave as expected. Non-object
// arguments give an error.
func NormalizeArgs(args any) (map[string]any, error) {
	switch a := args.(type) {
	case nil:
		return map[string]any{}, nil
	case json.RawMessage:
		return decodeArgs(a)
	case []byte:
		return decodeArgs(a)
	case map[string]any:
		out := make(map[string]any, len(a))
		for k, v := range a {
			out[k] = normalizeValue(v)
		}
		return out, nil
	default:
		b, err := json.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("policy: arguments: %w", err)
		}
		return decodeArgs(b)
	}
}

func decodeArgs(b []byte) (map[string]any, error) {
	if len(strings.TrimSpace(string(b))) == 0 {
		return map[string]any{}, nil
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("policy: arguments must be a JSON object: %w", err)
	}
	if m == nil {
		m = map[string]any{}
	}
	return NormalizeArgs(m)
}

func normalizeValue(v any) any {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) && math.Abs(x) <= 1<<53 {
			return int64(x)
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, v := range x {
			out[k] = normalizeValue(v)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, v := range x {
			out[i] = normalizeValue(v)
		}
		return out
	default:
		return v
	}
}

// Input is what a condition sees, for EvalCondition.
type Input struct {
	Principal Principal
	Tool      ToolInfo
	// Args are the call's arguments (see NormalizeArgs).
	Args any
	// Now is the time of the call; zero means time.Now().
	Now time.Time
	// TimeZone is the tenant's IANA time zone; "" means UTC.
	TimeZone string
}

// EvalCondition compiles and evaluates one condition against in, without a
// tenant or database: the console's "try it" and the package examples use
// it. A compile problem is a *tenants.Error as from CompileCondition; an
// evaluation problem (missing argument, cost limit, timeout) is returned as
// an error with EffectDeny. An empty condition allows.
func EvalCondition(ctx context.Context, expr string, in Input) (Effect, error) {
	prg, err := compile(expr)
	if err != nil {
		return EffectDeny, err
	}
	if prg == nil {
		return EffectAllow, nil
	}
	args, err := NormalizeArgs(in.Args)
	if err != nil {
		return EffectDeny, err
	}
	if in.Now.IsZero() {
		in.Now = time.Now()
	}
	if in.TimeZone == "" {
		in.TimeZone = "UTC"
	}
	ev := evaluate(ctx, prg, in.Principal, in.Tool, args, in.Now, in.TimeZone)
	return ev.effect, ev.err
}
