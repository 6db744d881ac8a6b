package web

import (
	"net/http"
	"time"

	"github.com/locksmithhq/locksmith/static"
	"github.com/locksmithhq/locksmith/tenants"
)

// consoleRoutes registers the console's browser routes and the static
// assets. Every browser route goes through s.browser (cross-origin
// protection, same-origin rule, session); tenant pages also through
// s.tenantAccess with the least role that may use them. A viewer's POST is
// refused by tenantAccess whatever the route says.
//
// A new console section is one file (web/console_<section>.go with its
// handlers and a views/<section>.templ), a few lines here, and its entry
// removed from plannedSections.
func (s *Server) consoleRoutes() {
	s.console = consoleState{
		cop: http.NewCrossOriginProtection(),
		signIns: newLimiter(signInLimit, signInWindow, time.Now,
			prefixLimit{"reset-ip:", resetIPLimit}, prefixLimit{"reset-email:", resetEmailLimit}),
		webhookTests: newLimiter(webhookTestLimit, webhookTestWindow, time.Now),
	}
	s.console.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errCrossOrigin)
	}))
	s.mux.Handle("GET "+static.Prefix, static.Handler())

	// Accounts.
	s.browser("GET /{$}", s.home)
	s.browser("GET /signup", s.signUpPage)
	s.browser("POST /signup", s.signUp)
	s.browser("GET /signin", s.signInPage)
	s.browser("POST /signin", s.signIn)
	s.browser("POST /signout", s.signOut)
	s.browser("GET /set-password", s.setPasswordPage)
	s.browser("POST /set-password", s.setPassword)
	s.browser("GET /forgot-password", s.forgotPasswordPage)
	s.browser("POST /forgot-password", s.forgotPassword)
	s.browser("GET /invite/{tenant}/{token}", s.invitePage)
	s.browser("POST /invite/{tenant}/{token}", s.requireAccount(s.acceptInvite))

	// Tenants.
	s.browser("GET /console", s.requireAccount(s.tenantsPage))
	s.browser("POST /console/tenants", s.requireAccount(s.createTenant))

	// One tenant.
	const t = "/console/t/{tenant}"
	viewer, admin, owner := tenants.RoleViewer, tenants.RoleAdmin, tenants.RoleOwner
	s.browser("GET "+t, s.tenantAccess(viewer, s.overview))
	s.browser("GET "+t+"/idp", s.tenantAccess(viewer, s.idpPage))
	s.browser("POST "+t+"/idp", s.tenantAccess(admin, s.saveIdP))
	s.browser("POST "+t+"/idp/check", s.tenantAccess(admin, s.checkIdP))
	s.browser("POST "+t+"/idp/preset", s.tenantAccess(admin, s.applyIdPPreset))
	s.browser("POST "+t+"/idp/delete", s.tenantAccess(admin, s.deleteIdP))
	s.browser("GET "+t+"/upstreams", s.tenantAccess(viewer, s.upstreamsPage))
	s.browser("GET "+t+"/upstreams/new", s.tenantAccess(viewer, s.newUpstreamPage))
	s.browser("POST "+t+"/upstreams", s.tenantAccess(admin, s.createUpstream))
	s.browser("POST "+t+"/upstreams/discover", s.tenantAccess(admin, s.discoverUpstream))
	s.browser("GET "+t+"/upstreams/{id}", s.tenantAccess(viewer, s.editUpstreamPage))
	s.browser("POST "+t+"/upstreams/{id}", s.tenantAccess(admin, s.updateUpstream))
	s.browser("POST "+t+"/upstreams/{id}/discover", s.tenantAccess(admin, s.discoverUpstream))
	s.browser("POST "+t+"/upstreams/{id}/delete", s.tenantAccess(admin, s.deleteUpstream))
	s.browser("GET "+t+"/tools", s.tenantAccess(viewer, s.toolsPage))
	s.browser("GET "+t+"/tools/new", s.tenantAccess(viewer, s.newToolPage))
	s.browser("POST "+t+"/tools", s.tenantAccess(admin, s.createTool))
	s.browser("GET "+t+"/tools/import", s.tenantAccess(viewer, s.importPage))
	s.browser("POST "+t+"/tools/import/preview", s.tenantAccess(admin, s.previewImport)) // body limit: see bodyLimit
	s.browser("POST "+t+"/tools/import", s.tenantAccess(admin, s.importTools))           // body limit: see bodyLimit
	s.browser("GET "+t+"/tools/{id}", s.tenantAccess(viewer, s.editToolPage))
	s.browser("POST "+t+"/tools/{id}", s.tenantAccess(admin, s.updateTool))
	s.browser("POST "+t+"/tools/{id}/enabled", s.tenantAccess(admin, s.setToolEnabled))
	s.browser("POST "+t+"/tools/{id}/delete", s.tenantAccess(admin, s.deleteTool))
	s.browser("GET "+t+"/mcp", s.tenantAccess(viewer, s.mcpPage))
	s.browser("POST "+t+"/mcp/test-token", s.tenantAccess(admin, s.testToken))
	s.browser("GET "+t+"/members", s.tenantAccess(viewer, s.membersPage))
	s.browser("POST "+t+"/members/invite", s.tenantAccess(owner, s.createInvite))
	s.browser("POST "+t+"/members/role", s.tenantAccess(owner, s.setMemberRole))
	s.browser("POST "+t+"/members/remove", s.tenantAccess(owner, s.removeMember))
	s.browser("GET "+t+"/api-keys", s.tenantAccess(viewer, s.apiKeysPage))
	s.browser("POST "+t+"/api-keys", s.tenantAccess(admin, s.createAPIKey))
	s.browser("POST "+t+"/api-keys/revoke", s.tenantAccess(admin, s.revokeAPIKey))
	s.browser("GET "+t+"/settings", s.tenantAccess(viewer, s.settingsPage))
	s.browser("POST "+t+"/settings", s.tenantAccess(admin, s.renameTenant))
	if s.cfg.Policy != nil {
		s.policiesRoutes(t)
	}
	if s.cfg.Approvals != nil {
		s.approvalsRoutes(t)
	}
	if s.cfg.AuditLog != nil {
		s.auditRoutes(t)
	}
	for _, p := range plannedSections() {
		if s.sectionServed(p.key) {
			continue
		}
		s.browser("GET "+t+"/"+p.key, s.tenantAccess(viewer, s.plannedPage(p)))
	}
	// Anything else under a tenant: 404 inside the frame for members, the
	// same 404 as an unknown tenant for everyone else.
	notFound := s.tenantAccess(viewer, func(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
		return &statusError{status: http.StatusNotFound, msg: "no page at " + r.URL.Path}
	})
	s.browser("GET "+t+"/{rest...}", notFound)
	s.browser("POST "+t+"/{rest...}", notFound)
}
