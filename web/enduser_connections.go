package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/web/views"
)

// recentActions is how many of the user's recent agent calls My
// connections shows.
const recentActions = 20

// connectionsPage is My connections: GET /t/{tenant}/me.
func (s *Server) connectionsPage(w http.ResponseWriter, r *http.Request, c *euCtx) error {
	ctx := r.Context()
	if c.Session == nil {
		return redirect(w, r, enduserSignInPath(c.Tenant.Slug, "/t/"+c.Tenant.Slug+"/me"))
	}
	u := c.Session.User
	grants, err := s.cfg.Consent.Vault().UserGrants(ctx, c.Tenant.ID, u.Issuer, u.Subject)
	if err != nil {
		return err
	}
	ups, err := s.cfg.Tenants.Upstreams(ctx, c.Tenant.ID)
	if err != nil {
		return err
	}
	byID := make(map[uuid.UUID]tenants.Upstream, len(ups))
	for _, up := range ups {
		byID[up.ID] = up
	}
	p := views.ConnectionsPage{Frame: s.euFrame(r, c, "My connections"), Notice: connectionsNotice(r.URL.Query().Get("done"))}
	p.Frame.Wide = true
	now := time.Now()
	for _, g := range grants {
		if g.Status == consent.StatusRevoked {
			continue
		}
		up, ok := byID[g.UpstreamID]
		if !ok {
			continue
		}
		card := views.ConnectionCard{
			ID:               g.ID.String(),
			UpstreamName:     up.Name,
			Scopes:           scopeLines(g.Scopes, nil),
			Granted:          relativeTime(g.CreatedAt, now),
			LastUsed:         "never",
			Status:           g.Status,
			StatusLabel:      "Connected",
			DisconnectAction: "/t/" + c.Tenant.Slug + "/me/connections/" + g.ID.String() + "/disconnect",
		}
		if g.LastUsedAt != nil {
			card.LastUsed = relativeTime(*g.LastUsedAt, now)
		}
		if g.Status == consent.StatusNeedsReauth {
			card.StatusLabel = "Needs reconnecting"
			card.Problem = needsReauthText(up.Name, g.NeedsReauthReason)
			card.ReconnectHref = connectPath(c.Tenant.Slug, up.Slug, connectRequest{Scopes: g.Scopes, ReturnTo: "/t/" + c.Tenant.Slug + "/me"})
		}
		p.Cards = append(p.Cards, card)
	}
	actions, err := s.cfg.Tenants.UserActions(ctx, c.Tenant.ID, u.Issuer, u.Subject, recentActions)
	if err != nil {
		// The page is still useful without the trail.
		s.cfg.Logger.WarnContext(ctx, "user actions unavailable", "tenant_id", c.Tenant.ID, "err", err, "request_id", RequestID(ctx))
	}
	for _, a := range actions {
		p.Actions = append(p.Actions, agentAction(a, now))
	}
	return s.render(w, r, http.StatusOK, views.EndUserConnections(p))
}

// connectionsNotice is the fixed message a redirect asks for with ?done=.
func connectionsNotice(key string) string {
	if key == "disconnected" {
		return "The connection was removed. Locksmith deleted its tokens at once; agents can no longer use it."
	}
	return ""
}

func needsReauthText(upstream, reason string) string {
	switch reason {
	case consent.NeedsReauthInvalidGrant:
		return upstream + " no longer accepts this connection (it may have been revoked there). Reconnect to keep using it."
	case consent.NeedsReauthNoRefreshToken:
		return "This connection expired. Reconnect to keep using it."
	}
	return "This connection stopped working. Reconnect to keep using it."
}

// agentAction describes one audited call for the user.
func agentAction(a tenants.UserAction, now time.Time) views.AgentAction {
	out := views.AgentAction{When: relativeTime(a.At, now), Agent: orDefault(a.Agent, "An agent"), Tool: a.Tool,
		Upstream: orDefault(a.UpstreamName, a.Upstream)}
	switch {
	case a.Decision == "deny":
		out.Outcome, out.Tone = "denied", "danger"
		if a.Reason != "" {
			out.Outcome = "denied: " + truncateRunes(a.Reason, 80)
		}
	case a.Decision == "approval":
		out.Outcome, out.Tone = "waiting for approval", "warning"
	case a.Error != "" || a.Status >= 400:
		out.Outcome, out.Tone = "failed", "danger"
		if a.Status > 0 {
			out.Outcome = fmt.Sprintf("failed (HTTP %d)", a.Status)
		}
	case a.Status > 0:
		out.Outcome, out.Tone = "done", "success"
	default:
		out.Outcome = "outcome unknown"
	}
	return out
}

// relativeTime says when t was, for people: "just now", "5 minutes ago",
// "3 hours ago", "yesterday", else the date.
func relativeTime(t, now time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute") + " ago"
	case d < 24*time.Hour:
		return plural(int(d/time.Hour), "hour") + " ago"
	case d < 48*time.Hour:
		return "yesterday"
	}
	return t.UTC().Format("2 Jan 2006")
}

// disconnect revokes one of the user's grants: POST
// /t/{tenant}/me/connections/{id}/disconnect. Tokens are destroyed at once;
// the upstream revocation is a job. Another user's grant is not found.
func (s *Server) disconnect(w http.ResponseWriter, r *http.Request, c *euCtx) error {
	ctx := r.Context()
	if c.Session == nil {
		return redirect(w, r, enduserSignInPath(c.Tenant.Slug, "/t/"+c.Tenant.Slug+"/me"))
	}
	id, err := uuid.Parse(r.PathValue("id"))
	notFound := &euError{status: http.StatusNotFound, title: "Connection not found",
		msg:     "You have no such connection; it may have been removed already.",
		actions: []views.EndUserAction{{Label: "My connections", Href: "/t/" + c.Tenant.Slug + "/me", TestID: "eu-me"}}}
	if err != nil {
		return notFound
	}
	u := c.Session.User
	err = s.cfg.Consent.Revoke(ctx, c.Tenant.ID, id, consent.User{Issuer: u.Issuer, Subject: u.Subject, Email: u.Email})
	if errors.Is(err, consent.ErrNotFound) {
		return notFound
	}
	if err != nil {
		return err
	}
	s.cfg.Logger.InfoContext(ctx, "grant revoked by user", "tenant_id", c.Tenant.ID, "subject", u.Subject, "grant_id", id, "request_id", RequestID(ctx))
	return redirect(w, r, "/t/"+c.Tenant.Slug+"/me?"+url.Values{"done": {"disconnected"}}.Encode())
}
