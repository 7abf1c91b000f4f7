package pgstore

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/control/pglocal/pgtest"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newStore opens a store on a fresh, migrated database.
func newStore(t testing.TB) *Store {
	t.Helper()
	s := openStore(t, Config{DSN: pgtest.Start(t)})
	if _, err := s.Migrate(ctxT(t)); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	cfg.Logger = quiet()
	s, err := Open(ctxT(t), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func mustOK(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// clinic seeds a tenant with a clinician, a patient in their care and a
// device of that patient, all with the same short ids in every tenant.
func clinic(t testing.TB, s *Store, tenant string) {
	t.Helper()
	ctx := ctxT(t)
	must[Tenant](t)(s.CreateTenant(ctx, Tenant{ID: tenant, Name: "Clinic " + tenant}))
	must[Clinician](t)(s.CreateClinician(ctx, Clinician{TenantID: tenant, ID: "c1", Email: "Doc@Example.org", PasswordHash: "$argon2id$x"}))
	must[Patient](t)(s.CreatePatient(ctx, Patient{TenantID: tenant, ID: "p1"}))
	must[Patient](t)(s.CreatePatient(ctx, Patient{TenantID: tenant, ID: "p2"}))
	must[Device](t)(s.CreateDevice(ctx, Device{TenantID: tenant, Serial: "SN1", Model: "m1", Firmware: "1.0", PatientID: "p1"}))
	mustOK(t, s.AddCare(ctx, tenant, "c1", "p1"))
}
