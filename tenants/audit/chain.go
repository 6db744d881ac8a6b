package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	lsql "github.com/locksmithhq/locksmith/sql"
)

// ErrGap means sealing stopped at a missing event: one was deleted before it
// could be sealed. Verify names it.
var ErrGap = errors.New("audit: the trail has a gap")

// hashColumns are the audit_events columns an event digest covers, in
// order. Changing the list or its order is a new digest version.
const hashColumns = `seq, at, kind, request_id, user_issuer, user_subject, user_email, agent, act, tool,
	upstream, upstream_name, method, path_template, scopes, narrowed, decision, rule, reason, approval_id,
	intent_seq, status, latency_us, error, detail, request_body, response_body`

// v1Columns is how many of hashColumns the v1 digest covers. Events without
// bodies (request_body and response_body NULL) keep their v1 digest, so
// trails sealed before the body columns existed still verify; an event with
// either body is digested over every column under the v2 tag. Clearing a
// body therefore changes the digest too.
const v1Columns = 25

const (
	digestLen       = 16
	eventDigestTag  = "locksmith-audit-event-v1\x00"
	eventDigestTag2 = "locksmith-audit-event-v2\x00"
	sealHashTag     = "locksmith-audit-seal-v1\x00"
	maxProblems     = 1000
	maxSealsPerCall = 100
)

// digester computes event digests over the binary wire values of
// hashColumns, reusing one buffer.
type digester struct {
	tenant uuid.UUID
	buf    []byte
}

func (d *digester) digest(raw [][]byte) [digestLen]byte {
	tag := eventDigestTag
	if bodiesAbsent(raw) {
		raw = raw[:v1Columns]
	} else {
		tag = eventDigestTag2
	}
	b := append(d.buf[:0], tag...)
	b = append(b, d.tenant[:]...)
	for _, v := range raw {
		if v == nil {
			b = binary.BigEndian.AppendUint32(b, 0xFFFFFFFF)
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	d.buf = b
	sum := sha256.Sum256(b)
	var out [digestLen]byte
	copy(out[:], sum[:digestLen])
	return out
}

// bodiesAbsent reports whether every column after the v1 ones is NULL.
func bodiesAbsent(raw [][]byte) bool {
	for _, v := range raw[min(v1Columns, len(raw)):] {
		if v != nil {
			return false
		}
	}
	return true
}

// sealHash chains a batch to its predecessor.
func sealHash(tenant uuid.UUID, from, to int64, prev, digests []byte) []byte {
	h := sha256.New()
	h.Write([]byte(sealHashTag))
	h.Write(tenant[:])
	var n [16]byte
	binary.BigEndian.PutUint64(n[:8], uint64(from))
	binary.BigEndian.PutUint64(n[8:], uint64(to))
	h.Write(n[:])
	h.Write(prev)
	h.Write(digests)
	return h.Sum(nil)
}

// pgEpoch is PostgreSQL's timestamp epoch.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func binarySeq(v []byte) int64 { return int64(binary.BigEndian.Uint64(v)) }

func binaryTime(v []byte) time.Time {
	return pgEpoch.Add(time.Duration(int64(binary.BigEndian.Uint64(v))) * time.Microsecond)
}

// SealResult reports what Seal did.
type SealResult struct {
	// Batches and Events count the seals appended and the events they cover.
	Batches int
	Events  int64
	// ToSeq is the last sealed sequence number; Hash the newest seal's hash
	// (anchor it outside the database for stronger evidence).
	ToSeq int64
	Hash  []byte
}

// Seal appends seals for the tenant's committed events not yet sealed, in
// order, in batches of at most SealBatch events (up to 100 batches per
// call: call again while Events > 0). It stops at a missing event and
// returns an error wrapping ErrGap naming it. Concurrent sealers are safe:
// the loser of a race seals nothing.
func (s *Store) Seal(ctx context.Context, tenantID uuid.UUID) (SealResult, error) {
	var res SealResult
	var gapErr error
	err := s.inSnapshot(ctx, tenantID, false, func(tx pgx.Tx) error {
		prev := make([]byte, sha256.Size)
		var lastTo int64
		err := tx.QueryRow(ctx, "SELECT to_seq, hash FROM audit_seals WHERE tenant_id = $1 ORDER BY to_seq DESC LIMIT 1", tenantID).Scan(&lastTo, &prev)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		res.ToSeq, res.Hash = lastTo, prev
		var head int64
		err = tx.QueryRow(ctx, "SELECT next_seq FROM audit_heads WHERE tenant_id = $1", tenantID).Scan(&head)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && head-1 <= lastTo) {
			return nil
		}
		if err != nil {
			return err
		}
		upto := min(head-1, lastTo+int64(s.sealBatch)*maxSealsPerCall)
		rows, err := tx.Query(ctx, "SELECT "+hashColumns+" FROM audit_events WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
			pgx.QueryResultFormats{pgx.BinaryFormatCode}, tenantID, lastTo, upto)
		if err != nil {
			return err
		}
		type batch struct {
			from, to int64
			digests  []byte
			lastAt   time.Time
		}
		var batches []*batch
		var cur *batch
		d := &digester{tenant: tenantID}
		expected := lastTo + 1
		for rows.Next() {
			raw := rows.RawValues()
			seq := binarySeq(raw[0])
			if seq != expected {
				gapErr = fmt.Errorf("%w: event %d is missing (deleted before it was sealed)", ErrGap, expected)
				break
			}
			if cur == nil || cur.to-cur.from+1 >= int64(s.sealBatch) {
				cur = &batch{from: seq, digests: make([]byte, 0, digestLen*min(int64(s.sealBatch), upto-seq+1))}
				batches = append(batches, cur)
			}
			dg := d.digest(raw)
			cur.digests = append(cur.digests, dg[:]...)
			cur.to = seq
			if at := binaryTime(raw[1]); at.After(cur.lastAt) {
				cur.lastAt = at
			}
			expected++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if gapErr == nil && expected <= upto {
			gapErr = fmt.Errorf("%w: event %d is missing (deleted before it was sealed)", ErrGap, expected)
		}
		for _, b := range batches {
			h := sealHash(tenantID, b.from, b.to, prev, b.digests)
			if _, err := tx.Exec(ctx, `INSERT INTO audit_seals (tenant_id, from_seq, to_seq, prev_hash, hash, digests, last_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7)`, tenantID, b.from, b.to, prev, h, b.digests, b.lastAt); err != nil {
				return err
			}
			prev = h
			res.Batches++
			res.Events += b.to - b.from + 1
			res.ToSeq, res.Hash = b.to, h
		}
		return nil
	})
	if err != nil {
		if errors.Is(lsql.Translate(err), lsql.ErrConflict) || isSerialization(err) {
			// Another sealer got there first.
			return SealResult{}, nil
		}
		return SealResult{}, fmt.Errorf("audit: seal tenant %s: %w", tenantID, lsql.Translate(err))
	}
	if gapErr != nil {
		return res, fmt.Errorf("audit: seal tenant %s: %w", tenantID, gapErr)
	}
	return res, nil
}

// SealAll seals every tenant completely and returns the events sealed. It
// carries on past a failing tenant and returns the errors joined.
func (s *Store) SealAll(ctx context.Context) (int64, error) {
	ts, err := s.Tenants(ctx)
	if err != nil {
		return 0, err
	}
	var total int64
	var errs []error
	for _, t := range ts {
		for {
			res, err := s.Seal(ctx, t.ID)
			total += res.Events
			if err != nil {
				errs = append(errs, fmt.Errorf("tenant %s: %w", t.Slug, err))
				break
			}
			if res.Events == 0 {
				break
			}
			s.logger.InfoContext(ctx, "audit sealed", "tenant_id", t.ID, "events", res.Events, "to_seq", res.ToSeq, "hash", fmt.Sprintf("%x", res.Hash))
		}
	}
	return total, errors.Join(errs...)
}

// Problem kinds reported by Verify.
const (
	ProblemEdited   = "edited"
	ProblemDeleted  = "deleted"
	ProblemInserted = "inserted"
	ProblemSeal     = "seal"
)

// Problem is one finding of Verify, naming the event (or the first event of
// the seal) by sequence number.
type Problem struct {
	Seq    int64  `json:"seq"`
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

// String reads "event 17 edited: …".
func (p Problem) String() string {
	if p.Kind == ProblemSeal {
		return fmt.Sprintf("seal starting at event %d: %s", p.Seq, p.Detail)
	}
	return fmt.Sprintf("event %d %s: %s", p.Seq, p.Kind, p.Detail)
}

// Report is the result of verifying one tenant's trail.
type Report struct {
	Tenant TenantRef
	// Events is the number of event rows read; Sealed how many lie in live
	// (unpurged) seals; Seals the number of seals.
	Events int64
	Sealed int64
	Seals  int
	// Head is the newest seal's hash.
	Head []byte
	// Problems lists findings in sequence order, at most 1000;
	// MoreProblems counts the rest.
	Problems     []Problem
	MoreProblems int64
	Duration     time.Duration
}

// OK reports whether the trail verified.
func (r Report) OK() bool { return len(r.Problems) == 0 && r.MoreProblems == 0 }

func (r *Report) add(p Problem) {
	if len(r.Problems) >= maxProblems {
		r.MoreProblems++
		return
	}
	r.Problems = append(r.Problems, p)
}

type sealRow struct {
	from, to   int64
	prev, hash []byte
	digests    []byte
	purged     bool
	// bad seals don't match their own digests: their events can't be
	// checked against them (the seal is reported instead).
	bad bool
}

// Verify recomputes the tenant's chain in one snapshot and reports every
// edited, deleted or inserted event and every altered seal. It returns an
// error only when the trail can't be read; findings are in the Report.
func (s *Store) Verify(ctx context.Context, tenantID uuid.UUID) (Report, error) {
	start := time.Now()
	rep := Report{Tenant: TenantRef{ID: tenantID}}
	err := s.inSnapshot(ctx, tenantID, true, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT from_seq, to_seq, prev_hash, hash, digests, purged_at IS NOT NULL
			FROM audit_seals WHERE tenant_id = $1 ORDER BY from_seq`, tenantID)
		if err != nil {
			return err
		}
		seals, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sealRow, error) {
			var sr sealRow
			err := r.Scan(&sr.from, &sr.to, &sr.prev, &sr.hash, &sr.digests, &sr.purged)
			return sr, err
		})
		if err != nil {
			return err
		}
		var head int64 = 1
		err = tx.QueryRow(ctx, "SELECT next_seq FROM audit_heads WHERE tenant_id = $1", tenantID).Scan(&head)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		s.verifySeals(&rep, tenantID, seals, head)

		// Missing numbers in [a, b] are deletions, except inside purged seals.
		missing := func(a, b int64) {
			for q := a; q <= b; q++ {
				if i := findSeal(seals, q); i >= 0 && seals[i].purged {
					q = seals[i].to
					continue
				}
				if len(rep.Problems) >= maxProblems {
					rep.MoreProblems += b - q + 1
					return
				}
				rep.add(Problem{Seq: q, Kind: ProblemDeleted, Detail: "the event is missing"})
			}
		}
		rows, err = tx.Query(ctx, "SELECT "+hashColumns+" FROM audit_events WHERE tenant_id = $1 ORDER BY seq",
			pgx.QueryResultFormats{pgx.BinaryFormatCode}, tenantID)
		if err != nil {
			return err
		}
		defer rows.Close()
		d := &digester{tenant: tenantID}
		next := int64(1)
		si := 0
		for rows.Next() {
			raw := rows.RawValues()
			seq := binarySeq(raw[0])
			rep.Events++
			if seq < 1 || seq >= head {
				rep.add(Problem{Seq: seq, Kind: ProblemInserted, Detail: "the audit writer never allocated this number"})
				continue
			}
			missing(next, seq-1)
			next = seq + 1
			for si < len(seals) && seals[si].to < seq {
				si++
			}
			if si >= len(seals) || seals[si].from > seq {
				continue // not sealed yet
			}
			sr := &seals[si]
			if sr.purged {
				rep.add(Problem{Seq: seq, Kind: ProblemInserted, Detail: "the event lies in a purged batch"})
				continue
			}
			off := (seq - sr.from) * digestLen
			if sr.bad || off+digestLen > int64(len(sr.digests)) {
				continue // the seal itself is reported
			}
			dg := d.digest(raw)
			if !bytes.Equal(dg[:], sr.digests[off:off+digestLen]) {
				rep.add(Problem{Seq: seq, Kind: ProblemEdited, Detail: "its contents differ from the sealed digest"})
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		missing(next, head-1)
		return nil
	})
	if err != nil {
		return Report{}, fmt.Errorf("audit: verify tenant %s: %w", tenantID, lsql.Translate(err))
	}
	sort.SliceStable(rep.Problems, func(i, j int) bool { return rep.Problems[i].Seq < rep.Problems[j].Seq })
	rep.Duration = time.Since(start)
	return rep, nil
}

// verifySeals checks each seal's link to its predecessor and its hash over
// its stored digests.
func (s *Store) verifySeals(rep *Report, tenantID uuid.UUID, seals []sealRow, head int64) {
	prev := make([]byte, sha256.Size)
	expect := int64(1)
	for i := range seals {
		sr := &seals[i]
		rep.Seals++
		switch {
		case sr.from != expect:
			rep.add(Problem{Seq: sr.from, Kind: ProblemSeal, Detail: fmt.Sprintf("seals are not contiguous: expected a seal starting at event %d", expect)})
		case !bytes.Equal(sr.prev, prev):
			rep.add(Problem{Seq: sr.from, Kind: ProblemSeal, Detail: "the seal does not chain to the previous seal"})
		}
		if sr.to >= head {
			rep.add(Problem{Seq: sr.from, Kind: ProblemSeal, Detail: fmt.Sprintf("the seal covers events up to %d, beyond the last allocated %d", sr.to, head-1)})
		}
		if !sr.purged {
			switch {
			case int64(len(sr.digests)) != (sr.to-sr.from+1)*digestLen:
				sr.bad = true
				rep.add(Problem{Seq: sr.from, Kind: ProblemSeal, Detail: "the seal's digest list has the wrong length"})
			case !bytes.Equal(sealHash(tenantID, sr.from, sr.to, sr.prev, sr.digests), sr.hash):
				sr.bad = true
				rep.add(Problem{Seq: sr.from, Kind: ProblemSeal, Detail: fmt.Sprintf("the seal of events %d–%d was altered", sr.from, sr.to)})
			default:
				rep.Sealed += sr.to - sr.from + 1
			}
		}
		prev = sr.hash
		expect = sr.to + 1
		rep.Head = sr.hash
	}
}

// findSeal returns the index of the seal covering seq, or -1.
func findSeal(seals []sealRow, seq int64) int {
	i := sort.Search(len(seals), func(i int) bool { return seals[i].to >= seq })
	if i < len(seals) && seals[i].from <= seq {
		return i
	}
	return -1
}

// VerifyAll verifies every tenant (or those with the given slugs) and
// returns one report per tenant, by slug.
func (s *Store) VerifyAll(ctx context.Context, slugs ...string) ([]Report, error) {
	ts, err := s.Tenants(ctx, slugs...)
	if err != nil {
		return nil, err
	}
	out := make([]Report, 0, len(ts))
	for _, t := range ts {
		rep, err := s.Verify(ctx, t.ID)
		if err != nil {
			return out, err
		}
		rep.Tenant = t
		out = append(out, rep)
	}
	return out, nil
}

func isSerialization(err error) bool {
	return err != nil && (containsCode(err, "40001") || containsCode(err, "40P01"))
}
