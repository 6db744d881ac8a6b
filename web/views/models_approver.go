package views

// Approver pages: where the tenant's approvers, signed in through the
// tenant's IdP, approve or reject a call held for two-person approval. They
// use the end-user frame (branded, one centred card, no console chrome).

// Viewer roles on the approver page: what the signed-in person may do.
const (
	// ViewerApprover may vote (in the approver group, not the requester,
	// has not voted yet).
	ViewerApprover = "approver"
	// ViewerRequester asked for the call and can never vote on it.
	ViewerRequester = "requester"
	// ViewerVoted has already voted on this request.
	ViewerVoted = "voted"
	// ViewerOutsider is not in the tenant's approver group.
	ViewerOutsider = "outsider"
)

// ApproverPage is the model of /t/{tenant}/approvals/{id}.
type ApproverPage struct {
	Frame EndUserFrame
	ID    string
	// Status is pending, approved, used, rejected or expired (expired as
	// of now, even before the job marks it); StatusLabel says it in words.
	Status      string
	StatusLabel string
	Tool        string
	// Risk is read, write or destructive.
	Risk string
	// Upstream is the upstream's name (its slug when it no longer exists).
	Upstream string
	// Requester is who asked (email, else subject); RequesterSubject is
	// their IdP subject, shown when it differs.
	Requester        string
	RequesterSubject string
	// Agent is the agent's client id ("" when unknown); ActingFor is the
	// delegation chain, joined.
	Agent     string
	ActingFor string
	Args      []JSONLine
	// Rule and PolicyReason are the policy rule that required approval and
	// what it said.
	Rule         string
	PolicyReason string
	Approvals    int
	Required     int
	Votes        []ApproverVote
	Requested    string
	// ExpiresIn is relative ("in 14 minutes", "3 minutes ago"); ExpiresAt
	// absolute (UTC) and ExpiresISO machine-readable.
	ExpiresIn  string
	ExpiresAt  string
	ExpiresISO string
	// Decided says when the request was approved or rejected ("" while pending).
	Decided string
	// Outcome says, for a decided, used or expired request, how it ended.
	Outcome string
	// Viewer is one of the Viewer* roles; ViewerNote says what it means
	// for this request.
	Viewer     string
	ViewerNote string
	// ApproverGroup is the IdP group whose members may vote.
	ApproverGroup string
	// Notice is a fixed success message after a vote ("" for none).
	Notice string
	// Problem says why a vote was not recorded ("" for none).
	Problem string
	// Reason is the reason as typed (kept when a vote is refused);
	// ReasonError is the error under the field.
	Reason      string
	ReasonError string
	VoteAction  string
	ListHref    string
}

// CanVote reports whether the page shows Approve / Reject.
func (p ApproverPage) CanVote() bool { return p.Viewer == ViewerApprover && p.Status == "pending" }

// Pending reports whether the request still waits for approvers.
func (p ApproverPage) Pending() bool { return p.Status == "pending" }

// PolicyTail is ": " and what the rule said, or "" when it said nothing.
func (p ApproverPage) PolicyTail() string {
	if p.PolicyReason == "" {
		return ""
	}
	return ": " + p.PolicyReason
}

// Tone is the outcome's alert style.
func (p ApproverPage) Tone() string {
	switch p.Status {
	case "approved", "used":
		return "success"
	case "rejected":
		return "error"
	}
	return "warning"
}

// ApproverVote is one approver's decision, as the approver page shows it.
type ApproverVote struct {
	Approver string
	Approve  bool
	Reason   string
	When     string
	At       string
	// Mine marks the signed-in person's own vote.
	Mine bool
}

// ApproverListPage is the model of /t/{tenant}/approvals: the requests
// waiting for approvers.
type ApproverListPage struct {
	Frame EndUserFrame
	// IsApprover says the signed-in person is in the approver group; when
	// not, Rows are only their own pending requests.
	IsApprover    bool
	ApproverGroup string
	Rows          []ApproverRow
	// NextHref is the next page ("" on the last); FirstHref the first
	// ("" on the first).
	NextHref  string
	FirstHref string
}

// ApproverRow is one pending request in the approver's list.
type ApproverRow struct {
	ID        string
	Href      string
	Tool      string
	Risk      string
	Upstream  string
	Requester string
	Agent     string
	Approvals int
	Required  int
	Requested string
	ExpiresIn string
	// Mine marks the signed-in person's own request.
	Mine bool
}
