package views

// AuthPage is the model of the sign-in, sign-up and set-password pages.
type AuthPage struct {
	Head   Head
	Email  string
	Next   string
	Token  string
	Errors Errors
	// AltHref links to the other form (sign up ↔ sign in), keeping Next.
	AltHref string
	// Notice is a fixed success message (after a password was set).
	Notice string
}

// ForgotPasswordPage is the model of /forgot-password.
type ForgotPasswordPage struct {
	Head Head
	// Enabled is true when the server can send email (LOCKSMITH_SMTP_URL);
	// otherwise the page says how the operator makes a link instead.
	Enabled bool
	// Sent shows the answer to a request, the same whether or not an
	// account has that email.
	Sent   bool
	Email  string
	Errors Errors
	// LinkTTL says how long a reset link works ("30 minutes").
	LinkTTL string
}

// TenantsPage is the model of /console: the account's tenants and the form
// that creates one.
type TenantsPage struct {
	Head         Head
	AccountEmail string
	Tenants      []TenantRef
	Name         string
	Slug         string
	Errors       Errors
}

// Step is one item of the onboarding checklist.
type Step struct {
	N      int
	Key    string
	Title  string
	Body   string
	Href   string
	Action string
	Done   bool
}

// OverviewPage is the model of a tenant's Overview: the onboarding checklist
// until it is done, then the dashboard.
type OverviewPage struct {
	Frame     Frame
	Steps     []Step
	StepsDone int
	Calls     Chart
	Grants    EmptyState
	Denials   EmptyState
	Approvals EmptyState
}

// AllDone reports whether every onboarding step is complete.
func (p OverviewPage) AllDone() bool { return p.StepsDone == len(p.Steps) }

// Chart is a server-rendered bar chart (inline SVG) with a text fallback:
// one bar per day, the bar a stack of the chart's series (bottom first).
// All coordinates are precomputed strings in ViewBox units.
type Chart struct {
	// ID prefixes the chart's element ids and is its data-testid; ids are
	// unique on a page, so a page shows one chart per ID.
	ID      string
	Title   string
	Empty   EmptyState
	IsEmpty bool
	ViewBox string
	// Plot area edges.
	Left, Right, Top, Bottom string
	// Series are what the bars stack, bottom first; with more than one the
	// chart has a legend naming each with its total.
	Series []ChartSeries
	Bars   []Bar
	YTicks []Tick
	XTicks []Tick
	// Summary is the one-sentence text fallback ("312 calls in the last 14 days…").
	Summary string
	// Columns head the data table (the first is the day); Rows are the
	// data as a table for screen readers.
	Columns []string
	Rows    []ChartRow
}

// ChartSeries is one series of a Chart. Tone is its colour ("accent",
// "success", "danger" or "warning", from the theme's variables) and Pattern
// its fill ("" solid, "hatch" or "dots"), so that series differ by more
// than colour. Total is the series' total as text, for the legend.
type ChartSeries struct {
	Key     string
	Label   string
	Total   string
	Tone    string
	Pattern string
}

// Bar is one day of a Chart: the box of its whole stack, a label (the
// bar's tooltip) and one segment per series with a value, bottom first.
type Bar struct {
	X, Y, W, H string
	Label      string
	Segments   []Segment
}

// Segment is one series' part of a Bar. Class styles a solid fill; Fill,
// when set, is the url() of a pattern fill.
type Segment struct {
	Y, H  string
	Class string
	Fill  string
}

// Tick is an axis label at (X, Y).
type Tick struct {
	X, Y  string
	Label string
}

// ChartRow is one data point of a Chart as text: the day, then one value
// per remaining column.
type ChartRow struct {
	Label  string
	Values []string
}

// Patterned are the series drawn with a pattern, which the chart defines.
func (c Chart) Patterned() []ChartSeries {
	var out []ChartSeries
	for _, s := range c.Series {
		if s.Pattern != "" {
			out = append(out, s)
		}
	}
	return out
}

// PatternID is the element id of series s's pattern.
func (c Chart) PatternID(s ChartSeries) string { return c.ID + "-" + s.Key }

// SectionPage is the model of a console section that is not built yet: a
// finished empty state saying what the page will be for.
type SectionPage struct {
	Frame  Frame
	Title  string
	Lead   string
	Points []string
	Empty  EmptyState
}

// MemberRow is one member in the members table.
type MemberRow struct {
	AccountID string
	Email     string
	Role      string
	Since     string
	IsSelf    bool
}

// MembersPage is the model of the Members page. InviteLink is set only in
// the response that created it (shown once).
type MembersPage struct {
	Frame         Frame
	Members       []MemberRow
	InviteRole    string
	InviteLink    *Copyable
	InviteExpires string
	RemoveID      string
	Errors        Errors
}

// APIKeyRow is one key in the API keys table (never its secret).
type APIKeyRow struct {
	ID       string
	Name     string
	Role     string
	Prefix   string
	Created  string
	LastUsed string
	Revoked  bool
}

// APIKeysPage is the model of the API keys page. NewKey is set only in the
// response that created it (shown once).
type APIKeysPage struct {
	Frame    Frame
	Keys     []APIKeyRow
	NewKey   *Copyable
	Name     string
	Role     string
	RevokeID string
	Errors   Errors
}

// ActiveKeys are the keys that can still be revoked.
func (p APIKeysPage) ActiveKeys() []APIKeyRow {
	var out []APIKeyRow
	for _, k := range p.Keys {
		if !k.Revoked {
			out = append(out, k)
		}
	}
	return out
}

// SettingsPage is the model of the tenant Settings page.
type SettingsPage struct {
	Frame    Frame
	Name     string
	TenantID string
	Created  string
	Errors   Errors
}

// InvitePage is the model of an invitation link's landing page.
type InvitePage struct {
	Head         Head
	Slug         string
	AccountEmail string
	Action       string
	SigninHref   string
	SignupHref   string
	Error        string
}

// ErrorPage is the model of an HTML error page. With Frame it renders inside
// the console frame; with only AccountEmail, inside the account top bar.
type ErrorPage struct {
	Head         Head
	Status       int
	Title        string
	Message      string
	RequestID    string
	AccountEmail string
	Frame        *Frame
}

// RoleOptions are the member roles, least powerful first.
func RoleOptions() []Option {
	return []Option{
		{Value: "viewer", Label: "Viewer — reads everything, changes nothing"},
		{Value: "admin", Label: "Admin — changes configuration"},
		{Value: "owner", Label: "Owner — also manages members and billing"},
	}
}

// ShortRoleOptions are the member roles with short labels, for table rows.
func ShortRoleOptions() []Option {
	return []Option{{Value: "viewer", Label: "Viewer"}, {Value: "admin", Label: "Admin"}, {Value: "owner", Label: "Owner"}}
}

// KeyRoleOptions are the roles an API key may have.
func KeyRoleOptions() []Option {
	return []Option{
		{Value: "admin", Label: "Admin — read and change configuration"},
		{Value: "viewer", Label: "Viewer — read only"},
	}
}
