package policy_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/policy"
)

// Only members of the finance group may call the tool.
func ExampleEvalCondition_financeGroup() {
	ctx := context.Background()
	expr := `"finance" in principal.groups`
	for _, groups := range [][]string{{"finance", "staff"}, {"engineering"}} {
		effect, _ := policy.EvalCondition(ctx, expr, policy.Input{
			Principal: policy.Principal{Email: "analyst@acme.example", Groups: groups},
		})
		fmt.Println(groups, effect)
	}
	// Output:
	// [finance staff] allow
	// [engineering] deny
}

// Amounts under 1000 are allowed; larger ones need approval, and a call
// without an amount is denied (conditions fail closed).
func ExampleEvalCondition_amountUnder1000() {
	ctx := context.Background()
	expr := `args.amount < 1000 ? "allow" : "approval"`
	for _, args := range []string{`{"amount": 250}`, `{"amount": 1000.5}`, `{"currency": "EUR"}`} {
		effect, err := policy.EvalCondition(ctx, expr, policy.Input{Args: []byte(args)})
		fmt.Println(args, effect, err != nil)
	}
	// Output:
	// {"amount": 250} allow false
	// {"amount": 1000.5} approval false
	// {"currency": "EUR"} deny true
}

// Working hours, Monday to Friday 09:00–18:00 in the tenant's time zone.
func ExampleEvalCondition_workingHours() {
	ctx := context.Background()
	expr := `now.getDayOfWeek(tz) >= 1 && now.getDayOfWeek(tz) <= 5 &&
now.getHours(tz) >= 9 && now.getHours(tz) < 18`
	for _, at := range []string{
		"2026-03-04T08:30:00Z", // Wednesday 09:30 in Paris
		"2026-03-04T17:30:00Z", // Wednesday 18:30 in Paris
		"2026-03-07T10:00:00Z", // Saturday
	} {
		now, _ := time.Parse(time.RFC3339, at)
		effect, _ := policy.EvalCondition(ctx, expr, policy.Input{Now: now, TimeZone: "Europe/Paris"})
		fmt.Println(at, effect)
	}
	// Output:
	// 2026-03-04T08:30:00Z allow
	// 2026-03-04T17:30:00Z deny
	// 2026-03-07T10:00:00Z deny
}

// Only one agent may call the tool.
func ExampleEvalCondition_onlyAgent() {
	ctx := context.Background()
	expr := `principal.agent == "claude-desktop"`
	for _, agent := range []string{"claude-desktop", "other-agent"} {
		effect, _ := policy.EvalCondition(ctx, expr, policy.Input{Principal: policy.Principal{Agent: agent}})
		fmt.Println(agent, effect)
	}
	// Output:
	// claude-desktop allow
	// other-agent deny
}

// A mistake is reported at save with its line and column.
func ExampleCompileCondition() {
	err := policy.CompileCondition(`"finance" in principle.groups`)
	var pe *tenants.Error
	if errors.As(err, &pe) {
		fmt.Println(pe.Field+":", pe.Message)
	}
	// Output:
	// condition: line 1, column 14: undeclared reference to 'principle' (did you mean 'principal'?)
}
