package pgstore

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stapes-relay/stapes/control/pglocal/pgtest"
)

var wantTables = []string{
	"audit_log", "care_relationships", "clinicians", "device_configs", "device_telemetry",
	"devices", "feature_flags", "fitting_sessions", "messages", "model_limits", "nodes",
	"patients", "push_registrations", "receipts", "relay_rtts", "scheduled_jobs", "session_events", "signing_keys", "tenants",
}

func TestMigrate(t *testing.T) {
	ctx := ctxT(t)
	s := openStore(t, Config{DSN: pgtest.Start(t)})
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	applied, err := s.Migrate(ctx)
	if err != nil {
		t.Fatalf("first Migrate: %v", err)
	}
	if len(applied) != len(ms) || applied[0] != "0001_init.sql" {
		t.Errorf("first Migrate applied %v, want all %d", applied, len(ms))
	}
	again, err := s.Migrate(ctx)
	if err != nil || len(again) != 0 {
		t.Errorf("second Migrate = %v, %v; want nothing applied", again, err)
	}

	// Every table but schema_migrations (partitions included) carries
	// tenant_id and leads its primary key with it.
	rows, err := s.pool.Query(ctx, `
		SELECT c.relname, c.relispartition,
		       (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum = i.indkey[0])
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
		LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
		WHERE c.relkind IN ('r', 'p') AND c.relname <> 'schema_migrations'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	var partitions int
	var name string
	var isPart bool
	var first *string
	_, err = pgx.ForEachRow(rows, []any{&name, &isPart, &first}, func() error {
		if first == nil || *first != "tenant_id" {
			t.Errorf("table %s: primary key does not start with tenant_id", name)
		}
		if isPart {
			partitions++
		} else {
			tables = append(tables, name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(tables)
	if !slices.Equal(tables, wantTables) {
		t.Errorf("tables %v, want %v", tables, wantTables)
	}
	if partitions != 5 {
		t.Errorf("%d telemetry partitions, want 5 (last month to 3 ahead)", partitions)
	}
	// Unique constraints lead with tenant_id too.
	var bad []string
	rows, err = s.pool.Query(ctx, `
		SELECT conname FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
		JOIN pg_namespace n ON n.oid = r.relnamespace AND n.nspname = 'public'
		WHERE c.contype = 'u' AND (SELECT attname FROM pg_attribute WHERE attrelid = r.oid AND attnum = c.conkey[1]) <> 'tenant_id'`)
	if err != nil {
		t.Fatal(err)
	}
	bad, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(bad) > 0 {
		t.Errorf("unique constraints not led by tenant_id: %v (%v)", bad, err)
	}
	var sys string
	if err := s.pool.QueryRow(ctx, "SELECT tenant_id FROM tenants").Scan(&sys); err != nil || sys != SystemTenant {
		t.Errorf("tenants hold %q (%v), want only %q", sys, err, SystemTenant)
	}
}

// TestMigrateConcurrent: two controlds migrating at once take turns; the
// migrations are applied once.
func TestMigrateConcurrent(t *testing.T) {
	s := openStore(t, Config{DSN: pgtest.Start(t)})
	var wg sync.WaitGroup
	results := make([][]string, 3)
	errs := make([]error, 3)
	for i := range results {
		wg.Go(func() { results[i], errs[i] = s.Migrate(ctxT(t)) })
	}
	wg.Wait()
	total := 0
	for i := range results {
		if errs[i] != nil {
			t.Errorf("Migrate %d: %v", i, errs[i])
		}
		total += len(results[i])
	}
	if ms, _ := migrations(); total != len(ms) {
		t.Errorf("applied %d migrations in all, want %d", total, len(ms))
	}
}

// TestMigrateChanged: an applied migration whose file changed stops
// Migrate.
func TestMigrateChanged(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	if _, err := s.pool.Exec(ctx, "UPDATE schema_migrations SET sha256 = 'x' WHERE version = 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Migrate(ctx); !errors.Is(err, ErrMigration) {
		t.Errorf("Migrate over a changed migration = %v, want ErrMigration", err)
	}
}
