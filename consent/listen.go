package consent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Start connects the broker's listener (a dedicated connection, outside the
// pool, LISTENing on NotifyChannel) and returns once it listens, then keeps
// it in the background: notifications drop the grant's cache entries; a lost
// connection is re-established with backoff (1 s doubling to 30 s), and the
// whole cache is dropped on reconnect, since notifications may have been
// missed. The same goroutine writes last_used_at and sweeps expired entries
// every FlushInterval. Start fails if the first connection fails; Close stops it.
func (b *Broker) Start(ctx context.Context) error {
	b.runMu.Lock()
	defer b.runMu.Unlock()
	if b.started {
		return errors.New("consent: broker already started")
	}
	conn, err := b.listen(ctx)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.cancel, b.done, b.started = cancel, make(chan struct{}), true
	go b.run(rctx, conn)
	return nil
}

// Close stops the listener, flushes last_used_at once more and waits for
// the revocations after use in flight (AfterUse; each bounded by
// RefreshTimeout). It is safe to call more than once, and without Start.
func (b *Broker) Close() {
	b.runMu.Lock()
	cancel, done := b.cancel, b.done
	b.cancel = nil
	b.runMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	b.afterMu.Lock()
	b.afterClosed = true
	b.afterMu.Unlock()
	b.afterWG.Wait()
}

func (b *Broker) listen(ctx context.Context) (*pgx.Conn, error) {
	cfg := b.vault.db.Pool().Config().ConnConfig.Copy()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("consent: listen for grant changes: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("consent: listen for grant changes: %w", err)
	}
	return conn, nil
}

func (b *Broker) run(ctx context.Context, conn *pgx.Conn) {
	defer close(b.done)
	flush := func() { b.flushUsage(context.WithoutCancel(ctx)) }
	defer flush()
	ticker := time.NewTicker(b.flush)
	defer ticker.Stop()
	notes := make(chan string, 64)
	backoff := time.Second
	for {
		// Wait for notifications on conn in a goroutine, so the ticker and
		// ctx are served meanwhile.
		lost := make(chan error, 1)
		readerDone := make(chan struct{})
		wctx, stop := context.WithCancel(ctx)
		go func() {
			defer close(readerDone)
			for {
				n, err := conn.WaitForNotification(wctx)
				if err != nil {
					lost <- err
					return
				}
				select {
				case notes <- n.Payload:
				case <-wctx.Done():
					lost <- wctx.Err()
					return
				}
			}
		}()
		err := b.serve(ctx, ticker.C, notes, lost, flush)
		stop()
		<-readerDone // the connection is not safe for concurrent use
		_ = conn.Close(context.Background())
		if ctx.Err() != nil {
			return
		}
		b.logger.WarnContext(ctx, "grant listener lost its connection", "err", err)
		for {
			sleep := backoff/2 + rand.N(backoff/2+1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(sleep):
			}
			backoff = min(backoff*2, 30*time.Second)
			if conn, err = b.listen(ctx); err == nil {
				break
			}
			b.logger.WarnContext(ctx, "grant listener reconnect failed", "err", err)
		}
		backoff = time.Second
		b.cache.invalidateAll()
		b.logger.InfoContext(ctx, "grant listener reconnected; cache dropped")
	}
}

// serve handles notifications and ticks until the connection is lost or ctx ends.
func (b *Broker) serve(ctx context.Context, tick <-chan time.Time, notes <-chan string, lost <-chan error, flush func()) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-lost:
			return err
		case p := <-notes:
			b.handleNote(p)
		case <-tick:
			flush()
		}
	}
}

// handleNote drops the cache entries of the grant named by a notification
// ("tenant_id:grant_id").
func (b *Broker) handleNote(payload string) {
	_, g, ok := strings.Cut(payload, ":")
	id, err := uuid.Parse(g)
	if !ok || err != nil {
		b.logger.Warn("malformed grant notification")
		return
	}
	b.cache.invalidateGrant(id)
}

// maxUnwritten bounds the grant uses kept for the next flush while the
// database is away; past it the oldest are dropped (last_used_at is then
// older than the real last use).
const maxUnwritten = 10000

// flushUsage sweeps the cache and records last_used_at of the grants used
// since the last flush, with the uses an earlier flush could not write.
// Only the run goroutine calls it.
func (b *Broker) flushUsage(ctx context.Context) {
	used := append(b.unwritten, b.cache.sweep(b.now().UnixNano())...)
	failed := b.writeUsage(ctx, used)
	if n := len(failed) - maxUnwritten; n > 0 {
		b.logger.WarnContext(ctx, "grant uses not recorded: the database has been away too long", "dropped", n)
		failed = failed[n:]
	}
	b.unwritten = failed
}

// writeUsage records last_used_at of the grants in used and returns those
// whose write failed (a tenant's whole batch), for the next flush.
func (b *Broker) writeUsage(ctx context.Context, used []usage) []usage {
	byTenant := map[uuid.UUID][]uuid.UUID{}
	latest := map[uuid.UUID]int64{}
	for _, u := range used {
		byTenant[u.tenantID] = append(byTenant[u.tenantID], u.grantID)
		latest[u.tenantID] = max(latest[u.tenantID], u.at)
	}
	var failed []usage
	for tenantID, ids := range byTenant {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := b.vault.touchUsed(ctx, tenantID, ids, time.Unix(0, latest[tenantID]))
		cancel()
		if err != nil {
			b.logger.WarnContext(ctx, "record grant use; kept for the next flush", "tenant_id", tenantID, "err", err)
			for _, u := range used {
				if u.tenantID == tenantID {
					failed = append(failed, u)
				}
			}
		}
	}
	return failed
}
