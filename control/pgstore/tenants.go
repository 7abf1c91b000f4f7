package pgstore

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Tenant is a clinic.
type Tenant struct {
	ID        string
	Name      string
	CreatedAt time.Time // set by the store
}

// Clinician is a hearing-care professional who logs in to the portal.
type Clinician struct {
	TenantID     string
	ID           string
	Email        string // login name; stored lower case
	PasswordHash string // argon2id PHC string (package password); secret
	Role         string // "clinician" (default) or "admin" (manages the tenant)
	DisplayName  string // staff name shown in the portal
	CreatedAt    time.Time
	DisabledAt   *time.Time
}

// CreateTenant adds a tenant.
func (s *Store) CreateTenant(ctx context.Context, t Tenant) (Tenant, error) {
	err := s.pool.QueryRow(ctx,
		"INSERT INTO tenants (tenant_id, name) VALUES ($1, $2) RETURNING created_at",
		t.ID, t.Name).Scan(&t.CreatedAt)
	return t, wrap("create tenant", err)
}

// Tenant returns one tenant.
func (s *Store) Tenant(ctx context.Context, id string) (Tenant, error) {
	t := Tenant{ID: id}
	err := s.pool.QueryRow(ctx, "SELECT name, created_at FROM tenants WHERE tenant_id = $1", id).Scan(&t.Name, &t.CreatedAt)
	return t, wrap("get tenant", err)
}

// Tenants lists every tenant but SystemTenant, by id.
func (s *Store) Tenants(ctx context.Context) ([]Tenant, error) {
	rows, err := s.pool.Query(ctx, "SELECT tenant_id, name, created_at FROM tenants WHERE tenant_id <> $1 ORDER BY tenant_id", SystemTenant)
	if err != nil {
		return nil, wrap("list tenants", err)
	}
	var ts []Tenant
	var t Tenant
	_, err = pgx.ForEachRow(rows, []any{&t.ID, &t.Name, &t.CreatedAt}, func() error { ts = append(ts, t); return nil })
	return ts, wrap("list tenants", err)
}

const clinicianCols = "tenant_id, clinician_id, email, password_hash, role, display_name, created_at, disabled_at"

func scanClinician(row pgx.Row) (Clinician, error) {
	var c Clinician
	err := row.Scan(&c.TenantID, &c.ID, &c.Email, &c.PasswordHash, &c.Role, &c.DisplayName, &c.CreatedAt, &c.DisabledAt)
	return c, err
}

// CreateClinician adds a clinician with an already hashed password. The
// email is stored lower case and must be unique in the tenant (ErrExists).
// An empty Role means "clinician".
func (s *Store) CreateClinician(ctx context.Context, c Clinician) (Clinician, error) {
	c.Email = strings.ToLower(strings.TrimSpace(c.Email))
	if c.Role == "" {
		c.Role = "clinician"
	}
	err := s.pool.QueryRow(ctx, `INSERT INTO clinicians (tenant_id, clinician_id, email, password_hash, role, display_name)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at`,
		c.TenantID, c.ID, c.Email, c.PasswordHash, c.Role, c.DisplayName).Scan(&c.CreatedAt)
	return c, wrap("create clinician", err)
}

// Clinician returns one clinician of the tenant.
func (s *Store) Clinician(ctx context.Context, tenantID, id string) (Clinician, error) {
	c, err := scanClinician(s.pool.QueryRow(ctx,
		"SELECT "+clinicianCols+" FROM clinicians WHERE tenant_id = $1 AND clinician_id = $2", tenantID, id))
	return c, wrap("get clinician", err)
}

// CliniciansByEmail returns the clinicians with this login email in every
// tenant (an email is unique per tenant only), for a login form that asks
// for no tenant. Disabled clinicians are included; the caller refuses
// them.
func (s *Store) CliniciansByEmail(ctx context.Context, email string) ([]Clinician, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+clinicianCols+" FROM clinicians WHERE email = $1 ORDER BY tenant_id",
		strings.ToLower(strings.TrimSpace(email)))
	if err != nil {
		return nil, wrap("clinicians by email", err)
	}
	cs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Clinician, error) { return scanClinician(r) })
	return cs, wrap("clinicians by email", err)
}

// SetClinicianPassword replaces a clinician's password hash.
func (s *Store) SetClinicianPassword(ctx context.Context, tenantID, id, hash string) error {
	tag, err := s.pool.Exec(ctx, "UPDATE clinicians SET password_hash = $3 WHERE tenant_id = $1 AND clinician_id = $2", tenantID, id, hash)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	return wrap("set clinician password", err)
}
