package web

import (
	"net/http"

	"github.com/locksmithhq/locksmith/web/views"
)

// plannedSection is a console section whose features are not built yet. Its
// page is a finished empty state that says what the page is for. When a
// section is built, its entry goes and its own console_<key>.go registers
// real routes.
type plannedSection struct {
	key    string
	lead   string
	empty  views.EmptyState
	points []string
}

func plannedSections() []plannedSection {
	return []plannedSection{
		{
			key:  "idp",
			lead: "The identity provider that issues your agents' access tokens and signs your people in on consent and approval pages.",
			empty: views.EmptyState{TestID: "idp-empty", Title: "No identity provider connected",
				Body: "Locksmith never issues tokens: it checks the ones your own IdP issues. Connect Okta, Entra ID, Auth0, Keycloak, Google or any OIDC provider by its issuer URL."},
			points: []string{
				"Enter the issuer URL and see a live check of its discovery document and signing keys.",
				"Choose a claim-mapping preset and adjust which claims name the user, their groups, scopes and the agent.",
				"Set the OIDC client used for end-user sign-in on consent and approval pages.",
			},
		},
		{
			key:  "upstreams",
			lead: "The APIs your agents act on, and how each user grants access to them.",
			empty: views.EmptyState{TestID: "upstreams-empty", Title: "No upstreams yet",
				Body: "An upstream is an API such as GitHub, Slack or your own service. Each call runs with a token of the user who asked, never with a shared key."},
			points: []string{
				"Pick a preset (GitHub, Google, Slack, Atlassian, Microsoft Graph and more) or enter the OAuth endpoints by hand.",
				"Copy the redirect URI to register at the provider.",
				"Choose per-user consent or token exchange at your IdP.",
			},
		},
		{
			key:  "tools",
			lead: "The operations agents may call, each with its upstream, scopes and risk.",
			empty: views.EmptyState{TestID: "tools-empty", Title: "No tools yet",
				Body: "A tool maps an agent's request to one upstream operation. Define tools by hand or import them from an OpenAPI document."},
			points: []string{
				"Import one tool per operation from an OpenAPI 3 document and pick which to keep.",
				"Mark each tool read, write or destructive; destructive tools need approvals.",
				"Narrow each tool to the scopes it needs.",
			},
		},
		{
			key:  "policies",
			lead: "Rules that decide, for every call, whether this user through this agent may use this tool.",
			empty: views.EmptyState{TestID: "policies-empty", Title: "No policies yet",
				Body: "Policies add conditions to tools: who may call them, with which arguments, and how many approvals a destructive call needs."},
		},
		{
			key:  "approvals",
			lead: "Destructive calls waiting for a second person, and the decisions already taken.",
			empty: views.EmptyState{TestID: "approvals-empty", Title: "Nothing waiting for approval",
				Body: "When an agent asks to run a destructive tool, the request waits here until enough approvers, none of them the requester, agree."},
		},
		{
			key:  "audit",
			lead: "Every call agents made: who asked, through which agent, with which permission, and what happened.",
			empty: views.EmptyState{TestID: "audit-empty", Title: "No calls recorded yet",
				Body: "Each tool call is recorded before it reaches the upstream and again with its outcome. Entries appear once agents connect."},
		},
		{
			key:  "billing",
			lead: "Your plan, usage and invoices.",
			empty: views.EmptyState{TestID: "billing-empty", Title: "Billing is not set up yet",
				Body: "Plans, usage of tool calls and invoices will be managed here by the tenant's owners."},
		},
	}
}

// plannedPage renders a planned section's page.
func (s *Server) plannedPage(p plannedSection) tenantHandler {
	return func(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
		f, err := s.consoleFrame(r, c, p.key)
		if err != nil {
			return err
		}
		return s.render(w, r, http.StatusOK, views.Planned(views.SectionPage{
			Frame: f, Title: views.SectionLabel(p.key), Lead: p.lead, Empty: p.empty, Points: p.points,
		}))
	}
}

// mcpPage shows the tenant's MCP endpoint.
func (s *Server) mcpPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	f, err := s.consoleFrame(r, c, "mcp")
	if err != nil {
		return err
	}
	counts, err := s.cfg.Tenants.SetupCounts(r.Context(), c.Tenant.ID)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, views.MCP(views.MCPPage{
		Frame:  f,
		HasIdP: counts.IdPs > 0,
		URL: views.Copyable{ID: "mcp-url", Label: "MCP URL", Value: s.mcpURL(c.Tenant.Slug), TestID: "mcp-url",
			Help: "Streamable HTTP. Agents without a valid token get a 401 that points them at your identity provider."},
	}))
}
