package egress

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults applied by [NewBreakers] to zero-valued [BreakerOptions] fields.
const (
	// DefaultBreakerThreshold is how many consecutive failed calls open a
	// circuit.
	DefaultBreakerThreshold = 5
	// DefaultBreakerCoolDown is how long a circuit stays open before one
	// probe call is let through.
	DefaultBreakerCoolDown = 30 * time.Second
	// DefaultMaxInFlight is how many calls may be in flight to one key at
	// once.
	DefaultMaxInFlight = 64
	// DefaultInFlightWait is how long a call waits for a free slot when
	// DefaultMaxInFlight calls are already in flight.
	DefaultInFlightWait = 2 * time.Second
)

// Sentinels of [*UnavailableError]; test with errors.Is.
var (
	// ErrCircuitOpen means the circuit of the key is open (or a probe is
	// under way): the call was refused without contacting the upstream.
	ErrCircuitOpen = errors.New("egress: circuit open")
	// ErrTooBusy means MaxInFlight calls to the key were already in flight
	// and none finished within InFlightWait (or the caller's context).
	ErrTooBusy = errors.New("egress: too many calls in flight")
)

// maxBreakers is the number of keys past which idle closed breakers are
// dropped when a new key arrives.
const maxBreakers = 50_000

// staleProbe is how long a half-open circuit waits for its probe's result
// before letting another probe through (a safety net for a permit whose
// Done is never called; calls are bounded well below it).
const staleProbe = 2 * time.Minute

// BreakerOptions configures [Breakers]. Zero fields take the defaults;
// negative values are an error.
type BreakerOptions struct {
	// Threshold is how many consecutive Unhealthy verdicts open a circuit.
	// Zero means DefaultBreakerThreshold (5).
	Threshold int
	// CoolDown is how long a circuit stays open before one probe is let
	// through. Zero means DefaultBreakerCoolDown (30 s).
	CoolDown time.Duration
	// MaxInFlight bounds the calls in flight to one key at once. Zero means
	// DefaultMaxInFlight (64).
	MaxInFlight int
	// InFlightWait is how long a call waits for a slot when MaxInFlight
	// calls are in flight, at most until its context ends. Zero means
	// DefaultInFlightWait (2 s).
	InFlightWait time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Breakers is a set of circuit breakers, each with a concurrency bound,
// one per key (for Locksmith, a tenant's upstream). It is in-process state:
// every instance keeps its own. It is safe for concurrent use.
//
// Each key's circuit is a three-state machine:
//
//	          Threshold consecutive Unhealthy verdicts
//	closed ─────────────────────────────────────────────▶ open
//	  ▲                                                    │
//	  │ the probe is Healthy          CoolDown over: the   │
//	  │                               next caller is       ▼
//	  └───────────────────────────────────────────── half-open
//	                     the probe is Unhealthy ─▶ open again
//
// While open, and while the one probe of a half-open circuit is in flight,
// [Breakers.Acquire] refuses at once with an [*UnavailableError] wrapping
// [ErrCircuitOpen]; nothing is sent upstream. Verdicts of calls admitted
// before the circuit last changed state are ignored, so a burst of calls
// that were already in flight cannot reopen a circuit its probe has just
// closed.
//
// Independently of the circuit, at most MaxInFlight calls per key hold a
// slot at once; a call that finds none waits at most InFlightWait (or until
// its context ends) and is then refused with [ErrTooBusy]. This keeps one
// slow upstream from holding every goroutine and connection.
//
// The closed path takes no lock of its own beyond a read lock on the key
// map and the slot channel, and allocates nothing.
type Breakers[K comparable] struct {
	c  *core
	mu sync.RWMutex
	m  map[K]*breaker
}

// core is what every breaker of a set shares.
type core struct {
	opts  BreakerOptions
	opens atomic.Uint64
}

// NewBreakers validates opts, applies the defaults and returns an empty set.
func NewBreakers[K comparable](opts BreakerOptions) (*Breakers[K], error) {
	if opts.Threshold < 0 || opts.CoolDown < 0 || opts.MaxInFlight < 0 || opts.InFlightWait < 0 {
		return nil, errors.New("egress: new breakers: limits and durations must not be negative")
	}
	opts.Threshold = orDefault(opts.Threshold, DefaultBreakerThreshold)
	opts.CoolDown = orDefault(opts.CoolDown, DefaultBreakerCoolDown)
	opts.MaxInFlight = orDefault(opts.MaxInFlight, DefaultMaxInFlight)
	opts.InFlightWait = orDefault(opts.InFlightWait, DefaultInFlightWait)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Breakers[K]{c: &core{opts: opts}, m: make(map[K]*breaker)}, nil
}

// Options returns the options in effect, defaults applied.
func (s *Breakers[K]) Options() BreakerOptions { return s.c.opts }

// Opens counts how many times any circuit of the set has opened (a probe
// that fails counts again).
func (s *Breakers[K]) Opens() uint64 { return s.c.opens.Load() }

// Acquire admits one call to key, or refuses it with an [*UnavailableError]
// (ErrCircuitOpen or ErrTooBusy) before the caller contacts the upstream.
// An admitted call must end with exactly one [Permit.Done].
func (s *Breakers[K]) Acquire(ctx context.Context, key K) (Permit, error) {
	b := s.get(key)
	p := Permit{b: b, gen: b.gen.Load()}
	if b.state.Load() != stateClosed {
		var err error
		if p, err = b.admit(); err != nil {
			return Permit{}, err
		}
	}
	if err := b.takeSlot(ctx); err != nil {
		if p.probe {
			b.settleProbe(p, Verdict{})
		}
		return Permit{}, err
	}
	return p, nil
}

func (s *Breakers[K]) get(key K) *breaker {
	s.mu.RLock()
	b := s.m[key]
	s.mu.RUnlock()
	if b != nil {
		return b
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b = s.m[key]; b != nil {
		return b
	}
	if len(s.m) >= maxBreakers {
		for k, v := range s.m {
			if v.idle() {
				delete(s.m, k)
			}
		}
	}
	b = &breaker{c: s.c, slots: make(chan struct{}, s.c.opts.MaxInFlight)}
	s.m[key] = b
	return b
}

// Circuit states.
const (
	stateClosed int32 = iota
	stateOpen
	stateHalfOpen
)

// breaker is one key's circuit and slots. state, fails and gen are read
// without mu on the closed path; every state change happens under mu and
// bumps gen.
type breaker struct {
	c     *core
	slots chan struct{}
	state atomic.Int32
	fails atomic.Int32
	gen   atomic.Uint64

	mu        sync.Mutex
	openUntil time.Time
	openFor   time.Duration
	probeAt   time.Time
}

// idle reports whether b holds nothing worth keeping.
func (b *breaker) idle() bool {
	return b.state.Load() == stateClosed && b.fails.Load() == 0 && len(b.slots) == 0
}

// admit decides a call to a circuit that was not closed when looked at.
func (b *breaker) admit() (Permit, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.c.opts.Now()
	switch b.state.Load() {
	case stateClosed:
		return Permit{b: b, gen: b.gen.Load()}, nil
	case stateHalfOpen:
		if now.Sub(b.probeAt) < staleProbe {
			return Permit{}, b.openError(time.Second, true)
		}
	default: // open
		if now.Before(b.openUntil) {
			return Permit{}, b.openError(b.openUntil.Sub(now), false)
		}
	}
	// The open period is over (or the last probe never reported): this
	// caller is the one probe.
	b.state.Store(stateHalfOpen)
	b.probeAt = now
	return Permit{b: b, gen: b.gen.Add(1), probe: true}, nil
}

// takeSlot claims one of the key's MaxInFlight slots, waiting at most
// InFlightWait or until ctx ends.
func (b *breaker) takeSlot(ctx context.Context) error {
	select {
	case b.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(b.c.opts.InFlightWait)
	defer t.Stop()
	select {
	case b.slots <- struct{}{}:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	return &UnavailableError{Err: ErrTooBusy, RetryAfter: time.Second, InFlight: b.c.opts.MaxInFlight}
}

// trip opens a closed circuit, unless a newer state replaced the one the
// verdict's call was admitted under.
func (b *breaker) trip(p Permit) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gen.Load() != p.gen || b.state.Load() != stateClosed {
		return false
	}
	b.open()
	return true
}

// open moves b to open for CoolDown; b.mu is held.
func (b *breaker) open() {
	d := b.c.opts.CoolDown
	b.state.Store(stateOpen)
	b.openUntil = b.c.opts.Now().Add(d)
	b.openFor = d
	b.fails.Store(0)
	b.gen.Add(1)
	b.c.opens.Add(1)
}

// settleProbe applies the probe's verdict and reports whether it opened
// the circuit again.
func (b *breaker) settleProbe(p Permit, v Verdict) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gen.Load() != p.gen || b.state.Load() != stateHalfOpen {
		return false
	}
	switch v.kind {
	case verdictHealthy:
		b.state.Store(stateClosed)
		b.fails.Store(0)
		b.gen.Add(1)
	case verdictUnhealthy:
		b.open()
		return true
	default:
		// No verdict (the caller gave up, or nothing was sent): back to
		// open with the open period already over, so the next caller
		// probes.
		b.state.Store(stateOpen)
		b.gen.Add(1)
	}
	return false
}

// openError describes the open circuit; b.mu is held.
func (b *breaker) openError(retry time.Duration, probing bool) *UnavailableError {
	return &UnavailableError{Err: ErrCircuitOpen, RetryAfter: retry, OpenFor: b.openFor, Failures: b.c.opts.Threshold, Probing: probing}
}

// Permit is one admitted call. Its zero value is a no-op.
type Permit struct {
	b     *breaker
	gen   uint64
	probe bool
}

// Probe reports whether this call is the one probe of a half-open circuit.
func (p Permit) Probe() bool { return p.probe }

// Done frees the call's slot and feeds its verdict to the circuit. It must
// be called exactly once per admitted call, whatever happened; it reports
// whether this verdict opened the circuit (for a log line or a metric).
func (p Permit) Done(v Verdict) (opened bool) {
	b := p.b
	if b == nil {
		return false
	}
	select {
	case <-b.slots:
	default:
	}
	if p.probe {
		return b.settleProbe(p, v)
	}
	if b.gen.Load() != p.gen {
		return false // admitted under an earlier state: its news is stale
	}
	switch v.kind {
	case verdictHealthy:
		if b.fails.Load() != 0 {
			b.fails.Store(0)
		}
	case verdictUnhealthy:
		if b.fails.Add(1) >= int32(b.c.opts.Threshold) {
			return b.trip(p)
		}
	}
	return false
}

// Verdict is what one call says about its upstream's health. The zero
// value is no verdict: the call is ignored (the caller gave up, or the
// request was refused before anything was sent).
type Verdict struct {
	kind uint8
}

const (
	verdictNone uint8 = iota
	verdictHealthy
	verdictUnhealthy
)

// Healthy is the verdict of a call the upstream answered (2xx, 3xx, 4xx
// other than 429): it resets the consecutive-failure count, and closes a
// half-open circuit.
func Healthy() Verdict { return Verdict{kind: verdictHealthy} }

// Unhealthy is the verdict of a call the upstream failed: connection
// refused or reset, timeout, DNS or TLS failure, 5xx.
func Unhealthy() Verdict { return Verdict{kind: verdictUnhealthy} }

// Failed reports whether the verdict counts against the upstream.
func (v Verdict) Failed() bool { return v.kind == verdictUnhealthy }

// String names the verdict: none, healthy or unhealthy.
func (v Verdict) String() string {
	switch v.kind {
	case verdictHealthy:
		return "healthy"
	case verdictUnhealthy:
		return "unhealthy"
	}
	return "none"
}

// Judge is the verdict of one HTTP exchange made through a [Client]: resp
// and err as http.Client.Do returned them (or err alone for a failure
// reading the body). A cancelled context and the guard's own refusals
// (forbidden target, invalid URL, redirect rules) are no verdict; a body
// over the size cap means the upstream answered (Healthy); any other error
// is Unhealthy. A 5xx is Unhealthy, a 429 no verdict, anything else
// Healthy. A 429 is not the upstream being down, and it is often one
// user's limit (rate limits per token are common, and Locksmith calls with
// each user's own token): letting it open a circuit shared by every user
// would let one busy user stop everyone's calls. The 429 and its
// Retry-After reach the caller instead.
func Judge(resp *http.Response, err error) Verdict {
	if err != nil {
		switch {
		case errors.Is(err, context.Canceled),
			errors.Is(err, ErrForbiddenTarget), errors.Is(err, ErrInvalidURL),
			errors.Is(err, ErrInsecureRedirect), errors.Is(err, ErrTooManyRedirects):
			return Verdict{}
		case errors.Is(err, ErrResponseTooLarge):
			return Healthy()
		}
		return Unhealthy()
	}
	if resp == nil {
		return Verdict{}
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return Verdict{}
	case resp.StatusCode >= 500:
		return Unhealthy()
	}
	return Healthy()
}

// RetryAfter reads a Retry-After header (delay-seconds or an HTTP date
// relative to now); zero when absent, malformed or not in the future.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// UnavailableError is a call [Breakers.Acquire] refused: nothing was sent
// upstream. It is temporary; RetryAfter says when a retry may be admitted.
type UnavailableError struct {
	// Err is ErrCircuitOpen or ErrTooBusy.
	Err error
	// RetryAfter is how long until a retry may be admitted: the rest of
	// the open period, or about a second while a probe is under way or
	// the slots are full.
	RetryAfter time.Duration
	// OpenFor is the whole open period (ErrCircuitOpen).
	OpenFor time.Duration
	// Failures is the consecutive-failure threshold that opened the
	// circuit.
	Failures int
	// Probing says the circuit is half-open and its one probe is in flight.
	Probing bool
	// InFlight is the bound that was full (ErrTooBusy).
	InFlight int
}

// Error describes the refusal for logs; it names no key.
func (e *UnavailableError) Error() string {
	switch {
	case errors.Is(e.Err, ErrTooBusy):
		return fmt.Sprintf("egress: %d calls already in flight", e.InFlight)
	case e.Probing:
		return "egress: circuit half-open, probe in flight"
	}
	return fmt.Sprintf("egress: circuit open for %s after %d consecutive failures (retry in %s)", e.OpenFor, e.Failures, e.RetryAfter.Round(time.Second))
}

// Unwrap returns Err.
func (e *UnavailableError) Unwrap() error { return e.Err }

// Temporary reports true: the refusal ends by itself.
func (e *UnavailableError) Temporary() bool { return true }
