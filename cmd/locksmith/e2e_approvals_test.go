package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/demo/tasks"
	"github.com/locksmithhq/locksmith/tenants/approvals"
)

// TestBrowserApprovals has two approvers approve a destructive call in the
// real approver page, in headless Chromium. An agent (the engineer's)
// calls deleteTask through the MCP endpoint and gets an approval link. The
// engineer opens it and sees the request without the buttons; "Not you?"
// signs in again as approver, who reads the arguments and approves with a
// reason; "Not you?" again, approver2 approves. The request is approved,
// the agent's retry runs the DELETE once, and the page says so.
// Screenshots of each step go to screenshots/ (git-ignored).
func TestBrowserApprovals(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	env := newMCPTenant(t, st)
	ctx := browser(t)
	bg := context.Background()
	// The default lifetime: long enough for a browser on a busy machine.
	_, err := st.Main.Approval.SaveSettings(bg, env.tenant.ID, approvals.SettingsInput{ApproverGroup: "approvers", TTL: approvals.DefaultTTL})
	require.NoError(t, err)

	// The engineer's agent, already connected to Acme Tasks.
	tokA, err := idp.HeadlessLogin{Issuer: st.IdP.URL(), Username: idp.UsernameEngineer, Resource: env.url, Scopes: []string{mcpEndpointScope}}.Run(bg)
	require.NoError(t, err)
	issued, err := st.Tasks.IssueTokens(idp.UsernameEngineer, tasks.DefaultClientID, []string{tasks.ScopeRead, tasks.ScopeWrite, tasks.ScopeDelete})
	require.NoError(t, err)
	_, err = st.Main.Vault.SaveGrant(bg, env.tenant.ID, env.upstream.ID,
		consent.User{Issuer: st.IdP.URL(), Subject: idp.UserEngineer, Email: "engineer@acme.example"},
		consent.Tokens{AccessToken: issued.AccessToken, RefreshToken: issued.RefreshToken,
			ExpiresAt: time.Now().Add(time.Duration(issued.ExpiresIn) * time.Second), Scopes: strings.Fields(issued.Scope)})
	require.NoError(t, err)
	agent := mcpConnect(t, env.url, bearerClient(tokA.AccessToken, nil), nil, nil)
	res := callTool(t, agent, "createTask", map[string]any{"title": "Legacy billing export"})
	require.False(t, res.IsError, resultText(res))
	taskID := res.StructuredContent.(map[string]any)["id"].(string)

	// The destructive call is held; the agent gets the approver page's link.
	del := map[string]any{"id": taskID}
	e := toolErr(t, callTool(t, agent, "deleteTask", del))
	require.Equal(t, "approval_required", e["kind"])
	link := e["approval_url"].(string)
	id, err := uuid.Parse(e["approval_id"].(string))
	require.NoError(t, err)
	require.Equal(t, st.URL+"/t/"+env.tenant.Slug+"/approvals/"+id.String(), link)

	// The requester follows it: sign-in through the tenant's IdP, then the
	// request without Approve / Reject.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(link),
		chromedp.WaitVisible(tid("login-engineer")),
	))
	screenshot(t, ctx, "idp-login")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("login-engineer")),
		chromedp.WaitVisible(tid("approver-requester")),
	))
	require.Contains(t, text(t, ctx, "approver-note"), "You asked for this; two other people must approve")
	require.Equal(t, "engineer@acme.example", text(t, ctx, "eu-user"))
	buttons, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('[data-testid="approver-approve"], [data-testid="approver-reject"]').length`))
	require.NoError(t, err)
	require.Zero(t, buttons, "the requester sees no Approve / Reject")
	screenshot(t, ctx, "requester")

	// "Not you?": the first approver signs in and reads the request.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("eu-not-you")),
		chromedp.WaitVisible(tid("login-approver")),
		chromedp.Click(tid("login-approver")),
		chromedp.WaitVisible(tid("approver-approve")),
	))
	require.Equal(t, "approver@acme.example", text(t, ctx, "eu-user"))
	require.Equal(t, "Acme Corp", text(t, ctx, "eu-tenant"))
	require.Equal(t, "deleteTask", text(t, ctx, "approver-tool"))
	require.Equal(t, "Destructive", text(t, ctx, "risk-badge"))
	require.Equal(t, "engineer@acme.example", text(t, ctx, "approver-requester"))
	require.Equal(t, "Acme Tasks", text(t, ctx, "approver-upstream"))
	require.Contains(t, strings.Join(strings.Fields(text(t, ctx, "approver-args")), " "), `"id": "`+taskID+`"`)
	require.Contains(t, text(t, ctx, "approver-policy"), "destructive tool")
	require.Regexp(t, `^in 1[0-4] minutes \(\d+ \w+ \d{4} \d\d:\d\d UTC\)$`, text(t, ctx, "approver-expires"))
	require.Equal(t, "0 of 2", text(t, ctx, "approver-count"))
	screenshot(t, ctx, "approver-request")

	// The request is in the approver's list too.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("approver-list-link")),
		chromedp.WaitVisible(tid("approver-list")),
	))
	require.Equal(t, "0 of 2", text(t, ctx, "approver-row-count"))
	screenshot(t, ctx, "approver-list")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("approver-row-link")),
		chromedp.WaitVisible(tid("approver-approve")),
	))

	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys(tid("approver-reason"), "The export was replaced last quarter."),
		chromedp.Click(tid("approver-approve")),
		chromedp.WaitVisible(tid("notice")),
	))
	require.Equal(t, "1 of 2", text(t, ctx, "approver-count"))
	require.Contains(t, text(t, ctx, "approver-votes"), "The export was replaced last quarter.")
	require.Contains(t, text(t, ctx, "approver-note"), "It still needs one more person to approve")
	screenshot(t, ctx, "approved-once")
	rq, err := st.Main.Approval.Get(bg, env.tenant.ID, id)
	require.NoError(t, err)
	require.Equal(t, approvals.StatusPending, rq.Status)
	require.Zero(t, deletesOf(st), "one approval is not enough")

	// "Not you?" again: the second approver approves.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("eu-not-you")),
		chromedp.WaitVisible(tid("login-approver2")),
		chromedp.Click(tid("login-approver2")),
		chromedp.WaitVisible(tid("approver-approve")),
	))
	require.Equal(t, "approver2@acme.example", text(t, ctx, "eu-user"))
	require.Equal(t, "1 of 2", text(t, ctx, "approver-count"))
	screenshot(t, ctx, "second-approver")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys(tid("approver-reason"), "Agreed."),
		chromedp.Click(tid("approver-approve")),
		chromedp.WaitVisible(tid("approver-outcome")),
	))
	require.Equal(t, "2 of 2", text(t, ctx, "approver-count"))
	require.Contains(t, text(t, ctx, "approver-outcome"), "Approved by approver@acme.example and approver2@acme.example")
	screenshot(t, ctx, "approved")

	rq, err = st.Main.Approval.Get(bg, env.tenant.ID, id)
	require.NoError(t, err)
	require.Equal(t, approvals.StatusApproved, rq.Status)
	require.Equal(t, 2, rq.Approvals)
	voters := []string{rq.Votes[0].Approver.Subject, rq.Votes[1].Approver.Subject}
	require.ElementsMatch(t, []string{idp.UserApprover, idp.UserApprover2}, voters)

	// The agent's retry runs the call once; the page says it ran.
	res = callTool(t, agent, "deleteTask", del)
	require.False(t, res.IsError, resultText(res))
	require.Equal(t, 1, deletesOf(st))
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Reload(),
		chromedp.WaitVisible(tid("approver-outcome")),
	))
	require.Contains(t, text(t, ctx, "approver-outcome"), "and run")
	screenshot(t, ctx, "used")

	// The approver's list is empty again.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(tid("approver-list-link")),
		chromedp.WaitVisible(tid("approver-list-empty")),
	))
	screenshot(t, ctx, "list-empty")
}
