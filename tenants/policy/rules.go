package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants"
)

// NotifyChannel is the PostgreSQL channel on which rule changes are
// announced; the payload is the tenant id.
const NotifyChannel = "locksmith_policy"

// Agent defaults.
const (
	// AgentAllow lets any agent call tools (the allow-list is not consulted).
	AgentAllow = "allow"
	// AgentDeny lets only agents on the allow-list call tools.
	AgentDeny = "deny"
)

// DefaultApprovals is the number of distinct approvers a destructive call
// needs unless the tool or tenant says otherwise.
const DefaultApprovals = 2

// Settings are a tenant's policy settings.
type Settings struct {
	// AgentDefault is AgentAllow (default) or AgentDeny.
	AgentDefault string
	// ApprovalsDefault is N for destructive tools without their own N (1–10, default 2).
	ApprovalsDefault int
	// TimeZone is the IANA zone conditions see as tz (default "UTC").
	TimeZone  string
	UpdatedAt time.Time
}

// DefaultSettings are the settings of a tenant that saved none.
func DefaultSettings() Settings {
	return Settings{AgentDefault: AgentAllow, ApprovalsDefault: DefaultApprovals, TimeZone: "UTC"}
}

// Agent is an entry of the tenant's agent allow-list.
type Agent struct {
	ClientID  string
	Note      string
	CreatedAt time.Time
}

// KillKind says what a kill switch stops.
type KillKind string

// Kill switch kinds.
const (
	KillAgent    KillKind = "agent"    // Value is the agent's client id
	KillUser     KillKind = "user"     // Issuer and Value (the subject) name the user
	KillUpstream KillKind = "upstream" // Value is the upstream's slug
)

// KillSwitch denies every call matching it while it exists.
type KillSwitch struct {
	Kind KillKind
	// Issuer is the user's IdP issuer (KillUser only).
	Issuer string
	// Value is the client id, subject or upstream slug.
	Value     string
	Reason    string
	CreatedBy string
	CreatedAt time.Time
}

type killKey struct {
	kind          KillKind
	issuer, value string
}

// rules is one tenant's cached rules.
type rules struct {
	loaded   time.Time
	settings Settings
	agents   map[string]bool
	kills    map[killKey]bool
}

// Listening reports whether the Engine is connected to the notification
// channel (and therefore caching rules).
func (e *Engine) Listening() bool { return e.listening.Load() }

// Run listens for rule changes until ctx ends, reconnecting with backoff,
// and returns nil when ctx is done. While it is connected, tenant rules are
// cached; otherwise every decision reads them from the database.
func (e *Engine) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		started := time.Now()
		err := e.listen(ctx)
		e.listening.Store(false)
		e.dropAll()
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		e.logger.WarnContext(ctx, "policy listener disconnected; rules are read from the database until it reconnects", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (e *Engine) listen(ctx context.Context) error {
	pc, err := e.db.Pool().Acquire(ctx)
	if err != nil {
		return fmt.Errorf("policy: listen: %w", err)
	}
	conn := pc.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return fmt.Errorf("policy: listen: %w", err)
	}
	// Anything cached before now may have missed notifications.
	e.dropAll()
	e.listening.Store(true)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("policy: wait for notification: %w", err)
		}
		id, err := uuid.Parse(n.Payload)
		if err != nil {
			e.dropAll()
			continue
		}
		e.invalidate(id)
	}
}

func (e *Engine) invalidate(tenantID uuid.UUID) {
	e.mu.Lock()
	e.gen[tenantID]++
	delete(e.rules, tenantID)
	e.mu.Unlock()
}

func (e *Engine) dropAll() {
	e.mu.Lock()
	e.epoch++
	clear(e.rules)
	e.mu.Unlock()
}

// tenantRules returns the tenant's rules, from the cache when the listener
// is connected and the entry is fresh.
func (e *Engine) tenantRules(ctx context.Context, tenantID uuid.UUID) (*rules, error) {
	caching := e.listening.Load()
	var gen, epoch uint64
	if caching {
		e.mu.Lock()
		r := e.rules[tenantID]
		gen, epoch = e.gen[tenantID], e.epoch
		e.mu.Unlock()
		if r != nil && time.Since(r.loaded) < RulesTTL {
			return r, nil
		}
	}
	r, err := e.load(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	if caching {
		e.mu.Lock()
		// Store only if no invalidation happened while loading.
		if e.gen[tenantID] == gen && e.epoch == epoch && e.listening.Load() {
			e.rules[tenantID] = r
		}
		e.mu.Unlock()
	}
	return r, nil
}

func (e *Engine) load(ctx context.Context, tenantID uuid.UUID) (*rules, error) {
	r := &rules{loaded: time.Now(), agents: map[string]bool{}, kills: map[killKey]bool{}}
	err := e.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		if r.settings, err = settings(ctx, tx); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT client_id FROM policy_agents")
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, id := range ids {
			r.agents[id] = true
		}
		rows, err = tx.Query(ctx, "SELECT kind, issuer, value FROM policy_kill_switches")
		if err != nil {
			return err
		}
		var k killKey
		_, err = pgx.ForEachRow(rows, []any{&k.kind, &k.issuer, &k.value}, func() error {
			r.kills[k] = true
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("policy: load rules of tenant %s: %w", tenantID, lsql.Translate(err))
	}
	return r, nil
}

func settings(ctx context.Context, tx pgx.Tx) (Settings, error) {
	s := DefaultSettings()
	err := tx.QueryRow(ctx, "SELECT agent_default, approvals_default, time_zone, updated_at FROM policy_settings").
		Scan(&s.AgentDefault, &s.ApprovalsDefault, &s.TimeZone, &s.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return DefaultSettings(), nil
	}
	return s, err
}

// Settings returns the tenant's policy settings (the defaults if it saved none).
func (e *Engine) Settings(ctx context.Context, tenantID uuid.UUID) (Settings, error) {
	var s Settings
	err := e.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		s, err = settings(ctx, tx)
		return err
	})
	if err != nil {
		return Settings{}, fmt.Errorf("policy: settings of tenant %s: %w", tenantID, lsql.Translate(err))
	}
	return s, nil
}

// SaveSettings validates and stores the tenant's policy settings. Invalid
// input gives a *tenants.Error naming the field (agent_default,
// approvals_default, time_zone). Every instance sees the change within the
// notification latency.
func (e *Engine) SaveSettings(ctx context.Context, tenantID uuid.UUID, s Settings) (Settings, error) {
	if s.AgentDefault != AgentAllow && s.AgentDefault != AgentDeny {
		return Settings{}, tenants.Invalid("agent_default", `must be "allow" or "deny"`)
	}
	if s.ApprovalsDefault < 1 || s.ApprovalsDefault > 10 {
		return Settings{}, tenants.Invalid("approvals_default", "must be between 1 and 10")
	}
	if s.TimeZone == "" {
		s.TimeZone = "UTC"
	}
	if _, err := time.LoadLocation(s.TimeZone); err != nil || strings.EqualFold(s.TimeZone, "local") {
		return Settings{}, tenants.Invalid("time_zone", fmt.Sprintf("unknown time zone %q: use an IANA name such as Europe/Paris", s.TimeZone))
	}
	err := e.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO policy_settings (tenant_id, agent_default, approvals_default, time_zone)
			VALUES ($1, $2, $3, $4)
			ON CONFLICT (tenant_id) DO UPDATE SET agent_default = EXCLUDED.agent_default,
				approvals_default = EXCLUDED.approvals_default, time_zone = EXCLUDED.time_zone, updated_at = now()
			RETURNING updated_at`, tenantID, s.AgentDefault, s.ApprovalsDefault, s.TimeZone).Scan(&s.UpdatedAt)
	})
	if err != nil {
		return Settings{}, fmt.Errorf("policy: save settings of tenant %s: %w", tenantID, lsql.Translate(err))
	}
	e.invalidate(tenantID)
	return s, nil
}

// Agents lists the tenant's agent allow-list, by client id.
func (e *Engine) Agents(ctx context.Context, tenantID uuid.UUID) ([]Agent, error) {
	var out []Agent
	err := e.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT client_id, note, created_at FROM policy_agents ORDER BY client_id")
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Agent, error) {
			var a Agent
			err := row.Scan(&a.ClientID, &a.Note, &a.CreatedAt)
			return a, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("policy: agents of tenant %s: %w", tenantID, lsql.Translate(err))
	}
	return out, nil
}

// AllowAgent adds (or updates the note of) an agent on the allow-list.
func (e *Engine) AllowAgent(ctx context.Context, tenantID uuid.UUID, clientID, note string) (Agent, error) {
	if err := checkText("client_id", clientID, 255, true); err != nil {
		return Agent{}, err
	}
	if err := checkText("note", note, 500, false); err != nil {
		return Agent{}, err
	}
	a := Agent{ClientID: clientID, Note: note}
	err := e.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO policy_agents (tenant_id, client_id, note) VALUES ($1, $2, $3)
			ON CONFLICT (tenant_id, client_id) DO UPDATE SET note = EXCLUDED.note
			RETURNING created_at`, tenantID, clientID, note).Scan(&a.CreatedAt)
	})
	if err != nil {
		return Agent{}, fmt.Errorf("policy: allow agent: %w", lsql.Translate(err))
	}
	e.invalidate(tenantID)
	return a, nil
}

// RemoveAgent takes an agent off the allow-list; ErrNotFound if it isn't on it.
func (e *Engine) RemoveAgent(ctx context.Context, tenantID uuid.UUID, clientID string) error {
	err := e.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM policy_agents WHERE tenant_id = $1 AND client_id = $2", tenantID, clientID)
		if err == nil && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("policy: remove agent: %w", lsql.Translate(err))
	}
	e.invalidate(tenantID)
	return nil
}

// KillSwitches lists the tenant's kill switches.
func (e *Engine) KillSwitches(ctx context.Context, tenantID uuid.UUID) ([]KillSwitch, error) {
	var out []KillSwitch
	err := e.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT kind, issuer, value, reason, created_by, created_at
			FROM policy_kill_switches ORDER BY kind, issuer, value`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (KillSwitch, error) {
			var k KillSwitch
			err := row.Scan(&k.Kind, &k.Issuer, &k.Value, &k.Reason, &k.CreatedBy, &k.CreatedAt)
			return k, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("policy: kill switches of tenant %s: %w", tenantID, lsql.Translate(err))
	}
	return out, nil
}

// SetKillSwitch turns a kill switch on (or updates its reason). It takes
// effect on every instance within the notification latency.
func (e *Engine) SetKillSwitch(ctx context.Context, tenantID uuid.UUID, k KillSwitch) (KillSwitch, error) {
	switch k.Kind {
	case KillAgent, KillUpstream:
		k.Issuer = ""
	case KillUser:
		if err := checkText("issuer", k.Issuer, 500, true); err != nil {
			return KillSwitch{}, err
		}
	default:
		return KillSwitch{}, tenants.Invalid("kind", `must be "agent", "user" or "upstream"`)
	}
	if err := checkText("value", k.Value, 500, true); err != nil {
		return KillSwitch{}, err
	}
	if err := checkText("reason", k.Reason, 500, false); err != nil {
		return KillSwitch{}, err
	}
	err := e.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO policy_kill_switches (tenant_id, kind, issuer, value, reason, created_by)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (tenant_id, kind, issuer, value) DO UPDATE SET reason = EXCLUDED.reason
			RETURNING created_by, created_at`, tenantID, k.Kind, k.Issuer, k.Value, k.Reason, k.CreatedBy).Scan(&k.CreatedBy, &k.CreatedAt)
	})
	if err != nil {
		return KillSwitch{}, fmt.Errorf("policy: set kill switch: %w", lsql.Translate(err))
	}
	e.invalidate(tenantID)
	return k, nil
}

// ClearKillSwitch turns a kill switch off; ErrNotFound if it isn't on.
func (e *Engine) ClearKillSwitch(ctx context.Context, tenantID uuid.UUID, kind KillKind, issuer, value string) error {
	if kind != KillUser {
		issuer = ""
	}
	err := e.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM policy_kill_switches
			WHERE tenant_id = $1 AND kind = $2 AND issuer = $3 AND value = $4`, tenantID, kind, issuer, value)
		if err == nil && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("policy: clear kill switch: %w", lsql.Translate(err))
	}
	e.invalidate(tenantID)
	return nil
}

func checkText(field, v string, max int, required bool) error {
	switch {
	case required && strings.TrimSpace(v) == "":
		return tenants.Invalid(field, "is required")
	case len(v) > max:
		return tenants.Invalid(field, fmt.Sprintf("must be at most %d characters", max))
	case !utf8.ValidString(v) || strings.ContainsAny(v, "\x00"):
		return tenants.Invalid(field, "contains invalid characters")
	}
	return nil
}
