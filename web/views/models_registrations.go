package views

// View models of the registration pages: identity provider, upstreams,
// tools (with the OpenAPI import) and the MCP endpoint.

// TextArea describes one labelled multi-line field.
type TextArea struct {
	ID     string
	Name   string
	Label  string
	Value  string
	Help   string
	Error  string
	TestID string
	Rows   int
	// Mono sets a monospace font (JSON, expressions).
	Mono     bool
	Readonly bool
}

func (a TextArea) describedBy() string {
	return Input{ID: a.ID, Help: a.Help, Error: a.Error}.describedBy()
}

func (a TextArea) rows() int {
	if a.Rows <= 0 {
		return 4
	}
	return a.Rows
}

// Checkbox describes one labelled checkbox; it posts "on" when checked.
type Checkbox struct {
	ID      string
	Name    string
	Label   string
	Help    string
	Error   string
	TestID  string
	Checked bool
}

func (c Checkbox) describedBy() string {
	return Input{ID: c.ID, Help: c.Help, Error: c.Error}.describedBy()
}

// Secret describes a write-only secret field. A stored secret is never sent
// back: IsSet shows "set · replace", an empty submission keeps it, and the
// ClearName checkbox removes it.
type Secret struct {
	ID        string
	Name      string
	Label     string
	Help      string
	Error     string
	TestID    string
	IsSet     bool
	ClearName string
	// Retype asks the admin to enter a secret again after a page that
	// re-rendered the form (a check, a preset) dropped what was typed.
	Retype bool
}

// FieldButton is a submit button shown next to a field that posts the form
// somewhere else (Check, Discover).
type FieldButton struct {
	Label      string
	FormAction string
	TestID     string
}

// FieldProblem is one entry of the error summary at the top of a long form;
// Href points at the field ("#upstream-slug").
type FieldProblem struct {
	Href    string
	Label   string
	Message string
}

// Fact is one thing a live check found, shown as a term and its value.
type Fact struct {
	Label string
	Value string
	Mono  bool
}

// Problem is what a live check found wrong and how to fix it.
type Problem struct {
	Message string
	Fix     string
}

// CheckPanel is the result of a live check (IdP discovery, upstream
// metadata, a token test): a green check with what was found, or a red
// cross with each problem and how to fix it. It renders inside an
// aria-live region; data-testid TestID+"-result" on the panel and
// TestID+"-ok" or TestID+"-problem" on its verdict.
type CheckPanel struct {
	TestID string
	// Ran is false until a check ran (the panel is then empty).
	Ran      bool
	OK       bool
	Title    string
	Facts    []Fact
	Problems []Problem
	Warnings []string
	// Note is a closing line, such as when the check ran.
	Note string
}

// IdPForm holds the values of the identity provider form (never the
// client secret).
type IdPForm struct {
	Issuer          string
	Audience        string
	Preset          string
	ClaimSubject    string
	ClaimEmail      string
	ClaimGroups     string
	ClaimScopes     string
	ClaimAgent      string
	RequireATJWT    bool
	RequiredScopes  string
	ClientID        string
	HasClientSecret bool
}

// IdPPage is the model of the Identity provider page.
type IdPPage struct {
	Frame Frame
	// Registered is true once the tenant has an IdP registration.
	Registered bool
	Form       IdPForm
	Presets    []Option
	// PresetNotes and IssuerHint describe the selected preset.
	PresetNotes string
	IssuerHint  string
	// DefaultAudience is the tenant's MCP URL, used when Audience is empty.
	DefaultAudience string
	Check           CheckPanel
	Errors          Errors
	Summary         []FieldProblem
	SecretRetype    bool
}

// UpstreamRow is one upstream in the upstreams table.
type UpstreamRow struct {
	Name     string
	Slug     string
	Kind     string
	AuthMode string
	BaseURL  string
	Tools    int
	Href     string
}

// UpstreamsPage is the model of the upstreams list.
type UpstreamsPage struct {
	Frame   Frame
	Rows    []UpstreamRow
	NewHref string
}

// PresetLink is one entry of the upstream preset picker.
type PresetLink struct {
	Name    string
	Label   string
	Href    string
	Current bool
}

// UpstreamForm holds the values of the upstream form (never the client
// secret). Scopes and AuthParams are as typed: scopes separated by spaces,
// parameters one key=value per line.
type UpstreamForm struct {
	Preset           string
	Name             string
	Slug             string
	Kind             string
	BaseURL          string
	AuthMode         string
	Issuer           string
	AuthorizeURL     string
	TokenURL         string
	RevocationURL    string
	ClientID         string
	HasClientSecret  bool
	Scopes           string
	PKCE             bool
	RefreshNarrows   bool
	RevokeAfterUse   bool
	Resource         string
	ExchangeVariant  string
	ExchangeAudience string
	ScopeParam       string
	AuthParams       string
}

// UpstreamFormPage is the model of the add and edit upstream pages.
type UpstreamFormPage struct {
	Frame Frame
	IsNew bool
	// Title is the page heading ("Add an upstream" or the upstream's name).
	Title          string
	Action         string
	DiscoverAction string
	DeleteAction   string
	Presets        []PresetLink
	PresetLabel    string
	PresetNotes    string
	PresetDocs     string
	Form           UpstreamForm
	RedirectURI    Copyable
	Discover       CheckPanel
	Errors         Errors
	Summary        []FieldProblem
	SecretRetype   bool
	// Tools is how many tools call this upstream (deleted with it).
	Tools int
	// ImportHref imports tools for this upstream (edit page only).
	ImportHref string
}

// ToolRow is one tool in the tools table.
type ToolRow struct {
	Name        string
	Title       string
	Description string
	Upstream    string
	Method      string
	Path        string
	Scopes      []string
	Risk        string
	Enabled     bool
	Href        string
	ToggleHref  string
}

// ToolsPage is the model of the tools list with its filter bar.
type ToolsPage struct {
	Frame Frame
	Rows  []ToolRow
	// Total is the number of tools of the tenant, before filtering.
	Total int
	// Matching is the number of tools that pass the filter.
	Matching     int
	Query        string
	Upstream     string
	Risk         string
	Upstreams    []Option
	HasUpstreams bool
	// NextHref is the next page of the list ("" on the last).
	NextHref string
	// FirstHref goes back to the first page ("" on it).
	FirstHref string
}

// Filtered reports whether a filter is applied.
func (p ToolsPage) Filtered() bool { return p.Query != "" || p.Upstream != "" || p.Risk != "" }

// ToolForm holds the values of the tool form; lists are as typed.
type ToolForm struct {
	UpstreamID     string
	Name           string
	Title          string
	Description    string
	Method         string
	PathTemplate   string
	QueryParams    string
	BodyParams     string
	InputSchema    string
	RequiredScopes string
	Risk           string
	Enabled        bool
	Condition      string
}

// ToolFormPage is the model of the add and edit tool pages.
type ToolFormPage struct {
	Frame        Frame
	IsNew        bool
	Title        string
	Action       string
	DeleteAction string
	Form         ToolForm
	Upstreams    []Option
	Errors       Errors
	Summary      []FieldProblem
}

// ImportRow is one operation in the OpenAPI import preview.
type ImportRow struct {
	Index       int
	Name        string
	Description string
	Method      string
	Path        string
	Scopes      []string
	Risk        string
	Selected    bool
	Warnings    []string
}

// ImportPreview is what an OpenAPI document would become. Document
// carries the document itself to "Import selected", which reads it again
// (so the server never trusts a posted tool definition) and imports the
// picked operations.
type ImportPreview struct {
	UpstreamID   string
	UpstreamName string
	Rows         []ImportRow
	Warnings     []string
	Document     string
	Action       string
}

// ImportPage is the model of the OpenAPI import page.
type ImportPage struct {
	Frame          Frame
	Upstreams      []Option
	UpstreamID     string
	URL            string
	PreviewAction  string
	MaxUploadLabel string
	Errors         Errors
	Preview        *ImportPreview
}

// Snippet is a ready-to-paste client configuration with a copy button.
type Snippet struct {
	ID     string
	Title  string
	Help   string
	Code   string
	TestID string
}

// MCPPage is the model of the MCP endpoint page.
type MCPPage struct {
	Frame       Frame
	URL         Copyable
	MetadataURL Copyable
	Snippets    []Snippet
	HasIdP      bool
	// TestAction is where the "test a token" form posts.
	TestAction string
	TokenTest  CheckPanel
	Errors     Errors
}

// RiskOptions are the tool risks, for selects.
func RiskOptions() []Option {
	return []Option{
		{Value: "read", Label: "Read — only reads data"},
		{Value: "write", Label: "Write — creates or changes data"},
		{Value: "destructive", Label: "Destructive — deletes or can't be undone (needs approvals)"},
	}
}

// ToolRiskOptions are the risks of the tool form, with "derive it from
// the method" first.
func ToolRiskOptions() []Option {
	return append([]Option{{Value: "", Label: "From the method — GET read, DELETE destructive, others write"}}, RiskOptions()...)
}

// MethodOptions are the HTTP methods a tool may use.
func MethodOptions() []Option {
	return []Option{{Value: "GET", Label: "GET"}, {Value: "POST", Label: "POST"}, {Value: "PUT", Label: "PUT"},
		{Value: "PATCH", Label: "PATCH"}, {Value: "DELETE", Label: "DELETE"}}
}

// KindOptions are the upstream kinds.
func KindOptions() []Option {
	return []Option{{Value: "rest", Label: "REST API"}, {Value: "mcp", Label: "Remote MCP server"}}
}

// AuthModeOptions are the upstream auth modes.
func AuthModeOptions() []Option {
	return []Option{
		{Value: "oauth2", Label: "OAuth 2.0 — each user consents once"},
		{Value: "token_exchange", Label: "Token exchange at your identity provider"},
		{Value: "none", Label: "None — the API needs no user token"},
	}
}

// ExchangeVariantOptions are the token exchange variants.
func ExchangeVariantOptions() []Option {
	return []Option{{Value: "rfc8693", Label: "RFC 8693 token exchange"}, {Value: "entra_obo", Label: "Microsoft Entra on-behalf-of"}}
}

// ScopeParamOptions are the authorization request parameters that can carry scopes.
func ScopeParamOptions() []Option {
	return []Option{{Value: "scope", Label: "scope (standard)"}, {Value: "user_scope", Label: "user_scope (Slack user tokens)"}}
}

// RiskLabel is a risk's badge text.
func RiskLabel(risk string) string {
	switch risk {
	case "read":
		return "Read"
	case "write":
		return "Write"
	case "destructive":
		return "Destructive"
	}
	return risk
}
