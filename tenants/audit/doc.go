// Package audit is Locksmith's audit trail: who (user) asked, through which
// agent, to call which tool on which upstream, with which scopes, what the
// policy decided and why, and what happened upstream. It is durable,
// append-only, tamper-evident and searchable.
//
// # Writing
//
// The MCP layer records each tools/call with [Writer.Intent] before it
// calls the upstream, and [Writer.Outcome] after. Intent returns only once
// the event is committed: no upstream call without a committed intent. A
// process that dies between the two leaves a call without outcome, reported
// as "unknown". Denials and approval holds are recorded with Intent too and
// need no outcome.
//
// Writes are group-committed: a few flusher goroutines (a tenant always
// maps to the same one) take every event queued while their previous
// transaction committed and write them in one transaction (one multi-row
// INSERT per tenant, sequence numbers taken from the tenant's head row),
// and each caller waits for its own batch's COMMIT, WAL flush included. A
// batch whose transaction certainly did not commit because the connection
// was lost (a database restart or failover) is written again for up to
// WriterConfig.RetryFor; one that may have committed never is. The queue
// is bounded; a full queue blocks callers (back-pressure) until their
// context ends.
//
// # Append-only
//
// The application role may only SELECT and INSERT audit_events and
// audit_seals: PostgreSQL refuses its UPDATE and DELETE (42501). Retention is
// enforced by the SECURITY DEFINER function audit_purge, owned by the
// migrating role, which deletes only whole sealed batches older than the
// tenant's retention (at least 7 days) and keeps their seals.
//
// # Tamper evidence
//
// Each tenant's events carry a sequence number allocated under a row lock
// held until COMMIT, so numbers commit in order and without gaps. [Store.Seal]
// (run by a periodic job) cuts the committed, not yet sealed events into
// batches and appends one audit_seals row per batch:
//
//	digest(event) = SHA-256("locksmith-audit-event-v1" ‖ tenant ‖ each column as length ‖ binary value)[:16]
//	hash(batch)   = SHA-256("locksmith-audit-seal-v1" ‖ tenant ‖ from ‖ to ‖ prev hash ‖ digests)
//
// (events carrying a request or response body — recorded, redacted by
// [Redact], only for tools with log_bodies — use the "-v2" tag and also cover
// both body columns; events without bodies keep the v1 digest) where prev
// hash is the previous batch's hash (32 zero bytes for the
// first). [Store.Verify] re-reads everything in one snapshot and reports, by
// sequence number, every event whose digest changed (edited), every number
// missing (deleted), every row the writer never allocated (inserted), and
// every seal that no longer matches its digests or its predecessor. A purge
// keeps the seal rows, so the chain still verifies from its first batch.
// Anchoring the newest seal hash outside the database (the seal job logs it)
// extends the guarantee to someone able to rewrite both events and seals.
//
// # Reading
//
// [Store.Query] filters by user, agent, tool, upstream, decision and time
// range with keyset pagination (an opaque cursor); [Store.ExportCSV] and
// [Store.ExportJSONL] stream the same selection; [Store.DecisionsPerDay]
// counts it per UTC day and decision, for charts; [Sentence] renders an
// event for people.
//
// What belongs here: the audit tables, their writer, sealing, verification,
// retention and queries. What does not: deciding (package policy) or
// approvals (package approvals).
package audit
