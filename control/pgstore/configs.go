package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DeviceConfig is a device's current configuration.
type DeviceConfig struct {
	TenantID string
	Serial   string
	Version  uint64           // 0: never configured
	Params   map[string]int64 // every applied version merged
}

// ConfigChange is one applied config command: it moves a device from
// Base to Base+1.
type ConfigChange struct {
	TenantID string
	Serial   string
	Base     uint64
	Params   map[string]int64 // the parameters the command set
	// SessionID and Seq name the session message that carried the command
	// (optional). With them a replayed change is recognised and succeeds
	// again instead of conflicting.
	SessionID string
	Seq       uint64
	AppliedAt time.Time // zero: now
}

// DeviceConfig returns the authoritative config version and parameters
// of a device.
func (s *Store) DeviceConfig(ctx context.Context, tenantID, serial string) (DeviceConfig, error) {
	c := DeviceConfig{TenantID: tenantID, Serial: serial}
	err := s.pool.QueryRow(ctx, "SELECT config_version, config FROM devices WHERE tenant_id = $1 AND serial = $2",
		tenantID, serial).Scan(&c.Version, &c.Params)
	return c, wrap("get device config", err)
}

// AdvanceDeviceConfig applies a change by compare-and-set: the device's
// version moves from ch.Base to ch.Base+1 only if it is ch.Base
// (UPDATE … WHERE config_version = base), and the version is recorded in
// device_configs, in one transaction. On a stale base it returns the
// current config and an error wrapping ErrConflict. If version Base+1 was
// already recorded from the same session message (ch.SessionID, ch.Seq),
// the change is a replay: it returns the current config and no error.
func (s *Store) AdvanceDeviceConfig(ctx context.Context, ch ConfigChange) (DeviceConfig, error) {
	c := DeviceConfig{TenantID: ch.TenantID, Serial: ch.Serial}
	if ch.Params == nil {
		ch.Params = map[string]int64{}
	}
	var applied any // NULL: now()
	if !ch.AppliedAt.IsZero() {
		applied = ch.AppliedAt
	}
	var conflict bool
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE devices SET config_version = config_version + 1,
				config = config || $4::jsonb, updated_at = now()
			WHERE tenant_id = $1 AND serial = $2 AND config_version = $3
			RETURNING config_version, config`,
			ch.TenantID, ch.Serial, ch.Base, ch.Params).Scan(&c.Version, &c.Params)
		if err == nil {
			_, err = tx.Exec(ctx, `INSERT INTO device_configs (tenant_id, serial, version, params, session_id, seq, applied_at)
				VALUES ($1, $2, $3, $4, NULLIF($5, ''), NULLIF($6::bigint, 0), coalesce($7::timestamptz, now()))`,
				ch.TenantID, ch.Serial, c.Version, ch.Params, ch.SessionID, ch.Seq, applied)
			return err
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		// Stale base, replay, or no such device.
		var replay bool
		err = tx.QueryRow(ctx, `SELECT d.config_version, d.config,
				coalesce(c.session_id = $4 AND c.seq = $5, false)
			FROM devices d
			LEFT JOIN device_configs c ON c.tenant_id = d.tenant_id AND c.serial = d.serial AND c.version = $3::bigint + 1
			WHERE d.tenant_id = $1 AND d.serial = $2`,
			ch.TenantID, ch.Serial, ch.Base, ch.SessionID, ch.Seq).Scan(&c.Version, &c.Params, &replay)
		if err != nil {
			return err
		}
		conflict = !(replay && ch.SessionID != "")
		return nil
	})
	if err != nil {
		return DeviceConfig{}, wrap("advance device config", err)
	}
	if conflict {
		return c, fmt.Errorf("pgstore: advance device config: %w: base %d, current %d", ErrConflict, ch.Base, c.Version)
	}
	return c, nil
}

// ParamLimit bounds one parameter of a model (ModelLimit rows).
type ParamLimit struct {
	Min, Max int64
	MaxStep  int64 // largest change per command; 0: no step limit
}

// SetModelLimit sets (inserts or replaces) a model's limit for one
// parameter. Limits of SystemTenant apply to every tenant.
func (s *Store) SetModelLimit(ctx context.Context, tenantID, model, parameter string, l ParamLimit) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO model_limits (tenant_id, model, parameter, min_value, max_value, max_step)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (tenant_id, model, parameter) DO UPDATE SET
			min_value = EXCLUDED.min_value, max_value = EXCLUDED.max_value, max_step = EXCLUDED.max_step`,
		tenantID, model, parameter, l.Min, l.Max, l.MaxStep)
	return wrap("set model limit", err)
}

// ModelLimits returns the limits of a model for a tenant by parameter:
// SystemTenant's, with the tenant's own rows replacing them parameter by
// parameter. An empty map means no limits are recorded for the model.
func (s *Store) ModelLimits(ctx context.Context, tenantID, model string) (map[string]ParamLimit, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT ON (parameter) parameter, min_value, max_value, max_step
		FROM model_limits WHERE tenant_id IN ($1, '`+SystemTenant+`') AND model = $2
		ORDER BY parameter, tenant_id = '`+SystemTenant+`'`, tenantID, model)
	if err != nil {
		return nil, wrap("model limits", err)
	}
	out := map[string]ParamLimit{}
	var p string
	var l ParamLimit
	_, err = pgx.ForEachRow(rows, []any{&p, &l.Min, &l.Max, &l.MaxStep}, func() error { out[p] = l; return nil })
	return out, wrap("model limits", err)
}
