package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Session modes and states.
const (
	ModeAdvanced = "advanced" // live: both sides connected
	ModeStandard = "standard" // queued: the app receives when it connects

	StateCreated = "created"
	StateActive  = "active"
	StateEnded   = "ended"
	StateExpired = "expired"
)

// Session is a fitting session.
type Session struct {
	TenantID     string
	ID           string
	ClinicianID  string
	PatientID    string
	DeviceSerial string // "" when the session configures no device
	RelayNodeID  string // the relay placed on, "" until placed
	Mode         string // ModeAdvanced (default) or ModeStandard
	State        string // set by the store: StateCreated at creation
	CreatedAt    time.Time
	EndedAt      *time.Time
}

const sessionCols = `tenant_id, session_id, clinician_id, patient_id, coalesce(device_serial, ''),
	coalesce(relay_node_id, ''), mode, state, created_at, ended_at`

func scanSession(row pgx.Row) (Session, error) {
	var x Session
	err := row.Scan(&x.TenantID, &x.ID, &x.ClinicianID, &x.PatientID, &x.DeviceSerial,
		&x.RelayNodeID, &x.Mode, &x.State, &x.CreatedAt, &x.EndedAt)
	return x, err
}

// CreateSession creates a fitting session in state "created", but only if
// the clinician has the patient in care (else ErrNotInCare) and the device,
// if named, is assigned to the patient (else ErrDeviceNotAssigned). The
// checks and the insert are one transaction, the care relationship row
// locked against removal meanwhile.
func (s *Store) CreateSession(ctx context.Context, x Session) (Session, error) {
	if x.Mode == "" {
		x.Mode = ModeAdvanced
	}
	x.State = StateCreated
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM care_relationships
			WHERE tenant_id = $1 AND clinician_id = $2 AND patient_id = $3 FOR KEY SHARE`,
			x.TenantID, x.ClinicianID, x.PatientID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotInCare
		} else if err != nil {
			return err
		}
		if x.DeviceSerial != "" {
			var owner *string
			err := tx.QueryRow(ctx, "SELECT patient_id FROM devices WHERE tenant_id = $1 AND serial = $2 FOR KEY SHARE",
				x.TenantID, x.DeviceSerial).Scan(&owner)
			if errors.Is(err, pgx.ErrNoRows) || (err == nil && (owner == nil || *owner != x.PatientID)) {
				return ErrDeviceNotAssigned
			} else if err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, `INSERT INTO fitting_sessions
			(tenant_id, session_id, clinician_id, patient_id, device_serial, relay_node_id, mode)
			VALUES ($1, $2, $3, $4, NULLIF($5, ''), NULLIF($6, ''), $7) RETURNING created_at`,
			x.TenantID, x.ID, x.ClinicianID, x.PatientID, x.DeviceSerial, x.RelayNodeID, x.Mode).Scan(&x.CreatedAt)
	})
	if errors.Is(err, ErrNotInCare) || errors.Is(err, ErrDeviceNotAssigned) {
		return Session{}, fmt.Errorf("pgstore: create session: %w", err)
	}
	return x, wrap("create session", err)
}

// Session returns one fitting session of the tenant.
func (s *Store) Session(ctx context.Context, tenantID, id string) (Session, error) {
	x, err := scanSession(s.pool.QueryRow(ctx,
		"SELECT "+sessionCols+" FROM fitting_sessions WHERE tenant_id = $1 AND session_id = $2", tenantID, id))
	return x, wrap("get session", err)
}

// SetSessionState moves a session to state (StateActive, StateEnded or
// StateExpired) and, for relayNodeID != "", records the relay it is on.
// Ending states set ended_at once. A session already ended or expired
// stays as it is; the returned session says what it is.
func (s *Store) SetSessionState(ctx context.Context, tenantID, id, state, relayNodeID string) (Session, error) {
	x, err := scanSession(s.pool.QueryRow(ctx, `UPDATE fitting_sessions SET
			state = CASE WHEN state IN ('ended', 'expired') THEN state ELSE $3 END,
			relay_node_id = coalesce(NULLIF($4, ''), relay_node_id),
			ended_at = CASE WHEN ended_at IS NULL AND $3 IN ('ended', 'expired') THEN now() ELSE ended_at END
		WHERE tenant_id = $1 AND session_id = $2
		RETURNING `+sessionCols, tenantID, id, state, relayNodeID))
	return x, wrap("set session state", err)
}

// EndSession ends a fitting session: state "ended", ended_at now. Ending
// a session that is over already (ended or expired) changes nothing and
// returns it as it is, so a second call answers the same ended_at.
// ErrNotFound if the tenant has no such session.
func (s *Store) EndSession(ctx context.Context, tenantID, id string) (Session, error) {
	return s.SetSessionState(ctx, tenantID, id, StateEnded, "")
}

// EndedSessions returns those of ids that are over (ended or expired),
// in the tenant, or in any tenant for tenantID "" (a shared relay asks
// without tenants: session ids are controld's random ids). Ids that name
// no session are not returned.
func (s *Store) EndedSessions(ctx context.Context, tenantID string, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT session_id FROM fitting_sessions
		WHERE session_id = ANY($2::text[]) AND ($1 = '' OR tenant_id = $1) AND state IN ('ended', 'expired')
		ORDER BY session_id`, tenantID, ids)
	if err != nil {
		return nil, wrap("ended sessions", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return out, wrap("ended sessions", err)
}

// ExpireSessions moves the tenant's sessions that are not over and were
// created before cutoff to state "expired" (ended_at now) and returns how
// many it moved. tenantID "" expires in every tenant.
func (s *Store) ExpireSessions(ctx context.Context, tenantID string, cutoff time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE fitting_sessions SET state = 'expired', ended_at = now()
		WHERE ($1 = '' OR tenant_id = $1) AND state IN ('created', 'active') AND created_at < $2`, tenantID, cutoff)
	if err != nil {
		return 0, wrap("expire sessions", err)
	}
	return int(tag.RowsAffected()), nil
}
