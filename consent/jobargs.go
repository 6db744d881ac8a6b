package consent

import (
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
)

// QueueGrants is the River queue of grant jobs, apart from the default
// queue so that a refresh wave can't starve other jobs (and only clients
// that registered the grant workers fetch them).
const QueueGrants = "grants"

// RefreshJobArgs asks for a grant's tokens to be refreshed before the access
// token expires. The vault enqueues one, scheduled with jitter, in the
// transaction of every write of a fresh access token; it is unique per
// (grant, version), so a job for an outdated version does nothing. The
// worker lives in package jobs and calls Broker.RefreshGrant.
type RefreshJobArgs struct {
	TenantID   uuid.UUID `json:"tenant_id" river:"unique"`
	GrantID    uuid.UUID `json:"grant_id" river:"unique"`
	UpstreamID uuid.UUID `json:"upstream_id"`
	Version    int64     `json:"version" river:"unique"`
}

// Kind is River's job kind.
func (RefreshJobArgs) Kind() string { return "grant_refresh" }

// InsertOpts makes the job unique per grant version and bounds its retries:
// a grant whose refresh keeps failing is refreshed on demand by Token
// instead, and invalid_grant ends the job at once (needs_reauth).
func (RefreshJobArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueGrants, MaxAttempts: 8, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// RevokeJobArgs asks for the token kept in a grant_revocations row to be
// revoked at the upstream (RFC 7009). The vault enqueues it in the
// transaction that destroys the grant's tokens, and, scheduled
// RevokeAfterUseBackstop later, in the one that keeps a single-use token
// before Broker.Token hands it out. The worker lives in package jobs and
// calls Broker.RevokeAtUpstream.
type RevokeJobArgs struct {
	TenantID     uuid.UUID `json:"tenant_id" river:"unique"`
	RevocationID uuid.UUID `json:"revocation_id" river:"unique"`
}

// Kind is River's job kind.
func (RevokeJobArgs) Kind() string { return "grant_revoke_upstream" }

// InsertOpts makes the job unique per revocation; retries back off for
// about a day before River discards the job (Purge then drops the row).
func (RevokeJobArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueGrants, MaxAttempts: 15, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// refreshRunAt picks when to refresh an access token expiring at exp: ahead
// of expiry by a quarter of its lifetime (at most ahead), minus a random
// jitter of up to half that margin, so that grants issued in the same second
// don't all refresh in the same second.
func refreshRunAt(now, exp time.Time, ahead time.Duration, jitter func(time.Duration) time.Duration) time.Time {
	life := exp.Sub(now)
	if life <= 0 {
		return now
	}
	margin := min(ahead, life/4)
	at := exp.Add(-margin)
	if margin > 1 {
		at = at.Add(-jitter(margin / 2))
	}
	if at.Sub(now) < riverSchedulerHorizon {
		return now
	}
	return at
}

// riverSchedulerHorizon is how far ahead River's scheduler (every 5 s, not
// configurable in River v0.51) makes scheduled jobs available: a job due
// sooner than that after its insert may wait for the scheduler's next run,
// up to 5 s past its time. Refreshes due that soon run at once instead
// (at most 5 s early; enqueueRefresh inserts them with no ScheduledAt).
const riverSchedulerHorizon = 5 * time.Second
