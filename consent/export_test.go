package consent

import "context"

// SetTestOptions sets the broker's test-only knobs on cfg: noSingleFlight
// turns off both the in-process single flight and the cross-instance lease
// (the guard test proves the concurrency test can fail); afterUpstream, when
// it returns an error, aborts a refresh right after the upstream answered and
// before anything is written, as if the process had been killed.
func SetTestOptions(cfg *BrokerConfig, noSingleFlight bool, afterUpstream func() error) {
	cfg.noSingleFlight = noSingleFlight
	cfg.afterUpstream = afterUpstream
}

// CacheLen reports the number of cache entries.
func (b *Broker) CacheLen() int { return b.cache.len() }

// FlushUsage runs one last_used_at flush (as the run goroutine does) with
// ctx, and reports how many grant uses are kept for the next one.
func (b *Broker) FlushUsage(ctx context.Context) int {
	b.flushUsage(ctx)
	return len(b.unwritten)
}
