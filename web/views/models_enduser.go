package views

import "strings"

// End-user pages: what a tenant's users see when an agent asks them to
// connect an upstream (consent), and their own connections. They are
// branded by the tenant, one centred card, without console chrome.

// EndUserFrame is the branding and identity around every end-user page.
type EndUserFrame struct {
	Head       Head
	TenantName string
	TenantSlug string
	// User is who is signed in, nil when nobody is.
	User *EndUserIdentity
	// SwitchNext is where "Not you?" comes back to after signing in again
	// ("" hides the link and shows a plain "Sign out").
	SwitchNext string
	// Wide widens the card (My connections).
	Wide bool
}

// Initial is the tenant's monogram, shown in place of a logo.
func (f EndUserFrame) Initial() string {
	for _, r := range strings.TrimSpace(f.TenantName) {
		return strings.ToUpper(string(r))
	}
	return "?"
}

// SignOutAction is the form action that signs the end user out.
func (f EndUserFrame) SignOutAction() string { return "/t/" + f.TenantSlug + "/auth/signout" }

// MeHref is the user's "My connections" page.
func (f EndUserFrame) MeHref() string { return "/t/" + f.TenantSlug + "/me" }

// EndUserIdentity is the signed-in end user as their IdP named them.
type EndUserIdentity struct {
	Name    string
	Email   string
	Subject string
}

// Display is the name to show: the email, else the name, else the subject.
func (u EndUserIdentity) Display() string {
	switch {
	case u.Email != "":
		return u.Email
	case u.Name != "":
		return u.Name
	}
	return u.Subject
}

// ScopeLine is one permission in plain words.
type ScopeLine struct {
	Scope    string
	Sentence string
	// Risk is read, write or destructive ("" when unknown).
	Risk string
	// AlreadyGranted marks a scope the user allowed before.
	AlreadyGranted bool
}

// RiskLabel is the badge text for the risk ("" for none).
func (l ScopeLine) RiskLabel() string {
	switch l.Risk {
	case "write":
		return "changes data"
	case "destructive":
		return "risky: deletes data"
	}
	return ""
}

// ConsentPage is the model of /t/{tenant}/connect/{upstream}.
type ConsentPage struct {
	Frame        EndUserFrame
	UpstreamName string
	// UpstreamHost is where the user will be sent to allow access.
	UpstreamHost string
	// Agent is the agent that asked, as it named itself ("" when unknown).
	Agent string
	// Scopes are the permissions asked for; New of them were not granted before.
	Scopes []ScopeLine
	// Reconnect says the user's earlier connection stopped working.
	Reconnect bool
	// Action is the form's action (this page's path).
	Action string
	// Hidden are the request's parameters, posted back with the decision.
	Hidden []Field
}

// Field is a hidden form field.
type Field struct {
	Name  string
	Value string
}

// HasRisky reports whether any asked scope is destructive.
func (p ConsentPage) HasRisky() bool {
	for _, s := range p.Scopes {
		if s.Risk == "destructive" {
			return true
		}
	}
	return false
}

// ConnectedPage is the success page at the end of a consent flow.
type ConnectedPage struct {
	Frame        EndUserFrame
	UpstreamName string
	Scopes       []ScopeLine
	// ReturnTo is a same-origin path to go back to ("" for none).
	ReturnTo string
}

// ConnectionsPage is the model of /t/{tenant}/me.
type ConnectionsPage struct {
	Frame EndUserFrame
	// Notice is a fixed success message after a change ("" for none).
	Notice  string
	Cards   []ConnectionCard
	Actions []AgentAction
}

// ConnectionCard is one of the user's grants.
type ConnectionCard struct {
	ID           string
	UpstreamName string
	Scopes       []ScopeLine
	Granted      string
	LastUsed     string
	// Status is active or needs_reauth.
	Status string
	// StatusLabel says the status in words.
	StatusLabel string
	// Problem says why a connection needs reconnecting ("" otherwise).
	Problem string
	// ReconnectHref is the consent page that renews it (needs_reauth).
	ReconnectHref string
	// DisconnectAction is the form action that revokes it.
	DisconnectAction string
}

// NeedsReauth reports whether the connection stopped working.
func (c ConnectionCard) NeedsReauth() bool { return c.Status == "needs_reauth" }

// AgentAction is one call an agent made in the user's name.
type AgentAction struct {
	When     string
	Agent    string
	Tool     string
	Upstream string
	// Outcome is a short result ("done", "denied: …", "failed (HTTP 500)").
	Outcome string
	// Tone is success, danger, warning or "" (neutral), for the badge.
	Tone string
}

// EndUserMessagePage is an end-user page that explains something: an error,
// a refusal, a cancellation, a sign-out.
type EndUserMessagePage struct {
	Frame   EndUserFrame
	Status  int
	Title   string
	Message string
	// RequestID is shown on errors so support can find the log line.
	RequestID string
	// Tone is success, danger, warning or info (the heading's mark).
	Tone    string
	Actions []EndUserAction
}

// EndUserAction is a link or, when Post is set, a button posting Fields to
// Href (same-origin, protected like every browser form).
type EndUserAction struct {
	Label     string
	Href      string
	Post      bool
	Fields    []Field
	TestID    string
	Secondary bool
}
