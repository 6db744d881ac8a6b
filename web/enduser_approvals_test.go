package web

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/demo/idp"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/approvals"
)

// apBundle is the end-user pages with the approver pages mounted: a tenant
// whose IdP is a real demo IdP (approver and approver2 are in its
// "approvers" group; engineer and finance are not), and the approvals
// service.
type apBundle struct {
	*euBundle
	approvals *approvals.Service
}

func setupApprover(t *testing.T) *apBundle {
	t.Helper()
	ctx := context.Background()
	hs := httptest.NewUnstartedServer(nil)
	base := "http://" + hs.Listener.Addr().String()
	u, err := url.Parse(base)
	require.NoError(t, err)
	logs := &strings.Builder{}
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	svc := newTenantsService(t, logger, base)
	demoIdP := idp.NewTestServer(t)

	acct, err := svc.SignUp(ctx, "owner-"+uniq()+"@acme.example", testPassword)
	require.NoError(t, err)
	tn, err := svc.CreateTenant(ctx, acct.ID, "ap-"+uniq(), "Acme Corp")
	require.NoError(t, err)
	idpSecret := idp.DefaultLocksmithSecret
	_, err = svc.SaveIdP(ctx, tn.ID, tenants.IdPInput{Issuer: demoIdP.URL(), Preset: "generic", ClientID: idp.ClientLocksmith, ClientSecret: &idpSecret})
	require.NoError(t, err)

	inserter, err := river.NewClient(riverpgxv5.New(svc.DB().Pool()), &river.Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	vault, err := consent.NewVault(consent.VaultConfig{DB: svc.DB(), Sealer: svc.Sealer(), Inserter: inserter, Logger: logger})
	require.NoError(t, err)
	broker, err := consent.NewBroker(consent.BrokerConfig{Vault: vault, Upstreams: svc, Egress: svc.Egress(), Logger: logger,
		ConsentURL: func(_ context.Context, _ uuid.UUID, up tenants.Upstream, scopes []string) string {
			return consent.ConsentURL(base, tn.Slug, up.Slug, scopes)
		}})
	require.NoError(t, err)
	ap, err := approvals.New(approvals.Config{DB: svc.DB(), Sealer: svc.Sealer(), Egress: svc.Egress(), Jobs: inserter, Logger: logger, BaseURL: base})
	require.NoError(t, err)

	s, err := New(Config{Logger: logger, BaseURL: u, Ready: fakeReady{}, Registry: NewRegistry(), Tenants: svc, Consent: broker,
		Approvals: ap, MCP: http.NotFoundHandler()})
	require.NoError(t, err)
	hs.Config.Handler = s
	hs.Start()
	t.Cleanup(hs.Close)
	return &apBundle{euBundle: &euBundle{srv: s, base: base, svc: svc, broker: broker, idp: demoIdP, tenant: tn, logs: logs}, approvals: ap}
}

// request holds a call of subject (a demo user) to a destructive tool for
// approval in tenant tn and returns it.
func (b *apBundle) request(t *testing.T, tn tenants.Tenant, subject string, args any) approvals.Request {
	t.Helper()
	u, ok := b.idp.LookupUser(subject)
	require.True(t, ok, subject)
	rq, created, err := b.approvals.Request(context.Background(), tn.ID, approvals.NewRequest{
		Tool: "deleteTask", Upstream: "acme-tasks", Risk: "destructive", Args: args,
		Requester: approvals.Person{Issuer: b.idp.URL(), Subject: u.Subject, Email: u.Email},
		Agent:     "claude-desktop", Rule: "destructive tool", Reason: "deleteTask is destructive: it needs 2 approvals",
		RequestID: "req-" + uniq(),
	})
	require.NoError(t, err)
	require.True(t, created)
	return rq
}

func (b *apBundle) page(id uuid.UUID) string {
	return "/t/" + b.tenant.Slug + "/approvals/" + id.String()
}

// signedInAt returns a browser signed in as username, landing on path.
func (b *apBundle) signedInAt(t *testing.T, path, username string) (*euBrowser, resp) {
	t.Helper()
	br := b.browser(t)
	r := br.signIn(path, username)
	require.Equal(t, http.StatusOK, r.status, r.body)
	return br, r
}

func (b *apBundle) get(t *testing.T, id uuid.UUID) approvals.Request {
	t.Helper()
	rq, err := b.approvals.Get(context.Background(), b.tenant.ID, id)
	require.NoError(t, err)
	return rq
}

func vote(decision, reason string) url.Values {
	return url.Values{"decision": {decision}, "reason": {reason}}
}

func TestApproverSignInRequired(t *testing.T) {
	t.Parallel()
	b := setupApprover(t)
	rq := b.request(t, b.tenant, idp.UserEngineer, map[string]any{"id": "t-1"})
	br := b.browser(t)
	r := br.get(b.page(rq.ID))
	require.Equal(t, http.StatusSeeOther, r.status)
	require.Equal(t, br.abs("/t/"+b.tenant.Slug+"/auth/signin?next="+url.QueryEscape(b.page(rq.ID))), r.location)
	r = br.post(b.page(rq.ID)+"/vote", vote("approve", ""))
	require.Equal(t, http.StatusSeeOther, r.status)
	require.Contains(t, r.location, "/auth/signin?next=")
	require.Zero(t, b.get(t, rq.ID).Approvals)

	// Sign-in comes back to the request.
	r = br.signIn(b.page(rq.ID), idp.UsernameApprover)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Equal(t, br.abs(b.page(rq.ID)), r.url)
	require.Contains(t, r.body, `data-testid="approver-approve"`)
}

func TestApproverRequesterSeesNoButtons(t *testing.T) {
	t.Parallel()
	b := setupApprover(t)
	rq := b.request(t, b.tenant, idp.UserEngineer, map[string]any{"id": "t-1"})
	br, r := b.signedInAt(t, b.page(rq.ID), idp.UsernameEngineer)
	require.Contains(t, r.body, `data-viewer="requester"`)
	require.Contains(t, r.body, "You asked for this; two other people must approve")
	require.NotContains(t, r.body, `data-testid="approver-approve"`)
	require.NotContains(t, r.body, `data-testid="approver-form"`)
	require.Contains(t, r.body, "engineer@acme.example")
	require.Contains(t, r.body, "claude-desktop")
	require.Contains(t, r.body, "deleteTask")
	require.Contains(t, r.body, "destructive tool")
	require.Contains(t, r.body, "0 of 2")

	r = br.post(b.page(rq.ID)+"/vote", vote("approve", "I need this"))
	require.Equal(t, http.StatusForbidden, r.status)
	require.Contains(t, r.body, "Your vote was not recorded.")
	require.Zero(t, b.get(t, rq.ID).Approvals)

	// An approver who asked for a call can't approve it either.
	own := b.request(t, b.tenant, idp.UserApprover, map[string]any{"id": "t-2"})
	abr, r := b.signedInAt(t, b.page(own.ID), idp.UsernameApprover)
	require.Contains(t, r.body, `data-viewer="requester"`)
	require.NotContains(t, r.body, `data-testid="approver-approve"`)
	r = abr.post(b.page(own.ID)+"/vote", vote("approve", ""))
	require.Equal(t, http.StatusForbidden, r.status)
	require.Contains(t, r.body, "You can&#39;t vote on your own request.")
	require.Zero(t, b.get(t, own.ID).Approvals)
	require.Empty(t, b.get(t, own.ID).Votes)
}

func TestApproverNonApproverRefused(t *testing.T) {
	t.Parallel()
	b := setupApprover(t)
	rq := b.request(t, b.tenant, idp.UserEngineer, map[string]any{"id": "t-1"})
	br, r := b.signedInAt(t, b.page(rq.ID), idp.UsernameFinance)
	require.Contains(t, r.body, `data-viewer="outsider"`)
	require.Contains(t, r.body, "You&#39;re not an approver for this tenant")
	require.NotContains(t, r.body, `data-testid="approver-approve"`)
	r = br.post(b.page(rq.ID)+"/vote", vote("approve", ""))
	require.Equal(t, http.StatusForbidden, r.status)
	require.Contains(t, r.body, "approvers")
	r = br.post(b.page(rq.ID)+"/vote", vote("reject", "no"))
	require.Equal(t, http.StatusForbidden, r.status)
	got := b.get(t, rq.ID)
	require.Equal(t, approvals.StatusPending, got.Status)
	require.Empty(t, got.Votes)

	// The list shows them their own requests only, and says why.
	r = br.get("/t/" + b.tenant.Slug + "/approvals")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `data-testid="approver-outsider"`)
	require.Contains(t, r.body, `data-testid="approver-list-empty"`)
}

func TestApproverTwoApprovals(t *testing.T) {
	t.Parallel()
	b := setupApprover(t)
	rq := b.request(t, b.tenant, idp.UserEngineer, map[string]any{"id": "t-1"})

	first, r := b.signedInAt(t, b.page(rq.ID), idp.UsernameApprover)
	require.Contains(t, r.body, `data-viewer="approver"`)
	require.Contains(t, r.body, `data-testid="approver-approve"`)
	require.Contains(t, r.body, `data-testid="approver-reject"`)
	r = first.post(b.page(rq.ID)+"/vote", vote("approve", "checked with the team"))
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Equal(t, first.abs(b.page(rq.ID)+"?done=approved"), r.location)
	got := b.get(t, rq.ID)
	require.Equal(t, 1, got.Approvals)
	require.Equal(t, approvals.StatusPending, got.Status)
	r = first.follow(r, nil)
	require.Contains(t, r.body, "Your approval was recorded.")
	require.Contains(t, r.body, "1 of 2")
	require.Contains(t, r.body, `data-viewer="voted"`)
	require.Contains(t, r.body, "checked with the team")
	require.NotContains(t, r.body, `data-testid="approver-approve"`)

	// Voting twice is refused.
	r = first.post(b.page(rq.ID)+"/vote", vote("approve", ""))
	require.Equal(t, http.StatusConflict, r.status)
	require.Contains(t, r.body, "You have already voted on this request.")
	require.Equal(t, 1, b.get(t, rq.ID).Approvals)

	// The list shows the request to the second approver.
	second, r := b.signedInAt(t, "/t/"+b.tenant.Slug+"/approvals", idp.UsernameApprover2)
	require.Contains(t, r.body, `data-id="`+rq.ID.String()+`"`)
	require.Contains(t, r.body, b.page(rq.ID))
	r = second.post(b.page(rq.ID)+"/vote", vote("approve", ""))
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	got = b.get(t, rq.ID)
	require.Equal(t, approvals.StatusApproved, got.Status)
	require.Equal(t, 2, got.Approvals)
	r = second.follow(r, nil)
	require.Contains(t, r.body, `data-status="approved"`)
	require.Contains(t, r.body, "Approved by approver@acme.example and approver2@acme.example")

	// Decided: nobody can vote any more; the list no longer has it.
	third, r := b.signedInAt(t, b.page(rq.ID), idp.UsernameApprover2)
	require.NotContains(t, r.body, `data-testid="approver-approve"`)
	r = third.get("/t/" + b.tenant.Slug + "/approvals")
	require.NotContains(t, r.body, rq.ID.String())
}

func TestApproverRejectWithReason(t *testing.T) {
	t.Parallel()
	b := setupApprover(t)
	rq := b.request(t, b.tenant, idp.UserEngineer, map[string]any{"id": "t-1"})
	br, _ := b.signedInAt(t, b.page(rq.ID), idp.UsernameApprover)

	// A rejection needs a reason; the form says so under the field.
	r := br.post(b.page(rq.ID)+"/vote", vote("reject", "  "))
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.Contains(t, r.body, `data-testid="approver-reason-error"`)
	require.Contains(t, r.body, "Say why you reject the request.")
	require.Equal(t, approvals.StatusPending, b.get(t, rq.ID).Status)

	// An unknown decision records nothing.
	r = br.post(b.page(rq.ID)+"/vote", vote("maybe", "hmm"))
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Empty(t, b.get(t, rq.ID).Votes)

	r = br.post(b.page(rq.ID)+"/vote", vote("reject", "this task is still in use"))
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	got := b.get(t, rq.ID)
	require.Equal(t, approvals.StatusRejected, got.Status)
	require.Equal(t, "this task is still in use", got.RejectionReason)
	r = br.follow(r, nil)
	require.Contains(t, r.body, `data-status="rejected"`)
	require.Contains(t, r.body, "this task is still in use")

	// It is over for everyone.
	other, r := b.signedInAt(t, b.page(rq.ID), idp.UsernameApprover2)
	require.NotContains(t, r.body, `data-testid="approver-approve"`)
	require.Contains(t, r.body, "Rejected by approver@acme.example")
	r = other.post(b.page(rq.ID)+"/vote", vote("approve", ""))
	require.Equal(t, http.StatusConflict, r.status)
	require.Contains(t, r.body, "This request is already rejected.")
	require.Equal(t, approvals.StatusRejected, b.get(t, rq.ID).Status)
}

func TestApproverCrossSitePost(t *testing.T) {
	t.Parallel()
	b := setupApprover(t)
	rq := b.request(t, b.tenant, idp.UserEngineer, map[string]any{"id": "t-1"})
	br, _ := b.signedInAt(t, b.page(rq.ID), idp.UsernameApprover)
	for _, h := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
		{"Sec-Fetch-Site": "", "Origin": "https://evil.example"},
	} {
		r := br.do(http.MethodPost, b.page(rq.ID)+"/vote", vote("approve", ""), h)
		require.Equal(t, http.StatusForbidden, r.status, h)
	}
	require.Empty(t, b.get(t, rq.ID).Votes)
}

func TestApproverOtherTenantNotFound(t *testing.T) {
	t.Parallel()
	b := setupApprover(t)
	ctx := context.Background()
	acct, err := b.svc.SignUp(ctx, "owner-"+uniq()+"@other.example", testPassword)
	require.NoError(t, err)
	other, err := b.svc.CreateTenant(ctx, acct.ID, "ap-other-"+uniq(), "Other Corp")
	require.NoError(t, err)
	theirs := b.request(t, other, idp.UserEngineer, map[string]any{"id": "t-9"})
	ours := b.request(t, b.tenant, idp.UserEngineer, map[string]any{"id": "t-1"})

	br, _ := b.signedInAt(t, b.page(ours.ID), idp.UsernameApprover)
	for _, path := range []string{b.page(theirs.ID), "/t/" + b.tenant.Slug + "/approvals/not-a-uuid", b.page(uuid.New())} {
		r := br.get(path)
		require.Equal(t, http.StatusNotFound, r.status, path)
		require.Contains(t, r.body, "Approval request not found")
		require.NotContains(t, r.body, "t-9")
	}
	r := br.post(b.page(theirs.ID)+"/vote", vote("approve", ""))
	require.Equal(t, http.StatusNotFound, r.status)
	got, err := b.approvals.Get(ctx, other.ID, theirs.ID)
	require.NoError(t, err)
	require.Empty(t, got.Votes)
	r = br.get("/t/" + b.tenant.Slug + "/approvals")
	require.NotContains(t, r.body, theirs.ID.String())
}

func TestApproverArgumentsInert(t *testing.T) {
	t.Parallel()
	b := setupApprover(t)
	long := strings.Repeat("x", 500)
	rq := b.request(t, b.tenant, idp.UserEngineer, json.RawMessage(`{"id": "<script>alert(1)</script>",
		"note": "\"><img src=x onerror=alert(2)>", "body": "`+long+`", "count": 12345678901234567890}`))
	_, r := b.signedInAt(t, b.page(rq.ID), idp.UsernameApprover)
	require.NotContains(t, r.body, "<script>alert(1)")
	require.NotContains(t, r.body, "<img src=x")
	require.Contains(t, r.body, "&lt;script&gt;alert(1)&lt;/script&gt;")
	require.Contains(t, r.body, "12345678901234567890", "numbers keep every digit")
	// A long value is folded, with the whole of it one click away.
	require.Contains(t, r.body, `data-testid="json-fold"`)
	require.Contains(t, r.body, "&#34;"+long+"&#34;")
	require.Contains(t, r.body, "500 characters")
}
