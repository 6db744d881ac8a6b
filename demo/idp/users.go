package idp

import "slices"

// Stable subject identifiers (the sub claim) of the built-in demo users. They never change
// between runs, so tests and seed data can refer to them.
const (
	// UserEngineer is the subject of the demo engineer (groups: engineering).
	UserEngineer = "demo-user-engineer"
	// UserApprover is the subject of the first demo approver (groups: approvers, engineering).
	UserApprover = "demo-user-approver"
	// UserApprover2 is the subject of the second demo approver (groups: approvers), so a
	// two-person rule can be satisfied without the requester.
	UserApprover2 = "demo-user-approver2"
	// UserFinance is the subject of the demo finance user (groups: finance).
	UserFinance = "demo-user-finance"
)

// Usernames of the built-in demo users, as shown on the login page. Each login button carries
// data-testid="login-<username>".
const (
	// UsernameEngineer is the username of [UserEngineer].
	UsernameEngineer = "engineer"
	// UsernameApprover is the username of [UserApprover].
	UsernameApprover = "approver"
	// UsernameApprover2 is the username of [UserApprover2].
	UsernameApprover2 = "approver2"
	// UsernameFinance is the username of [UserFinance].
	UsernameFinance = "finance"
)

// User is an account of the demo identity provider. Subject is the sub claim; Username is
// what the login page shows and what [MintRequest.User] may also name.
type User struct {
	// Subject is the stable, unique sub claim of the user.
	Subject string
	// Username is the unique login name shown on the login page.
	Username string
	// Name is the display name (the name claim).
	Name string
	// Email is the email claim; it is always reported as verified.
	Email string
	// Groups is the groups claim.
	Groups []string
}

// DemoUsers returns a fresh copy of the built-in demo users: engineer, approver, approver2
// and finance, all in the acme.example domain.
func DemoUsers() []User {
	return []User{
		{Subject: UserEngineer, Username: UsernameEngineer, Name: "Demo Engineer", Email: "engineer@acme.example", Groups: []string{"engineering"}},
		{Subject: UserApprover, Username: UsernameApprover, Name: "Demo Approver", Email: "approver@acme.example", Groups: []string{"approvers", "engineering"}},
		{Subject: UserApprover2, Username: UsernameApprover2, Name: "Demo Second Approver", Email: "approver2@acme.example", Groups: []string{"approvers"}},
		{Subject: UserFinance, Username: UsernameFinance, Name: "Demo Finance", Email: "finance@acme.example", Groups: []string{"finance"}},
	}
}

func cloneUser(u User) User {
	u.Groups = slices.Clone(u.Groups)
	return u
}
