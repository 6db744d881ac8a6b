package views

// View models of the governance pages: Policies, Approvals and Audit.

// PolicySettingsForm holds the values of the tenant's policy settings form.
type PolicySettingsForm struct {
	// AgentDefault is "allow" (any agent) or "deny" (only the allow-list).
	AgentDefault string
	// ApprovalsDefault is N as typed (1–10).
	ApprovalsDefault string
	// TimeZone is an IANA name as typed.
	TimeZone string
}

// AgentRow is one agent on the allow-list.
type AgentRow struct {
	ClientID string
	Note     string
	Added    string
}

// KillSwitchRow is one kill switch that is on.
type KillSwitchRow struct {
	Kind string
	// KindLabel is "Agent", "User" or "Upstream".
	KindLabel string
	// Issuer is the user's issuer (user switches only).
	Issuer string
	// Value is the client id, subject or upstream slug; Display names it
	// for people (the upstream's name, when known).
	Value   string
	Display string
	Reason  string
	By      string
	Since   string
}

// KillSwitchForm holds what was typed into one of the kill switch forms.
type KillSwitchForm struct {
	Issuer string
	Value  string
	Reason string
}

// AgentForm holds what was typed into the allow-list form.
type AgentForm struct {
	ClientID string
	Note     string
}

// ConditionCheck is the "check a condition" box: what was typed and, once
// it ran, the result.
type ConditionCheck struct {
	Condition string
	Principal string
	Tool      string
	Args      string
	// At is the time of the call as typed (datetime-local, in the tenant's
	// time zone); "" means now.
	At string
	// TimeZone is the tenant's time zone, which tz is in conditions.
	TimeZone string
	// Ran is true once the check ran without a compile error.
	Ran bool
	// Effect is "allow", "deny" or "approval".
	Effect string
	// Problem is why the evaluation failed (and so denied), "" if it didn't.
	Problem string
	// Note says when and for which inputs it ran.
	Note string
}

// EffectLabel is the result in words.
func (c ConditionCheck) EffectLabel() string {
	switch c.Effect {
	case "allow":
		return "Allowed"
	case "approval":
		return "Needs approval"
	case "deny":
		return "Denied"
	}
	return c.Effect
}

// PoliciesPage is the model of the Policies page.
type PoliciesPage struct {
	Frame    Frame
	Settings PolicySettingsForm
	// SettingsSaved says when the settings were last saved ("" if never).
	SettingsSaved string
	Agents        []AgentRow
	AgentForm     AgentForm
	KillSwitches  []KillSwitchRow
	// KillAgent, KillUser and KillUpstream are the three "turn on" forms.
	KillAgent    KillSwitchForm
	KillUser     KillSwitchForm
	KillUpstream KillSwitchForm
	Upstreams    []Option
	Check        ConditionCheck
	Examples     []Snippet
	// Errors are keyed "<form>.<field>": settings, agent, kill-agent,
	// kill-user, kill-upstream, check.
	Errors  Errors
	Summary []FieldProblem
	// Form actions.
	SettingsAction, AgentAction, AgentRemoveAction, KillAction, KillClearAction, CheckAction string
}

// AgentsOpen reports whether every agent may call tools (the allow-list is
// not consulted).
func (p PoliciesPage) AgentsOpen() bool { return p.Settings.AgentDefault != "deny" }

// AgentDefaultOptions are the choices of the agent default.
func AgentDefaultOptions() []Option {
	return []Option{
		{Value: "allow", Label: "Allow all agents — the allow-list is not consulted"},
		{Value: "deny", Label: "Deny agents not on the allow-list"},
	}
}

// Tab is one link of a row of tabs that filter a list.
type Tab struct {
	Label   string
	Href    string
	Current bool
	TestID  string
}

// ApprovalRow is one request in the approvals list.
type ApprovalRow struct {
	ID   string
	Href string
	// Status is the stored status; StatusLabel says it for people.
	Status      string
	StatusLabel string
	Requester   string
	Agent       string
	Tool        string
	Upstream    string
	Risk        string
	ArgsSummary string
	Approvals   int
	Required    int
	Created     string
	Expires     string
}

// ApprovalsPage is the model of the approvals list.
type ApprovalsPage struct {
	Frame Frame
	// Status is the status filter ("" for all).
	Status       string
	Tabs         []Tab
	Rows         []ApprovalRow
	NextHref     string
	FirstHref    string
	SettingsHref string
	// ApproverGroup is the IdP group whose members may vote.
	ApproverGroup string
}

// JSONLine is one line of pretty-printed JSON. A string value longer than
// the fold limit carries its start in Value and the whole of it in Fold.
type JSONLine struct {
	Indent string
	// Key is the object key, with its quotes ("" for none).
	Key   string
	Value string
	// Kind is the token kind for styling: string, number, literal, punct.
	Kind string
	// Fold is the full value of a long string ("" when not folded);
	// FoldNote says how long it is.
	Fold     string
	FoldNote string
	Comma    bool
}

// VoteRow is one approver's decision.
type VoteRow struct {
	Approver string
	Approve  bool
	Reason   string
	At       string
}

// ApprovalDetailPage is the model of one approval request.
type ApprovalDetailPage struct {
	Frame       Frame
	ID          string
	Status      string
	StatusLabel string
	Tool        string
	Risk        string
	Approvals   int
	Required    int
	Facts       []Fact
	// PolicyRule and PolicyReason are the rule that required approval and
	// what it said.
	PolicyRule   string
	PolicyReason string
	Args         []JSONLine
	Votes        []VoteRow
	Rejection    string
	ApproverURL  Copyable
	// Active is true while approvers can still vote.
	Active bool
}

// ApprovalSettingsForm holds the values of the approval settings form
// (never the webhook secret).
type ApprovalSettingsForm struct {
	ApproverGroup    string
	TTLMinutes       string
	ApprovalsDefault string
	WebhookURL       string
	HasWebhookSecret bool
}

// ApprovalSettingsPage is the model of the approval settings page.
type ApprovalSettingsPage struct {
	Frame        Frame
	Form         ApprovalSettingsForm
	Action       string
	Errors       Errors
	Summary      []FieldProblem
	SecretRetype bool
	// TestAction is where "Send a test event" posts; "" hides the button.
	TestAction string
	// WebhookTest is the result of the last test event (empty until one ran).
	WebhookTest CheckPanel
}

// SentencePart is a piece of an audit sentence; Em pieces are the names
// (who, which agent, which tool, which upstream).
type SentencePart struct {
	Text string
	Em   bool
}

// AuditRow is one call in the audit list, told as a sentence.
type AuditRow struct {
	Seq   string
	Href  string
	At    string
	AtISO string
	Parts []SentencePart
	// Decision is allow, deny or approval; Result ok, failed, unknown or
	// not_called.
	Decision string
	Result   string
}

// AuditFilterForm is the audit search as typed.
type AuditFilterForm struct {
	User     string
	Agent    string
	Tool     string
	Upstream string
	Decision string
	// From and To are datetime-local values, in UTC.
	From string
	To   string
}

// AuditPage is the model of the audit list.
type AuditPage struct {
	Frame     Frame
	Filter    AuditFilterForm
	Filtered  bool
	Upstreams []Option
	Tools     []string
	Rows      []AuditRow
	NextHref  string
	FirstHref string
	// ExportCSV and ExportJSONL download the current filter's calls.
	ExportCSV       string
	ExportJSONL     string
	Retention       string
	RetentionAction string
	VerifyHref      string
	Errors          Errors
	// ShowDecisions is set when calls match: Decisions then charts them
	// per day over the filter's time range.
	ShowDecisions bool
	Decisions     Chart
}

// DecisionOptions are the audit decisions, for the filter.
func DecisionOptions() []Option {
	return []Option{
		{Value: "", Label: "Any decision"},
		{Value: "allow", Label: "Allowed"},
		{Value: "deny", Label: "Denied"},
		{Value: "approval", Label: "Held for approval"},
	}
}

// DecisionLabel is a decision's badge text.
func DecisionLabel(d string) string {
	switch d {
	case "allow":
		return "Allowed"
	case "deny":
		return "Denied"
	case "approval":
		return "Held for approval"
	}
	return d
}

// ResultLabel is a call result's text.
func ResultLabel(r string) string {
	switch r {
	case "ok":
		return "Succeeded"
	case "failed":
		return "Failed"
	case "unknown":
		return "Outcome unknown"
	case "not_called":
		return "Not called"
	}
	return r
}

// AuditEventPage is the model of one audit event.
type AuditEventPage struct {
	Frame    Frame
	Seq      string
	At       string
	Parts    []SentencePart
	Decision string
	Result   string
	Who      []Fact
	Call     []Fact
	Policy   []Fact
	Outcome  []Fact
	Detail   []JSONLine
	// ApprovalHref links the approval request, when there is one.
	ApprovalHref string
	BackHref     string
}

// AuditVerifyPage is the model of the chain verification result.
type AuditVerifyPage struct {
	Frame  Frame
	Report CheckPanel
}
