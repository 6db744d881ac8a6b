package web

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/tokena"
	"github.com/locksmithhq/locksmith/web/views"
)

// The MCP endpoint page.
//
//	GET  /console/t/{tenant}/mcp             the URLs and client configurations
//	POST /console/t/{tenant}/mcp/test-token  verify a pasted token for this tenant (nothing stored)

// resourceMetadataURL is the RFC 9728 metadata of the tenant's MCP endpoint.
func (s *Server) resourceMetadataURL(slug string) string {
	return strings.TrimRight(s.cfg.BaseURL.String(), "/") + "/.well-known/oauth-protected-resource/t/" + slug + "/mcp"
}

// clientSnippets are ready-to-paste configurations of common MCP clients.
func clientSnippets(slug, mcpURL string) []views.Snippet {
	name := "locksmith-" + slug
	return []views.Snippet{
		{ID: "snippet-claude-code", TestID: "snippet-claude-code", Title: "Claude Code",
			Help: "Run in a terminal.",
			Code: "claude mcp add --transport http " + name + " " + mcpURL},
		{ID: "snippet-claude-desktop", TestID: "snippet-claude-desktop", Title: "Claude Desktop",
			Help: "Add to claude_desktop_config.json (Settings → Developer → Edit Config). Needs Node.js for npx.",
			Code: fmt.Sprintf("{\n  \"mcpServers\": {\n    %q: {\n      \"command\": \"npx\",\n      \"args\": [\"-y\", \"mcp-remote\", %q]\n    }\n  }\n}", name, mcpURL)},
		{ID: "snippet-cursor", TestID: "snippet-cursor", Title: "Cursor",
			Help: "Add to ~/.cursor/mcp.json, or .cursor/mcp.json in a project.",
			Code: fmt.Sprintf("{\n  \"mcpServers\": {\n    %q: {\n      \"url\": %q\n    }\n  }\n}", name, mcpURL)},
		{ID: "snippet-vscode", TestID: "snippet-vscode", Title: "VS Code",
			Help: "Add to .vscode/mcp.json in your workspace.",
			Code: fmt.Sprintf("{\n  \"servers\": {\n    %q: {\n      \"type\": \"http\",\n      \"url\": %q\n    }\n  }\n}", name, mcpURL)},
	}
}

// mcpModel builds the MCP page.
func (s *Server) mcpModel(r *http.Request, c consoleCtx) (views.MCPPage, error) {
	f, err := s.registrationFrame(r, c, "mcp")
	if err != nil {
		return views.MCPPage{}, err
	}
	counts, err := s.cfg.Tenants.SetupCounts(r.Context(), c.Tenant.ID)
	if err != nil {
		return views.MCPPage{}, err
	}
	mcpURL := s.mcpURL(c.Tenant.Slug)
	return views.MCPPage{
		Frame:  f,
		HasIdP: counts.IdPs > 0,
		URL: views.Copyable{ID: "mcp-url", Label: "MCP URL", Value: mcpURL, TestID: "mcp-url",
			Help: "Streamable HTTP. Agents without a valid token get a 401 that points them at your identity provider."},
		MetadataURL: views.Copyable{ID: "mcp-metadata-url", Label: "Protected resource metadata (RFC 9728)", Value: s.resourceMetadataURL(c.Tenant.Slug),
			TestID: "mcp-metadata-url", Help: "Where MCP clients learn which identity provider issues tokens for this endpoint."},
		Snippets:   clientSnippets(c.Tenant.Slug, mcpURL),
		TestAction: views.SectionHref(c.Tenant.Slug, "mcp") + "/test-token",
		TokenTest:  views.CheckPanel{TestID: "token-test"},
	}, nil
}

// mcpPage shows the tenant's MCP endpoint.
func (s *Server) mcpPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	p, err := s.mcpModel(r, c)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, views.MCP(p))
}

// testToken verifies a pasted token against the tenant's IdP registration,
// exactly as the MCP endpoint would, and shows the principal it maps to or
// the reason it was refused. The token is neither stored, logged nor
// rendered back: the verifier is built for this request, without a cache.
func (s *Server) testToken(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	p, err := s.mcpModel(r, c)
	if err != nil {
		return err
	}
	raw := strings.TrimSpace(r.PostFormValue("token"))
	raw = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(raw, "Bearer "), "bearer "))
	if raw == "" {
		p.Errors = fieldError("token", "paste an access token to test")
		return s.render(w, r, http.StatusUnprocessableEntity, views.MCP(p))
	}
	reg, found, err := s.loadIdP(r, c)
	if err != nil {
		return err
	}
	panel := views.CheckPanel{TestID: "token-test", Ran: true,
		Note: "Tested " + formatTime(time.Now()) + ". The token was not stored."}
	switch {
	case !found:
		panel.Title = "This tenant has no identity provider to check tokens against"
		panel.Problems = []views.Problem{{Message: "No identity provider is connected.", Fix: "Connect your identity provider on the Identity provider page, then test again."}}
	case reg.JWKSURI == "":
		panel.Title = "The identity provider's signing keys are unknown"
		panel.Problems = []views.Problem{{Message: "The last check of the identity provider found no jwks_uri.", Fix: "Fix the problems shown on the Identity provider page and check it again."}}
	default:
		panel, err = s.verifyForTenant(r, c, reg, raw, panel)
		if err != nil {
			return err
		}
	}
	p.TokenTest = panel
	return s.render(w, r, http.StatusOK, views.MCP(p))
}

// verifyForTenant runs the Token A verifier and fills the panel.
func (s *Server) verifyForTenant(r *http.Request, c consoleCtx, reg tenants.IdP, raw string, panel views.CheckPanel) (views.CheckPanel, error) {
	audience := reg.Audience
	if audience == "" {
		audience = s.cfg.Tenants.DefaultAudience(c.Tenant.Slug)
	}
	pr, err := s.cfg.Verifier.Verify(r.Context(), reg, audience, raw)
	if err != nil {
		var te *tokena.Error
		if !errors.As(err, &te) {
			return panel, err
		}
		panel.Title = "This token would be refused by this tenant's MCP endpoint"
		msg := sentence(te.Message)
		if errors.Is(err, tokena.ErrUnavailable) && te.Err != nil {
			// The detail is about the tenant's own IdP, which its admins may see.
			msg += " (" + te.Err.Error() + ")"
		}
		panel.Problems = []views.Problem{{Message: msg, Fix: tokenFix(te.Reason, reg, audience)}}
		panel.Facts = []views.Fact{{Label: "Reason", Value: string(te.Reason), Mono: true}}
		return panel, nil
	}
	panel.OK = true
	panel.Title = "This token verifies for this tenant"
	facts := []views.Fact{
		{Label: "Issuer", Value: pr.Issuer, Mono: true},
		{Label: "Subject", Value: pr.Subject, Mono: true},
		{Label: "Email", Value: orDash(pr.Email)},
		{Label: "Groups", Value: orDash(strings.Join(pr.Groups, ", "))},
		{Label: "Scopes", Value: orDash(strings.Join(pr.Scopes, " ")), Mono: true},
		{Label: "Agent", Value: orDash(pr.AgentClientID), Mono: true},
		{Label: "Acting for", Value: orDash(strings.Join(pr.Act, " → ")), Mono: true},
		{Label: "Expires", Value: formatTime(pr.ExpiresAt)},
	}
	panel.Facts = facts
	if missing := pr.MissingScopes(reg.RequiredScopes...); len(missing) > 0 {
		panel.Warnings = append(panel.Warnings, "The token lacks the scopes this tenant requires ("+strings.Join(missing, " ")+"); the MCP endpoint would answer 403 insufficient_scope.")
	}
	return panel, nil
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// tokenFix says how to fix a refused token.
func tokenFix(reason tokena.Reason, reg tenants.IdP, audience string) string {
	switch reason {
	case tokena.ReasonWrongAudience:
		return "Ask your IdP for a token whose aud is " + audience + " (the resource parameter, or an API/audience configured at the IdP), or change the audience on the Identity provider page."
	case tokena.ReasonWrongIssuer:
		return "Use a token issued by " + reg.Issuer + ", or register the issuer that issued it."
	case tokena.ReasonExpired:
		return "Get a fresh token from your IdP."
	case tokena.ReasonNotYetValid:
		return "Check the clocks of the IdP and of Locksmith."
	case tokena.ReasonNotAccessToken:
		return "Paste an access token, not an ID token. If your IdP's access tokens are plain JWTs, turn “require at+jwt” off on the Identity provider page."
	case tokena.ReasonUnknownKey, tokena.ReasonBadSignature:
		return "The token was not signed by a key your IdP publishes at " + reg.JWKSURI + "."
	case tokena.ReasonJWKSUnavailable:
		return "Check on the Identity provider page that Locksmith can reach the IdP's signing keys."
	case tokena.ReasonMalformed, tokena.ReasonTooLarge:
		return "Paste the whole token: three base64url parts separated by dots, without “Bearer ”. Opaque (non-JWT) tokens can't be used."
	case tokena.ReasonUnsupportedAlg, tokena.ReasonForbiddenHeader:
		return "Configure the IdP to sign access tokens with RS256, PS256, ES256 or EdDSA."
	}
	return ""
}
