package audit

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// DecisionsPerDayAt is DecisionsPerDay as if the time were now, for tests
// of the default range.
func (s *Store) DecisionsPerDayAt(ctx context.Context, tenantID uuid.UUID, f Filter, now time.Time) ([]DayDecisions, error) {
	return s.decisionsPerDay(ctx, tenantID, f, now)
}
