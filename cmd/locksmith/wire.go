package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/locksmithhq/locksmith/consent"
	"github.com/locksmithhq/locksmith/jobs"
	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/tenants/approvals"
	"github.com/locksmithhq/locksmith/tenants/audit"
	"github.com/locksmithhq/locksmith/tenants/policy"
	"github.com/locksmithhq/locksmith/tenants/tokena"
	"github.com/locksmithhq/locksmith/web"
	webmcp "github.com/locksmithhq/locksmith/web/mcp"
)

// openDomain builds the domain services on top of the database, sealer,
// egress client and tenants service: the grant vault and token broker, the
// policy engine, the audit writer and store, approvals, and the River client
// with every worker. Background loops (the broker's and the policy engine's
// LISTEN connections) start here and stop in Close.
func (m *Main) openDomain(ctx context.Context, baseURL string) error {
	var err error
	// m.inserter (built in Open) enqueues jobs inside domain transactions.
	if m.Vault, err = consent.NewVault(consent.VaultConfig{DB: m.DB, Sealer: m.Sealer, Inserter: m.inserter, Logger: m.Logger}); err != nil {
		return err
	}
	svc := m.Tenants
	if m.Broker, err = consent.NewBroker(consent.BrokerConfig{
		Vault:     m.Vault,
		Upstreams: svc,
		Egress:    m.Egress,
		Exchange:  &idpExchange{svc: svc},
		ConsentURL: func(ctx context.Context, tenantID uuid.UUID, up tenants.Upstream, scopes []string) string {
			t, err := svc.TenantByID(ctx, tenantID)
			if err != nil {
				return ""
			}
			return consent.ConsentURL(baseURL, t.Slug, up.Slug, scopes)
		},
		Logger: m.Logger,
	}); err != nil {
		return err
	}
	if m.Policy, err = policy.New(policy.Config{DB: m.DB, Logger: m.Logger}); err != nil {
		return err
	}
	if m.Audit, err = audit.NewWriter(audit.WriterConfig{DB: m.DB, Logger: m.Logger}); err != nil {
		return err
	}
	if m.AuditLog, err = audit.New(audit.Config{DB: m.DB, Logger: m.Logger}); err != nil {
		return err
	}
	if m.Approval, err = approvals.New(approvals.Config{
		DB: m.DB, Sealer: m.Sealer, Egress: m.Egress, Jobs: m.inserter, Logger: m.Logger, BaseURL: baseURL,
	}); err != nil {
		return err
	}
	// The console's webhook test events go out through the same egress
	// client (SSRF guard) as the webhook job's deliveries.
	if m.ApprovalWebhook, err = approvals.NewNotifier(approvals.NotifierConfig{
		DB: m.DB, Sealer: m.Sealer, Egress: m.Egress, Logger: m.Logger, BaseURL: baseURL,
	}); err != nil {
		return err
	}
	if m.River, err = jobs.NewClient(jobs.Config{
		DB: m.DB, Sealer: m.Sealer, Logger: m.Logger, Work: m.Work,
		Egress: m.Egress, BaseURL: baseURL, Broker: m.Broker,
		Tenants: m.Tenants, Mailer: m.Mailer,
	}); err != nil {
		return err
	}

	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancelBg = cancel
	if err := m.Broker.Start(bg); err != nil {
		return fmt.Errorf("start token broker: %w", err)
	}
	go func() {
		if err := m.Policy.Run(bg); err != nil && bg.Err() == nil {
			m.Logger.Error("policy listener stopped", "err", err)
		}
	}()
	return nil
}

// openMCP builds the per-tenant MCP endpoint: Token A verified against each
// tenant's IdP, the policy engine with two-person approvals, the durable
// audit trail, Token B from the broker, upstreams called through the egress
// client.
func (m *Main) openMCP(verifier *tokena.Verifier) (*webmcp.Handler, error) {
	return webmcp.New(webmcp.Config{
		BaseURL:    m.Config.BaseURL,
		Logger:     m.Logger,
		Registry:   webmcp.TenantsRegistry{Service: m.Tenants},
		Verifier:   verifier,
		HTTPClient: m.Egress.HTTPClient(),
		Broker:     webmcp.ConsentBroker{Broker: m.Broker},
		Policy:     webmcp.PolicyEngine{Engine: m.Policy, Approvals: m.Approval},
		Audit:      webmcp.DurableAudit{Writer: m.Audit},
		Sealer:     m.Sealer,
	})
}

// metricsRegistry is the /metrics registry: the web server's collectors,
// the token broker's counters of revocations after use and the MCP
// endpoint's count of upstream circuits opened.
func metricsRegistry(b *consent.Broker, h *webmcp.Handler, w *audit.Writer, db *lsql.DB) *prometheus.Registry {
	reg := web.NewRegistry()
	reg.MustRegister(auditCollector{w}, &jobsCollector{db: db})
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "locksmith_upstream_circuit_opens_total",
		Help: "Times an upstream's circuit breaker opened on this instance (repeated failures: Locksmith stops calling it for the cool-down).",
	}, func() float64 { return float64(h.UpstreamCircuitOpens()) }))
	for result, read := range map[string]func(consent.AfterUseStats) int64{
		"revoked": func(s consent.AfterUseStats) int64 { return s.Revoked },
		"failed":  func(s consent.AfterUseStats) int64 { return s.Failed },
	} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "locksmith_token_revoke_after_use_total",
			Help:        "Single-use Token Bs (upstreams with revoke after use) revoked at the upstream after their call, by result.",
			ConstLabels: prometheus.Labels{"result": result},
		}, func() float64 { return float64(read(b.AfterUseStats())) }))
	}
	return reg
}

// auditCollector reports the audit writer's counters and commit waits.
// Alert on locksmith_audit_events_failed_total: a failed event is a tool
// call refused (intent) or an outcome not recorded.
type auditCollector struct{ w *audit.Writer }

var (
	auditEventsDesc = prometheus.NewDesc("locksmith_audit_events_total",
		"Audit events committed by this instance's writer.", nil, nil)
	auditBatchesDesc = prometheus.NewDesc("locksmith_audit_batches_total",
		"Audit write transactions committed by this instance's writer (group commit: events per batch = events / batches).", nil, nil)
	auditFailedDesc = prometheus.NewDesc("locksmith_audit_events_failed_total",
		"Audit events whose write failed (the call was refused, or its success withheld, and the agent told to retry).", nil, nil)
	auditQueuedDesc = prometheus.NewDesc("locksmith_audit_queued_events",
		"Audit events waiting for a write transaction now.", nil, nil)
	auditWaitDesc = prometheus.NewDesc("locksmith_audit_commit_wait_seconds",
		"How long a tool call waited for each of its audit events to commit (intent before the upstream call, outcome after).", nil, nil)
)

func (auditCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{auditEventsDesc, auditBatchesDesc, auditFailedDesc, auditQueuedDesc, auditWaitDesc} {
		ch <- d
	}
}

func (c auditCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.w.Stats()
	ch <- prometheus.MustNewConstMetric(auditEventsDesc, prometheus.CounterValue, float64(s.Events))
	ch <- prometheus.MustNewConstMetric(auditBatchesDesc, prometheus.CounterValue, float64(s.Batches))
	ch <- prometheus.MustNewConstMetric(auditFailedDesc, prometheus.CounterValue, float64(s.Failed))
	ch <- prometheus.MustNewConstMetric(auditQueuedDesc, prometheus.GaugeValue, float64(s.Queued))
	buckets := make(map[float64]uint64, len(audit.WaitBuckets))
	var n uint64
	for i, le := range audit.WaitBuckets {
		n += s.WaitCounts[i]
		buckets[le] = n
	}
	n += s.WaitCounts[len(audit.WaitBuckets)]
	ch <- prometheus.MustNewConstHistogram(auditWaitDesc, n, s.WaitSum, buckets)
}

// jobsCollector reports the job queues' health (jobs.ReadHealth), read at
// most every jobsHealthTTL however often /metrics is scraped. The figures
// are the database's, so every instance reports the same: aggregate with
// max(), not sum(). When the read fails, only locksmith_jobs_health_up (0)
// is reported.
type jobsCollector struct {
	db *lsql.DB

	mu   sync.Mutex
	at   time.Time
	last jobs.Health
	err  error
}

const (
	jobsHealthTTL     = 10 * time.Second
	jobsHealthTimeout = 2 * time.Second
)

var (
	jobsUpDesc = prometheus.NewDesc("locksmith_jobs_health_up",
		"1 if the job queues' state could be read from the database at the last try, else 0.", nil, nil)
	jobsWaitingDesc = prometheus.NewDesc("locksmith_jobs",
		"Jobs not finished, by queue and state (available, scheduled, retryable, running); the same on every instance.", []string{"queue", "state"}, nil)
	jobsOldestDueDesc = prometheus.NewDesc("locksmith_jobs_oldest_due_seconds",
		"How long the oldest due job of the queue has waited to start (0 when none is waiting): growth means the workers don't keep up.", []string{"queue"}, nil)
	jobsDiscardedDesc = prometheus.NewDesc("locksmith_jobs_discarded_24h",
		"Jobs River gave up on (attempts used up, or cancelled by their worker) in the last 24 hours, by kind: alert on increase.", []string{"kind"}, nil)
)

func (*jobsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{jobsUpDesc, jobsWaitingDesc, jobsOldestDueDesc, jobsDiscardedDesc} {
		ch <- d
	}
}

func (c *jobsCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if time.Since(c.at) >= jobsHealthTTL {
		ctx, cancel := context.WithTimeout(context.Background(), jobsHealthTimeout)
		c.last, c.err = jobs.ReadHealth(ctx, c.db)
		cancel()
		c.at = time.Now()
	}
	h, err := c.last, c.err
	c.mu.Unlock()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(jobsUpDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(jobsUpDesc, prometheus.GaugeValue, 1)
	queues := map[string]bool{}
	for _, q := range h.Waiting {
		queues[q.Queue] = true
		ch <- prometheus.MustNewConstMetric(jobsWaitingDesc, prometheus.GaugeValue, float64(q.Jobs), q.Queue, q.State)
	}
	for q := range h.OldestDue {
		queues[q] = true
	}
	for q := range queues {
		ch <- prometheus.MustNewConstMetric(jobsOldestDueDesc, prometheus.GaugeValue, h.OldestDue[q].Seconds(), q)
	}
	for kind, n := range h.Discarded {
		ch <- prometheus.MustNewConstMetric(jobsDiscardedDesc, prometheus.GaugeValue, float64(n), kind)
	}
}

// idpExchange finds a tenant's token-exchange client: Locksmith's OIDC client
// at the tenant IdP and the IdP's token endpoint (from discovery, cached).
type idpExchange struct {
	svc *tenants.Service

	mu    sync.Mutex
	cache map[string]cachedEndpoint
}

type cachedEndpoint struct {
	tokenURL string
	at       time.Time
}

// ExchangeClient implements consent.ExchangeClients.
func (x *idpExchange) ExchangeClient(ctx context.Context, tenantID uuid.UUID) (consent.ExchangeClient, error) {
	reg, err := x.svc.IdP(ctx, tenantID)
	if err != nil {
		return consent.ExchangeClient{}, fmt.Errorf("token exchange: the tenant has no identity provider registered: %w", err)
	}
	secret, err := x.svc.IdPClientSecret(ctx, tenantID)
	if err != nil {
		return consent.ExchangeClient{}, err
	}
	x.mu.Lock()
	c, ok := x.cache[reg.Issuer]
	x.mu.Unlock()
	if !ok || time.Since(c.at) > 10*time.Minute {
		check := x.svc.CheckIdP(ctx, reg.Issuer)
		if check.Found.TokenEndpoint == "" {
			return consent.ExchangeClient{}, fmt.Errorf("token exchange: the IdP's discovery document has no token endpoint (%v)", check.Problems)
		}
		c = cachedEndpoint{tokenURL: check.Found.TokenEndpoint, at: time.Now()}
		x.mu.Lock()
		if x.cache == nil {
			x.cache = map[string]cachedEndpoint{}
		}
		x.cache[reg.Issuer] = c
		x.mu.Unlock()
	}
	return consent.ExchangeClient{TokenURL: c.tokenURL, ClientID: reg.ClientID, ClientSecret: secret}, nil
}
