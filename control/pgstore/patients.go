package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Patient is a hearing-aid wearer. ID is a short opaque id (the patient
// app's token subject).
type Patient struct {
	TenantID    string
	ID          string
	DisplayName string // PHI, optional: never log it
	CreatedAt   time.Time
}

// Device is a hearing aid.
type Device struct {
	TenantID      string
	Serial        string
	Model         string
	Firmware      string
	PatientID     string // "" while not assigned
	ConfigVersion uint64 // authoritative config version (0: never configured)
	CreatedAt     time.Time
}

// PatientDevices is a patient with the devices assigned to them.
type PatientDevices struct {
	Patient
	Devices []Device
}

// CreatePatient adds a patient.
func (s *Store) CreatePatient(ctx context.Context, p Patient) (Patient, error) {
	err := s.pool.QueryRow(ctx,
		"INSERT INTO patients (tenant_id, patient_id, display_name) VALUES ($1, $2, NULLIF($3, '')) RETURNING created_at",
		p.TenantID, p.ID, p.DisplayName).Scan(&p.CreatedAt)
	return p, wrap("create patient", err)
}

// Patient returns one patient of the tenant.
func (s *Store) Patient(ctx context.Context, tenantID, id string) (Patient, error) {
	p := Patient{TenantID: tenantID, ID: id}
	err := s.pool.QueryRow(ctx,
		"SELECT coalesce(display_name, ''), created_at FROM patients WHERE tenant_id = $1 AND patient_id = $2",
		tenantID, id).Scan(&p.DisplayName, &p.CreatedAt)
	return p, wrap("get patient", err)
}

const deviceCols = "tenant_id, serial, model, firmware, coalesce(patient_id, ''), config_version, created_at"

func scanDevice(row pgx.Row) (Device, error) {
	var d Device
	err := row.Scan(&d.TenantID, &d.Serial, &d.Model, &d.Firmware, &d.PatientID, &d.ConfigVersion, &d.CreatedAt)
	return d, err
}

// CreateDevice adds a device at config version 0, assigned to PatientID
// if set (the patient must exist in the tenant: ErrNotFound).
func (s *Store) CreateDevice(ctx context.Context, d Device) (Device, error) {
	d.ConfigVersion = 0
	err := s.pool.QueryRow(ctx, `INSERT INTO devices (tenant_id, serial, model, firmware, patient_id)
		VALUES ($1, $2, $3, $4, NULLIF($5, '')) RETURNING created_at`,
		d.TenantID, d.Serial, d.Model, d.Firmware, d.PatientID).Scan(&d.CreatedAt)
	return d, wrap("create device", err)
}

// Device returns one device of the tenant.
func (s *Store) Device(ctx context.Context, tenantID, serial string) (Device, error) {
	d, err := scanDevice(s.pool.QueryRow(ctx,
		"SELECT "+deviceCols+" FROM devices WHERE tenant_id = $1 AND serial = $2", tenantID, serial))
	return d, wrap("get device", err)
}

// AssignDevice assigns a device to a patient of the same tenant, or
// unassigns it when patientID is "".
func (s *Store) AssignDevice(ctx context.Context, tenantID, serial, patientID string) error {
	tag, err := s.pool.Exec(ctx,
		"UPDATE devices SET patient_id = NULLIF($3, ''), updated_at = now() WHERE tenant_id = $1 AND serial = $2",
		tenantID, serial, patientID)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	return wrap("assign device", err)
}

// AddCare puts a patient in a clinician's care (both of the tenant). It is
// idempotent.
func (s *Store) AddCare(ctx context.Context, tenantID, clinicianID, patientID string) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO care_relationships (tenant_id, clinician_id, patient_id)
		VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, tenantID, clinicianID, patientID)
	return wrap("add care relationship", err)
}

// RemoveCare ends a care relationship. Removing one that does not exist
// does nothing.
func (s *Store) RemoveCare(ctx context.Context, tenantID, clinicianID, patientID string) error {
	_, err := s.pool.Exec(ctx, "DELETE FROM care_relationships WHERE tenant_id = $1 AND clinician_id = $2 AND patient_id = $3",
		tenantID, clinicianID, patientID)
	return wrap("remove care relationship", err)
}

// InCare reports whether the clinician has the patient in care. It reads
// the primary: it decides authorization.
func (s *Store) InCare(ctx context.Context, tenantID, clinicianID, patientID string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM care_relationships
		WHERE tenant_id = $1 AND clinician_id = $2 AND patient_id = $3)`, tenantID, clinicianID, patientID).Scan(&ok)
	return ok, wrap("check care relationship", err)
}

// ClinicianPatients lists the patients in a clinician's care with their
// devices, by patient id then serial. It reads the read pool, so a change
// made a moment ago may be missing.
func (s *Store) ClinicianPatients(ctx context.Context, tenantID, clinicianID string) ([]PatientDevices, error) {
	rows, err := s.read.Query(ctx, `
		SELECT p.patient_id, coalesce(p.display_name, ''), p.created_at,
		       d.serial, d.model, d.firmware, d.config_version, d.created_at
		FROM care_relationships c
		JOIN patients p ON p.tenant_id = c.tenant_id AND p.patient_id = c.patient_id
		LEFT JOIN devices d ON d.tenant_id = p.tenant_id AND d.patient_id = p.patient_id
		WHERE c.tenant_id = $1 AND c.clinician_id = $2
		ORDER BY p.patient_id, d.serial`, tenantID, clinicianID)
	if err != nil {
		return nil, wrap("list clinician's patients", err)
	}
	var out []PatientDevices
	var (
		p                       Patient
		serial, model, firmware *string
		version                 *uint64
		devCreated              *time.Time
	)
	p.TenantID = tenantID
	_, err = pgx.ForEachRow(rows, []any{&p.ID, &p.DisplayName, &p.CreatedAt, &serial, &model, &firmware, &version, &devCreated}, func() error {
		if len(out) == 0 || out[len(out)-1].ID != p.ID {
			out = append(out, PatientDevices{Patient: p})
		}
		if serial != nil {
			last := &out[len(out)-1]
			last.Devices = append(last.Devices, Device{
				TenantID: tenantID, Serial: *serial, Model: *model, Firmware: *firmware,
				PatientID: p.ID, ConfigVersion: *version, CreatedAt: *devCreated,
			})
		}
		return nil
	})
	return out, wrap("list clinician's patients", err)
}
