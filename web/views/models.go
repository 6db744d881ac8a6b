package views

// Head is what every document needs: its title and the request's CSP nonce,
// which every <script> tag carries.
type Head struct {
	Title string
	Nonce string
}

// TenantRef names a tenant in the switcher and lists.
type TenantRef struct {
	Slug    string
	Name    string
	Role    string
	Current bool
}

// Href is the tenant's Overview page.
func (t TenantRef) Href() string { return "/console/t/" + t.Slug }

// Frame is the console chrome around a tenant page: the sidebar with the
// tenant switcher and the navigation, and the top bar with the account.
type Frame struct {
	Head         Head
	AccountEmail string
	Tenant       TenantRef
	// Role is the signed-in account's role in Tenant.
	Role string
	// CanChange is true for admins and owners (viewers read only).
	CanChange bool
	// IsOwner is true for owners (members and billing).
	IsOwner bool
	// Tenants are all the account's tenants, for the switcher.
	Tenants []TenantRef
	// Active is the key of the current section (see Sections).
	Active string
	// Notice is a success message after a change ("" for none).
	Notice string
	// PendingApprovals is the number of approval requests waiting, shown
	// as a badge on the Approvals entry (0 shows none).
	PendingApprovals int
}

// NavItem is one entry of the sidebar.
type NavItem struct {
	Key     string
	Label   string
	Href    string
	Current bool
	// Count is a number shown beside the label (0 for none).
	Count int
}

// TestID is the entry's data-testid ("nav-idp").
func (n NavItem) TestID() string { return "nav-" + n.Key }

// Section is one console section, in sidebar order. Key "overview" is the
// tenant's root page; the others live at /console/t/{slug}/{key}.
type Section struct {
	Key   string
	Label string
	Group string
}

// Sections lists the console's sections in sidebar order.
func Sections() []Section {
	return []Section{
		{Key: "overview", Label: "Overview"},
		{Key: "idp", Label: "Identity provider", Group: "Set up"},
		{Key: "upstreams", Label: "Upstreams", Group: "Set up"},
		{Key: "tools", Label: "Tools", Group: "Set up"},
		{Key: "mcp", Label: "MCP endpoint", Group: "Set up"},
		{Key: "policies", Label: "Policies", Group: "Govern"},
		{Key: "approvals", Label: "Approvals", Group: "Govern"},
		{Key: "audit", Label: "Audit", Group: "Govern"},
		{Key: "members", Label: "Members", Group: "Tenant"},
		{Key: "api-keys", Label: "API keys", Group: "Tenant"},
		{Key: "billing", Label: "Billing", Group: "Tenant"},
		{Key: "settings", Label: "Settings", Group: "Tenant"},
	}
}

// SectionHref is the path of a tenant's section.
func SectionHref(slug, key string) string {
	if key == "overview" || key == "" {
		return "/console/t/" + slug
	}
	return "/console/t/" + slug + "/" + key
}

// SectionLabel returns the label of the section with key, or key itself.
func SectionLabel(key string) string {
	for _, s := range Sections() {
		if s.Key == key {
			return s.Label
		}
	}
	return key
}

// navGroup is a labelled run of sidebar entries.
type navGroup struct {
	Label string
	Items []NavItem
}

// nav groups the sidebar entries for the frame's tenant.
func (f Frame) nav() []navGroup {
	var out []navGroup
	for _, s := range Sections() {
		if len(out) == 0 || out[len(out)-1].Label != s.Group {
			out = append(out, navGroup{Label: s.Group})
		}
		g := &out[len(out)-1]
		it := NavItem{Key: s.Key, Label: s.Label, Href: SectionHref(f.Tenant.Slug, s.Key), Current: s.Key == f.Active}
		if s.Key == "approvals" {
			it.Count = f.PendingApprovals
		}
		g.Items = append(g.Items, it)
	}
	return out
}

// Errors maps a form field name to the message shown under it. The key ""
// holds a message about the form as a whole.
type Errors map[string]string

// Field returns the message for field ("" if none).
func (e Errors) Field(field string) string { return e[field] }

// Input describes one labelled form field.
type Input struct {
	ID           string
	Name         string
	Label        string
	Type         string // text, email, password, url; "" means text
	Value        string
	Help         string
	Error        string
	TestID       string
	Autocomplete string
	Required     bool
	Readonly     bool
	// Options makes the field a <select>; Value is the selected option.
	Options []Option
}

// Option is one choice of a select.
type Option struct {
	Value string
	Label string
}

func (i Input) typ() string {
	if i.Type == "" {
		return "text"
	}
	return i.Type
}

func (i Input) describedBy() string {
	switch {
	case i.Error != "" && i.Help != "":
		return i.ID + "-help " + i.ID + "-error"
	case i.Error != "":
		return i.ID + "-error"
	case i.Help != "":
		return i.ID + "-help"
	}
	return ""
}

// Copyable is a value shown read-only with a copy button (the button appears
// only with JavaScript; without it the text can still be selected).
type Copyable struct {
	ID     string
	Label  string
	Value  string
	Help   string
	TestID string
}

// EmptyState says what an empty list or page is for and offers the action
// that fills it.
type EmptyState struct {
	TestID      string
	Title       string
	Body        string
	ActionLabel string
	ActionHref  string
}
