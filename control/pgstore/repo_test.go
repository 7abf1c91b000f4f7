package pgstore

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestTenantsAndClinicians(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	clinic(t, s, "a")
	clinic(t, s, "b")

	if _, err := s.CreateTenant(ctx, Tenant{ID: "a", Name: "again"}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate tenant: %v, want ErrExists", err)
	}
	if got := must[Tenant](t)(s.Tenant(ctx, "a")); got.Name != "Clinic a" || got.CreatedAt.IsZero() {
		t.Errorf("Tenant = %+v", got)
	}
	ts := must[[]Tenant](t)(s.Tenants(ctx))
	if len(ts) != 2 || ts[0].ID != "a" || ts[1].ID != "b" {
		t.Errorf("Tenants = %+v, want a and b (not %s)", ts, SystemTenant)
	}

	c := must[Clinician](t)(s.Clinician(ctx, "a", "c1"))
	if c.Email != "doc@example.org" || c.Role != "clinician" || c.PasswordHash != "$argon2id$x" {
		t.Errorf("Clinician = %+v, want lower-case email, role clinician", c)
	}
	tests := []struct {
		name string
		c    Clinician
		want error
	}{
		{"same email, same tenant", Clinician{TenantID: "a", ID: "c2", Email: "DOC@example.org", PasswordHash: "h"}, ErrExists},
		{"same id", Clinician{TenantID: "a", ID: "c1", Email: "x@example.org", PasswordHash: "h"}, ErrExists},
		{"unknown tenant", Clinician{TenantID: "zz", ID: "c1", Email: "x@example.org", PasswordHash: "h"}, ErrNotFound},
		{"bad email", Clinician{TenantID: "a", ID: "c3", Email: "nobody", PasswordHash: "h"}, ErrInvalid},
		{"bad role", Clinician{TenantID: "a", ID: "c3", Email: "r@example.org", PasswordHash: "h", Role: "root"}, ErrInvalid},
		{"empty id", Clinician{TenantID: "a", ID: "", Email: "e@example.org", PasswordHash: "h"}, ErrInvalid},
		{"id too long", Clinician{TenantID: "a", ID: strings.Repeat("i", 129), Email: "l@example.org", PasswordHash: "h"}, ErrInvalid},
		{"admin", Clinician{TenantID: "a", ID: "adm", Email: "adm@example.org", PasswordHash: "h", Role: "admin"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.CreateClinician(ctx, tt.c); !errors.Is(err, tt.want) {
				t.Errorf("CreateClinician = %v, want %v", err, tt.want)
			}
		})
	}
	byEmail := must[[]Clinician](t)(s.CliniciansByEmail(ctx, " Doc@EXAMPLE.org "))
	if len(byEmail) != 2 || byEmail[0].TenantID != "a" || byEmail[1].TenantID != "b" {
		t.Errorf("CliniciansByEmail = %+v, want the clinician of a and of b", byEmail)
	}
	mustOK(t, s.SetClinicianPassword(ctx, "a", "c1", "new"))
	if c := must[Clinician](t)(s.Clinician(ctx, "a", "c1")); c.PasswordHash != "new" {
		t.Errorf("password hash %q after SetClinicianPassword", c.PasswordHash)
	}
	if c := must[Clinician](t)(s.Clinician(ctx, "b", "c1")); c.PasswordHash != "$argon2id$x" {
		t.Error("SetClinicianPassword in tenant a changed tenant b's clinician")
	}
	if err := s.SetClinicianPassword(ctx, "a", "nobody", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetClinicianPassword(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.Clinician(ctx, "a", "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Clinician(unknown) = %v, want ErrNotFound", err)
	}
}

func TestPatientsDevicesCare(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	clinic(t, s, "a")
	must[Patient](t)(s.CreatePatient(ctx, Patient{TenantID: "a", ID: "p3", DisplayName: "PHI name"}))
	if p := must[Patient](t)(s.Patient(ctx, "a", "p3")); p.DisplayName != "PHI name" {
		t.Errorf("Patient = %+v", p)
	}
	if _, err := s.CreatePatient(ctx, Patient{TenantID: "a", ID: "p3"}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate patient: %v", err)
	}
	if _, err := s.CreateDevice(ctx, Device{TenantID: "a", Serial: "SN9", Model: "m1", PatientID: "nobody"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("device for an unknown patient: %v, want ErrNotFound", err)
	}
	must[Device](t)(s.CreateDevice(ctx, Device{TenantID: "a", Serial: "SN2", Model: "m2", Firmware: "2.1"}))
	if d := must[Device](t)(s.Device(ctx, "a", "SN2")); d.PatientID != "" || d.ConfigVersion != 0 || d.Firmware != "2.1" {
		t.Errorf("unassigned device = %+v", d)
	}
	mustOK(t, s.AssignDevice(ctx, "a", "SN2", "p1"))
	must[Device](t)(s.CreateDevice(ctx, Device{TenantID: "a", Serial: "SN3", Model: "m1", PatientID: "p3"}))
	mustOK(t, s.AddCare(ctx, "a", "c1", "p3"))
	mustOK(t, s.AddCare(ctx, "a", "c1", "p3")) // idempotent
	if err := s.AddCare(ctx, "a", "c1", "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("AddCare(unknown patient) = %v, want ErrNotFound", err)
	}

	list := must[[]PatientDevices](t)(s.ClinicianPatients(ctx, "a", "c1"))
	var got []string
	for _, p := range list {
		var serials []string
		for _, d := range p.Devices {
			serials = append(serials, d.Serial)
		}
		got = append(got, p.ID+":"+strings.Join(serials, ","))
	}
	if want := []string{"p1:SN1,SN2", "p3:SN3"}; !slices.Equal(got, want) {
		t.Errorf("ClinicianPatients = %v, want %v (p2 is not in care)", got, want)
	}

	for _, tt := range []struct {
		patient string
		want    bool
	}{{"p1", true}, {"p2", false}, {"p3", true}, {"nobody", false}} {
		if ok := must[bool](t)(s.InCare(ctx, "a", "c1", tt.patient)); ok != tt.want {
			t.Errorf("InCare(%s) = %v, want %v", tt.patient, ok, tt.want)
		}
	}
	mustOK(t, s.RemoveCare(ctx, "a", "c1", "p3"))
	if ok := must[bool](t)(s.InCare(ctx, "a", "c1", "p3")); ok {
		t.Error("still in care after RemoveCare")
	}
}

// TestTenantIsolation: tenants a and b use the same ids; nothing of a is
// reachable through b.
func TestTenantIsolation(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	clinic(t, s, "a")
	must[Tenant](t)(s.CreateTenant(ctx, Tenant{ID: "b", Name: "B"}))
	must[Clinician](t)(s.CreateClinician(ctx, Clinician{TenantID: "b", ID: "c1", Email: "doc@example.org", PasswordHash: "h"}))

	if _, err := s.Patient(ctx, "b", "p1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("tenant b sees a's patient: %v", err)
	}
	if _, err := s.Device(ctx, "b", "SN1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("tenant b sees a's device: %v", err)
	}
	if ok, _ := s.InCare(ctx, "b", "c1", "p1"); ok {
		t.Error("b's c1 has a's p1 in care")
	}
	if list := must[[]PatientDevices](t)(s.ClinicianPatients(ctx, "b", "c1")); len(list) != 0 {
		t.Errorf("b's c1 lists %+v", list)
	}
	if err := s.AddCare(ctx, "b", "c1", "p1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("care across tenants: %v, want ErrNotFound", err)
	}
	if _, err := s.CreateSession(ctx, Session{TenantID: "b", ID: "s1", ClinicianID: "c1", PatientID: "p1"}); !errors.Is(err, ErrNotInCare) {
		t.Errorf("session for another tenant's patient: %v, want ErrNotInCare", err)
	}
	if err := s.AssignDevice(ctx, "b", "SN1", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("b unassigned a's device: %v", err)
	}
	if _, err := s.AdvanceDeviceConfig(ctx, ConfigChange{TenantID: "b", Serial: "SN1", Params: map[string]int64{"gain": 1}}); !errors.Is(err, ErrNotFound) {
		t.Errorf("b configured a's device: %v", err)
	}
	if _, err := s.Session(ctx, "b", "s1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("session leaked: %v", err)
	}
}

func TestSessions(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	clinic(t, s, "a")
	must[Device](t)(s.CreateDevice(ctx, Device{TenantID: "a", Serial: "SN2", Model: "m1", PatientID: "p2"}))
	tests := []struct {
		name string
		x    Session
		want error
	}{
		{"not in care", Session{TenantID: "a", ID: "s0", ClinicianID: "c1", PatientID: "p2"}, ErrNotInCare},
		{"unknown clinician", Session{TenantID: "a", ID: "s0", ClinicianID: "cx", PatientID: "p1"}, ErrNotInCare},
		{"another patient's device", Session{TenantID: "a", ID: "s0", ClinicianID: "c1", PatientID: "p1", DeviceSerial: "SN2"}, ErrDeviceNotAssigned},
		{"unknown device", Session{TenantID: "a", ID: "s0", ClinicianID: "c1", PatientID: "p1", DeviceSerial: "SNX"}, ErrDeviceNotAssigned},
		{"bad mode", Session{TenantID: "a", ID: "s0", ClinicianID: "c1", PatientID: "p1", Mode: "turbo"}, ErrInvalid},
		{"ok", Session{TenantID: "a", ID: "s1", ClinicianID: "c1", PatientID: "p1", DeviceSerial: "SN1"}, nil},
		{"ok standard", Session{TenantID: "a", ID: "s2", ClinicianID: "c1", PatientID: "p1", Mode: ModeStandard}, nil},
		{"duplicate", Session{TenantID: "a", ID: "s1", ClinicianID: "c1", PatientID: "p1"}, ErrExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, err := s.CreateSession(ctx, tt.x)
			if !errors.Is(err, tt.want) {
				t.Fatalf("CreateSession = %v, want %v", err, tt.want)
			}
			if err == nil && (x.State != StateCreated || x.CreatedAt.IsZero()) {
				t.Errorf("created session %+v", x)
			}
		})
	}
	x := must[Session](t)(s.SetSessionState(ctx, "a", "s1", StateActive, "relay-1"))
	if x.State != StateActive || x.RelayNodeID != "relay-1" || x.EndedAt != nil {
		t.Errorf("active session %+v", x)
	}
	x = must[Session](t)(s.SetSessionState(ctx, "a", "s1", StateEnded, ""))
	if x.State != StateEnded || x.RelayNodeID != "relay-1" || x.EndedAt == nil {
		t.Errorf("ended session %+v", x)
	}
	x = must[Session](t)(s.SetSessionState(ctx, "a", "s1", StateActive, ""))
	if x.State != StateEnded {
		t.Errorf("an ended session went back to %s", x.State)
	}
	if _, err := s.SetSessionState(ctx, "a", "s2", "bogus", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("bogus state: %v, want ErrInvalid", err)
	}
	if got := must[Session](t)(s.Session(ctx, "a", "s2")); got.Mode != ModeStandard || got.DeviceSerial != "" {
		t.Errorf("Session = %+v", got)
	}
}

func TestNodes(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	clinic(t, s, "a")
	must[Tenant](t)(s.CreateTenant(ctx, Tenant{ID: "b", Name: "B"}))
	n := must[Node](t)(s.RegisterNode(ctx, Node{ID: "r1", Region: "eu-west", Addresses: map[string]string{"ws": "wss://r1:8443"}, CredentialHash: "h1", Capacity: 1000}))
	if n.TenantID != SystemTenant || n.LastHeartbeat != nil || n.RegisteredAt.IsZero() {
		t.Errorf("registered %+v", n)
	}
	must[Node](t)(s.RegisterNode(ctx, Node{TenantID: "a", ID: "ra", Region: "eu-west", CredentialHash: "h"}))
	must[Node](t)(s.RegisterNode(ctx, Node{TenantID: "b", ID: "rb", Region: "us-east", CredentialHash: "h"}))

	n = must[Node](t)(s.HeartbeatNode(ctx, SystemTenant, "r1", Heartbeat{Load: 42}))
	if n.Load != 42 || n.LastHeartbeat == nil || n.Addresses["ws"] != "wss://r1:8443" {
		t.Errorf("after heartbeat %+v (addresses must be kept)", n)
	}
	n = must[Node](t)(s.HeartbeatNode(ctx, SystemTenant, "r1", Heartbeat{Load: 7, Draining: true, Addresses: map[string]string{"quic": "r1:8443"}}))
	if !n.Draining || len(n.Addresses) != 1 || n.Addresses["quic"] != "r1:8443" {
		t.Errorf("after draining heartbeat %+v", n)
	}
	n = must[Node](t)(s.RegisterNode(ctx, Node{ID: "r1", Region: "eu-central", CredentialHash: "h2", Version: "v2"}))
	if n.Region != "eu-central" || n.CredentialHash != "h2" || n.Load != 7 || !n.Draining || n.LastHeartbeat == nil {
		t.Errorf("re-registered %+v: load, draining and heartbeat must be kept", n)
	}
	if _, err := s.HeartbeatNode(ctx, SystemTenant, "nope", Heartbeat{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("heartbeat of an unknown node: %v", err)
	}
	ids := func(ns []Node) (out []string) {
		for _, n := range ns {
			out = append(out, n.ID)
		}
		return out
	}
	if got := ids(must[[]Node](t)(s.Nodes(ctx, "a"))); !slices.Equal(got, []string{"r1", "ra"}) {
		t.Errorf("Nodes(a) = %v, want shared r1 and a's ra", got)
	}
	if got := ids(must[[]Node](t)(s.Nodes(ctx, ""))); !slices.Equal(got, []string{"r1", "ra", "rb"}) {
		t.Errorf("Nodes(all) = %v", got)
	}
}

func TestDeviceConfigCAS(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	clinic(t, s, "a")
	c := must[DeviceConfig](t)(s.DeviceConfig(ctx, "a", "SN1"))
	if c.Version != 0 || len(c.Params) != 0 {
		t.Fatalf("new device config %+v", c)
	}
	ch := ConfigChange{TenantID: "a", Serial: "SN1", Base: 0, Params: map[string]int64{"gain.l.2k": 120, "gain.r.2k": 100}, SessionID: "s1", Seq: 7}
	c = must[DeviceConfig](t)(s.AdvanceDeviceConfig(ctx, ch))
	if c.Version != 1 || c.Params["gain.l.2k"] != 120 {
		t.Errorf("after the first change %+v", c)
	}
	// The same command again (a replayed sync batch) is not a conflict.
	if c2, err := s.AdvanceDeviceConfig(ctx, ch); err != nil || c2.Version != 1 {
		t.Errorf("replay = %+v, %v; want version 1, no error", c2, err)
	}
	// Another command on the stale base is.
	stale := ConfigChange{TenantID: "a", Serial: "SN1", Base: 0, Params: map[string]int64{"gain.l.2k": 999}, SessionID: "s1", Seq: 8}
	c2, err := s.AdvanceDeviceConfig(ctx, stale)
	if !errors.Is(err, ErrConflict) || c2.Version != 1 || c2.Params["gain.l.2k"] != 120 {
		t.Errorf("stale base = %+v, %v; want ErrConflict and version 1 unchanged", c2, err)
	}
	if _, err := s.AdvanceDeviceConfig(ctx, ConfigChange{TenantID: "a", Serial: "SN1", Base: 5, Params: map[string]int64{"x": 1}}); !errors.Is(err, ErrConflict) {
		t.Errorf("future base: %v, want ErrConflict", err)
	}
	if _, err := s.AdvanceDeviceConfig(ctx, ConfigChange{TenantID: "a", Serial: "nope", Params: map[string]int64{"x": 1}}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown device: %v, want ErrNotFound", err)
	}

	// Concurrent changes on one base: exactly one wins.
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.AdvanceDeviceConfig(ctx, ConfigChange{TenantID: "a", Serial: "SN1", Base: 1, Params: map[string]int64{"gain.r.2k": int64(i)}})
		})
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, ErrConflict):
			t.Errorf("concurrent change: %v", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d concurrent changes on base 1 succeeded, want 1", wins)
	}
	c = must[DeviceConfig](t)(s.DeviceConfig(ctx, "a", "SN1"))
	if c.Version != 2 || c.Params["gain.l.2k"] != 120 || len(c.Params) != 2 {
		t.Errorf("final config %+v, want version 2 with both parameters", c)
	}
	if d := must[Device](t)(s.Device(ctx, "a", "SN1")); d.ConfigVersion != 2 {
		t.Errorf("Device.ConfigVersion = %d, want 2", d.ConfigVersion)
	}
	var versions int
	mustOK(t, s.pool.QueryRow(ctx, "SELECT count(*) FROM device_configs WHERE tenant_id = 'a' AND serial = 'SN1'").Scan(&versions))
	if versions != 2 {
		t.Errorf("%d device_configs rows, want 2", versions)
	}
}

func TestModelLimits(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	clinic(t, s, "a")
	mustOK(t, s.SetModelLimit(ctx, SystemTenant, "m1", "gain", ParamLimit{Min: -100, Max: 600, MaxStep: 60}))
	mustOK(t, s.SetModelLimit(ctx, SystemTenant, "m1", "volume", ParamLimit{Min: 0, Max: 10}))
	mustOK(t, s.SetModelLimit(ctx, "a", "m1", "gain", ParamLimit{Min: -50, Max: 300, MaxStep: 30}))
	if err := s.SetModelLimit(ctx, "a", "m1", "bad", ParamLimit{Min: 5, Max: 1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("min above max: %v, want ErrInvalid", err)
	}
	got := must[map[string]ParamLimit](t)(s.ModelLimits(ctx, "a", "m1"))
	if got["gain"] != (ParamLimit{-50, 300, 30}) || got["volume"] != (ParamLimit{0, 10, 0}) || len(got) != 2 {
		t.Errorf("tenant a limits %+v, want its own gain and the system volume", got)
	}
	got = must[map[string]ParamLimit](t)(s.ModelLimits(ctx, "other", "m1"))
	if got["gain"] != (ParamLimit{-100, 600, 60}) {
		t.Errorf("other tenant limits %+v, want the system's", got)
	}
}

func TestTelemetryPartitions(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	if n := must[int](t)(s.EnsureTelemetryPartitions(ctx, 3)); n != 0 {
		t.Errorf("created %d partitions the migration had made", n)
	}
	if n := must[int](t)(s.EnsureTelemetryPartitions(ctx, 6)); n != 3 {
		t.Errorf("6 months ahead created %d partitions, want 3", n)
	}
	ins := "INSERT INTO device_telemetry (tenant_id, serial, metric, ts, value_avg, value_min, value_max) VALUES ('a', 'SN1', 'battery', now() + $1::interval, 1, 1, 1)"
	if _, err := s.pool.Exec(ctx, ins, "0 days"); err != nil {
		t.Errorf("telemetry now: %v", err)
	}
	if _, err := s.pool.Exec(ctx, ins, "5 months"); err != nil {
		t.Errorf("telemetry in 5 months: %v", err)
	}
	if _, err := s.pool.Exec(ctx, ins, "3 years"); err == nil {
		t.Error("telemetry beyond every partition was stored")
	}
}

func TestReadPool(t *testing.T) {
	primary := newStore(t)
	ctx := ctxT(t)
	clinic(t, primary, "a")
	dsn := primary.pool.Config().ConnString()
	s := openStore(t, Config{DSN: dsn, ReadDSN: dsn})
	if s.ReadPool() == s.Pool() {
		t.Fatal("ReadDSN given but the read pool is the primary's")
	}
	mustOK(t, s.Ping(ctx))
	if list := must[[]PatientDevices](t)(s.ClinicianPatients(ctx, "a", "c1")); len(list) != 1 {
		t.Errorf("ClinicianPatients through the read pool = %+v", list)
	}
	if _, err := s.ReadPool().Exec(ctx, "DELETE FROM care_relationships"); err == nil {
		t.Error("the read pool accepted a write")
	}
}

func TestOpenValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no DSN", Config{}},
		{"bad DSN", Config{DSN: "postgres://x:y@[::1"}},
		{"bad read DSN", Config{DSN: "postgres://localhost/x", ReadDSN: "postgres://x:y@[::1"}},
		{"negative pool", Config{DSN: "postgres://localhost/x", MaxConns: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(ctxT(t), tt.cfg)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Open = %v, want ErrInvalidConfig", err)
			}
			if s != nil {
				s.Close()
			}
		})
	}
}

func TestSigningKeys(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	pub := make([]byte, 32)
	must[SigningKey](t)(s.AddSigningKey(ctx, SigningKey{KID: "k1", PublicKey: pub}))
	must[SigningKey](t)(s.AddSigningKey(ctx, SigningKey{KID: "k2", PublicKey: pub, PrivateSealed: []byte("sealed")}))
	if _, err := s.AddSigningKey(ctx, SigningKey{KID: "k1", PublicKey: pub}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate kid: %v", err)
	}
	if _, err := s.AddSigningKey(ctx, SigningKey{KID: "k3", PublicKey: []byte("short")}); !errors.Is(err, ErrInvalid) {
		t.Errorf("short public key: %v, want ErrInvalid", err)
	}
	mustOK(t, s.RevokeSigningKey(ctx, SystemTenant, "k1"))
	if err := s.RevokeSigningKey(ctx, SystemTenant, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoke unknown: %v", err)
	}
	ks := must[[]SigningKey](t)(s.SigningKeys(ctx, SystemTenant))
	if len(ks) != 2 || ks[0].RevokedAt == nil || ks[1].RevokedAt != nil || string(ks[1].PrivateSealed) != "sealed" || ks[0].PrivateSealed != nil {
		t.Errorf("keys %+v", ks)
	}
}

func TestFlags(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	clinic(t, s, "a")
	must[Flag](t)(s.SetFlag(ctx, Flag{TenantID: SystemTenant, Name: "quic", Enabled: true}))
	must[Flag](t)(s.SetFlag(ctx, Flag{TenantID: SystemTenant, Name: "standard-mode", Enabled: false}))
	must[Flag](t)(s.SetFlag(ctx, Flag{TenantID: "a", Name: "standard-mode", Enabled: true, Value: []byte(`{"max_queue": 50}`)}))
	fs := must[map[string]Flag](t)(s.Flags(ctx, "a"))
	if len(fs) != 2 || !fs["quic"].Enabled || !fs["standard-mode"].Enabled || fs["standard-mode"].TenantID != "a" {
		t.Errorf("flags of a %+v", fs)
	}
	if v := string(fs["standard-mode"].Value); v != `{"max_queue": 50}` {
		t.Errorf("value %s", v)
	}
	if fs := must[map[string]Flag](t)(s.Flags(ctx, "b")); fs["standard-mode"].Enabled {
		t.Error("a's flag leaked to b")
	}
	if _, err := s.SetFlag(ctx, Flag{TenantID: "a", Name: "bad", Value: []byte("{")}); err == nil {
		t.Error("invalid JSON value accepted")
	}
}
