// Package approvals implements the two-person rule for destructive tool
// calls (and any call a policy condition holds for approval).
//
// A request is bound to the SHA-256 of (tool, canonical JSON of the
// arguments, requester issuer + subject, agent client id): see [Bind]. The
// agent's retry with exactly those arguments, by the same user through the
// same agent, consumes the approval once; any other arguments don't match.
//
//	           Vote(approve) × N distinct approvers
//	pending ─────────────────────────────────────▶ approved ──Consume──▶ used
//	   │  \                                            │
//	   │   └── Vote(reject, reason) ──▶ rejected      │
//	   └────────────── expires_at passes ─────────────┴──▶ expired
//
// Rules, each enforced under the request's row lock:
//   - approvers must be in the tenant's approver group (a group of the
//     tenant's IdP; the caller passes the signed-in approver's groups);
//   - the requester can never vote on their own request;
//   - each approver votes once, so N approvals are N distinct people;
//   - one rejection (with a reason) ends the request;
//   - requests expire (default 15 minutes, a tenant setting), approved or not;
//   - Consume flips approved → used atomically: of concurrent retries,
//     exactly one gets ok.
//
// At most one request per binding is active (pending or approved): asking
// again returns the existing one. A new request enqueues, in the same
// transaction, a River job ([WebhookArgs]) that the worker delivers with a
// [Notifier] to the tenant's webhook, signed with HMAC-SHA256 over
// "timestamp.body" in the header
//
//	Locksmith-Signature: t=1767225600,v1=<hex HMAC-SHA256(secret, "1767225600." + body)>
//
// (see [Sign] and [VerifySignature]); River retries failed deliveries.
// [Notifier.SendTest] sends one signed approval.test event ([TestPayload],
// no request data) on demand, through the same code and egress client, and
// reports the answer for the console's "Send a test event" button.
//
// What belongs here: approval requests, votes, their settings and the
// webhook. What does not: deciding that a call needs approval (package
// policy) and the pages approvers use (package web).
package approvals
