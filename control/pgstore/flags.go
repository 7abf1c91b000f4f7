package pgstore

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"
)

// Flag is a feature flag.
type Flag struct {
	TenantID    string // SystemTenant: for every tenant
	Name        string
	Enabled     bool
	Value       json.RawMessage // optional
	Description string
	UpdatedAt   time.Time
}

// SetFlag inserts or replaces a flag.
func (s *Store) SetFlag(ctx context.Context, f Flag) (Flag, error) {
	var value any // SQL NULL unless given
	if len(f.Value) > 0 {
		value = string(f.Value)
	}
	err := s.pool.QueryRow(ctx, `INSERT INTO feature_flags (tenant_id, flag, enabled, value, description)
		VALUES ($1, $2, $3, $4::jsonb, $5)
		ON CONFLICT (tenant_id, flag) DO UPDATE SET enabled = EXCLUDED.enabled, value = EXCLUDED.value,
			description = EXCLUDED.description, updated_at = now()
		RETURNING updated_at`, f.TenantID, f.Name, f.Enabled, value, f.Description).Scan(&f.UpdatedAt)
	return f, wrap("set flag", err)
}

// Flags returns the flags in force for a tenant by name: SystemTenant's,
// each replaced by the tenant's own flag of the same name.
func (s *Store) Flags(ctx context.Context, tenantID string) (map[string]Flag, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT ON (flag) tenant_id, flag, enabled, value::text, description, updated_at
		FROM feature_flags WHERE tenant_id IN ($1, '`+SystemTenant+`')
		ORDER BY flag, tenant_id = '`+SystemTenant+`'`, tenantID)
	if err != nil {
		return nil, wrap("flags", err)
	}
	out := map[string]Flag{}
	var f Flag
	var value *string
	_, err = pgx.ForEachRow(rows, []any{&f.TenantID, &f.Name, &f.Enabled, &value, &f.Description, &f.UpdatedAt}, func() error {
		f.Value = nil
		if value != nil {
			f.Value = json.RawMessage(*value)
		}
		out[f.Name] = f
		return nil
	})
	return out, wrap("flags", err)
}
