package tenants

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// ToolsAfter lists up to limit of the tenant's tools whose name sorts after
// after (byte order; "" starts at the first), by name, for keyset
// pagination in the admin API. upstreamID, when not uuid.Nil, keeps only
// that upstream's tools. Read-only.
func (s *Service) ToolsAfter(ctx context.Context, tenantID, upstreamID uuid.UUID, after string, limit int) ([]Tool, error) {
	var out []Tool
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT "+toolColumns+toolFrom+`WHERE t.tenant_id = $1
			AND ($2::uuid IS NULL OR t.upstream_id = $2) AND t.name COLLATE "C" > $3
			ORDER BY t.name COLLATE "C" LIMIT $4`, tenantID, nilUUID(upstreamID), after, limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Tool, error) { return scanTool(r) })
		return err
	})
	return out, err
}

// UpstreamsAfter lists up to limit of the tenant's upstreams whose slug
// sorts after after (byte order; "" starts at the first), by slug, for
// keyset pagination in the admin API. Read-only.
func (s *Service) UpstreamsAfter(ctx context.Context, tenantID uuid.UUID, after string, limit int) ([]Upstream, error) {
	var out []Upstream
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT "+upstreamColumns+` FROM upstreams WHERE tenant_id = $1
			AND slug COLLATE "C" > $2 ORDER BY slug COLLATE "C" LIMIT $3`, tenantID, after, limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Upstream, error) { return scanUpstream(r) })
		return err
	})
	return out, err
}

// nilUUID is nil for uuid.Nil, so that SQL sees NULL.
func nilUUID(id uuid.UUID) any {
	if id == uuid.Nil {
		return nil
	}
	return id
}
