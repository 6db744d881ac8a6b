package web

import (
	"net/http"

	"github.com/locksmithhq/locksmith/web/views"
)

// plannedSection is a console section whose features are not built yet. Its
// page is a finished empty state that says what the page is for. When a
// section is built, its entry goes and its own console_<key>.go registers
// real routes. Policies, Approvals and Audit are built; their entries
// remain only for a server configured without the policy engine, the
// approvals service or the audit store (see sectionServed).
type plannedSection struct {
	key    string
	lead   string
	empty  views.EmptyState
	points []string
}

func plannedSections() []plannedSection {
	return []plannedSection{
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

// sectionServed reports whether the section key has its real pages on this
// server, in place of its placeholder.
func (s *Server) sectionServed(key string) bool {
	switch key {
	case "policies":
		return s.cfg.Policy != nil
	case "approvals":
		return s.cfg.Approvals != nil
	case "audit":
		return s.cfg.AuditLog != nil
	}
	return false
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
