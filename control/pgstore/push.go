package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Push providers.
const (
	PushWebhook = "webhook"
	PushAPNs    = "apns"
	PushFCM     = "fcm"
)

// PushRegistration is one installation of a patient's app that can be
// woken by a push notification.
type PushRegistration struct {
	TenantID       string
	PatientID      string
	InstallationID string // the app installation's own id
	Provider       string // PushWebhook, PushAPNs or PushFCM
	Token          string // provider device token or webhook URL; secret: never log it
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

const pushCols = "tenant_id, patient_id, installation_id, provider, push_token, created_at, updated_at"

func scanPush(row pgx.Row) (PushRegistration, error) {
	var p PushRegistration
	err := row.Scan(&p.TenantID, &p.PatientID, &p.InstallationID, &p.Provider, &p.Token, &p.CreatedAt, &p.UpdatedAt)
	return p, err
}

// PutPushRegistration adds an installation's registration or replaces
// its provider and token. ErrNotFound if the patient does not exist.
func (s *Store) PutPushRegistration(ctx context.Context, p PushRegistration) (PushRegistration, error) {
	out, err := scanPush(s.pool.QueryRow(ctx, `INSERT INTO push_registrations
			(tenant_id, patient_id, installation_id, provider, push_token)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (tenant_id, patient_id, installation_id) DO UPDATE SET
			provider = EXCLUDED.provider, push_token = EXCLUDED.push_token, updated_at = now()
		RETURNING `+pushCols, p.TenantID, p.PatientID, p.InstallationID, p.Provider, p.Token))
	return out, wrap("put push registration", err)
}

// DeletePushRegistration removes an installation's registration.
// ErrNotFound if there is none.
func (s *Store) DeletePushRegistration(ctx context.Context, tenantID, patientID, installationID string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM push_registrations
		WHERE tenant_id = $1 AND patient_id = $2 AND installation_id = $3`, tenantID, patientID, installationID)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	return wrap("delete push registration", err)
}

// PushRegistrations lists a patient's registrations by installation id.
func (s *Store) PushRegistrations(ctx context.Context, tenantID, patientID string) ([]PushRegistration, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+pushCols+` FROM push_registrations
		WHERE tenant_id = $1 AND patient_id = $2 ORDER BY installation_id`, tenantID, patientID)
	if err != nil {
		return nil, wrap("list push registrations", err)
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (PushRegistration, error) { return scanPush(r) })
	return ps, wrap("list push registrations", err)
}
