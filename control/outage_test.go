package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stapes-relay/stapes/control"
	"github.com/stapes-relay/stapes/control/controlserver"
	"github.com/stapes-relay/stapes/control/pglocal"
	"github.com/stapes-relay/stapes/control/pglocal/pgtest"
	"github.com/stapes-relay/stapes/control/pgstore"
	"github.com/stapes-relay/stapes/control/pgstore/password"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/token"
)

const operator = "operator-secret-token"

// controlStack is a real controld API over a Postgres server of its own
// (so the test can kill it), and a real relay that registers with it,
// takes its token keys from it and syncs to it.
type controlStack struct {
	t     *testing.T
	pg    *pglocal.Server
	st    *pgstore.Store
	hs    *httptest.Server
	relay *relaytest.Relay
	cred  string
	sync  *control.Syncer
	reg   *prometheus.Registry
}

func syncErrors(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "stapes_relay_sync_batches_total" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == "error" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// lateSource lets the relay start before the directory that needs its
// addresses exists.
type lateSource struct{ *control.Directory }

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func (s *controlStack) call(want int, method, path, bearer string, body, out any) {
	s.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, s.hs.URL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		s.t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			s.t.Fatal(err)
		}
	}
}

func newControlStack(t *testing.T) *controlStack {
	ctx := context.Background()
	s := &controlStack{t: t}
	s.pg = pgtest.NewServer(t, pglocal.Options{})
	if err := s.pg.CreateDatabase(ctx, "stapes"); err != nil {
		t.Fatal(err)
	}
	st, err := pgstore.Open(ctx, pgstore.Config{DSN: s.pg.DSN("stapes"), Logger: quiet(), MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	s.st = st
	srv, err := controlserver.New(controlserver.Config{Store: st, Secret: bytes.Repeat([]byte{9}, 32), OperatorToken: operator,
		Password: &password.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.EnsureSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	s.hs = httptest.NewServer(srv.Handler())
	t.Cleanup(s.hs.Close)

	s.call(201, "POST", "/v1/operator/tenants", operator, map[string]any{"id": "t1", "name": "Clinic"}, nil)
	s.call(201, "POST", "/v1/operator/tenants/t1/clinicians", operator, map[string]any{"id": "c1", "email": "doc@t1.example", "password": "correct horse battery"}, nil)
	s.call(201, "POST", "/v1/operator/tenants/t1/patients", operator, map[string]any{"id": "p1"}, nil)
	s.call(201, "POST", "/v1/operator/tenants/t1/devices", operator, map[string]any{"serial": "SN1", "model": "m1", "patient_id": "p1"}, nil)
	s.call(200, "POST", "/v1/operator/tenants/t1/care", operator, map[string]any{"clinician_id": "c1", "patient_id": "p1"}, nil)
	var node struct {
		Credential string `json:"credential"`
	}
	s.call(201, "POST", "/v1/operator/relays", operator, map[string]any{"id": "relay-a", "region": "eu", "capacity": 100}, &node)
	s.cred = node.Credential

	kr := token.NewKeyring()
	devices := &lateSource{}
	s.relay = relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) {
		c.Auth, c.RelayID, c.Devices = kr, "relay-a", devices
	}})
	dir, err := control.NewDirectory(control.DirectoryConfig{URL: s.hs.URL, Credential: s.cred, Keyring: kr,
		Addresses: map[string]string{"ws": s.relay.WSURL, "quic": s.relay.QUICURL}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	devices.Directory = dir
	if err := dir.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dir.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dir.RefreshMap(ctx); err != nil {
		t.Fatal(err)
	}
	var m struct {
		Relays []struct {
			ID      string `json:"id"`
			Healthy bool   `json:"healthy"`
		} `json:"relays"`
	}
	if err := json.Unmarshal(dir.RelayMap(), &m); err != nil || len(m.Relays) != 1 || m.Relays[0].ID != "relay-a" || !m.Relays[0].Healthy {
		t.Fatalf("relay map %s (%v): want relay-a, healthy", dir.RelayMap(), err)
	}
	s.reg = prometheus.NewRegistry()
	s.sync, err = control.NewSyncer(control.SyncConfig{Outbox: s.relay.Store, Relay: "relay-a", URL: s.hs.URL, Credential: s.cred, Registerer: s.reg,
		MaxRecords: 100, Interval: 20 * time.Millisecond, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *controlStack) count(query string, args ...any) int {
	s.t.Helper()
	var n int
	if err := s.st.Pool().QueryRow(context.Background(), "SELECT count(*) FROM "+query, args...).Scan(&n); err != nil {
		s.t.Fatalf("count %s: %v", query, err)
	}
	return n
}

// TestPostgresOutageLosesNothing (issue 5, acceptance 3): Postgres is
// killed while a clinician and a patient keep exchanging messages; the
// relay keeps acknowledging; when Postgres is back the syncer drains the
// backlog and every acknowledged message and receipt is in Postgres
// exactly once, with an intact audit chain.
func TestPostgresOutageLosesNothing(t *testing.T) {
	s := newControlStack(t)
	var login struct {
		Token string `json:"token"`
	}
	s.call(200, "POST", "/v1/login", "", map[string]any{"email": "doc@t1.example", "password": "correct horse battery"}, &login)
	var sess struct {
		SessionID      string `json:"session_id"`
		ClinicianToken string `json:"clinician_token"`
		PatientToken   string `json:"patient_token"`
		Relay          struct {
			WSURL string `json:"ws_url"`
		} `json:"relay"`
	}
	s.call(201, "POST", "/v1/sessions", login.Token, map[string]any{"patient_id": "p1", "device_serial": "SN1"}, &sess)
	if sess.Relay.WSURL != s.relay.WSURL {
		t.Fatalf("placed on %s, want the test relay", sess.Relay.WSURL)
	}
	cl := relaytest.Dial(t, s.relay, "ws")
	cl.Hello([]byte(sess.ClinicianToken), false, 0)
	pt := relaytest.Dial(t, s.relay, "quic")
	pt.Hello([]byte(sess.PatientToken), false, 0)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.sync.Run(ctx) }()
	defer func() { cancel(); <-done }()

	acked := 0
	exchange := func(n int) {
		for range n {
			cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: fmt.Sprint("m", acked), Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: []byte("hello")})
			cl.NextOf(wire.TypePersisted, 10*time.Second)
			acked++
			d := pt.NextOf(wire.TypeDeliver, 10*time.Second)
			pt.Send(&wire.Frame{Type: wire.TypeAck, Seq: d.Seq, Stage: wire.StageReceived})
		}
	}
	exchange(40)
	if err := s.pg.Kill(); err != nil { // Postgres really stops
		t.Fatal(err)
	}
	exchange(120) // the relay goes on acknowledging with the database down
	// The syncer keeps trying against the dead database and fails.
	for deadline := time.Now().Add(10 * time.Second); syncErrors(t, s.reg) < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the syncer never failed while Postgres was down")
		}
		time.Sleep(10 * time.Millisecond) // polling a metric
	}
	if err := s.pg.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	exchange(40)
	head := uint64(2 * acked) // every message and its receipt
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, _ := s.relay.Store.Head(context.Background(), sess.SessionID)
		if h >= head && s.relay.Store.OutboxAcked() == s.relay.Store.OutboxStable() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog not drained: head %d of %d, outbox acked %d of %d", h, head,
				s.relay.Store.OutboxAcked(), s.relay.Store.OutboxStable())
		}
		time.Sleep(20 * time.Millisecond) // polling the syncer
	}
	if got := s.count("messages WHERE tenant_id = 't1' AND session_id = $1", sess.SessionID); got != acked {
		t.Errorf("messages in Postgres = %d, acknowledged %d", got, acked)
	}
	if got := s.count("receipts WHERE tenant_id = 't1' AND session_id = $1", sess.SessionID); got != acked {
		t.Errorf("receipts in Postgres = %d, want %d", got, acked)
	}
	if got := s.count("audit_log WHERE session_id = $1 AND NOT chain_broken", sess.SessionID); got != 2*acked {
		t.Errorf("valid audit rows = %d, want %d", got, 2*acked)
	}
	if got := s.count("(SELECT client_id FROM messages WHERE session_id = $1 GROUP BY client_id HAVING count(*) > 1) d", sess.SessionID); got != 0 {
		t.Errorf("%d messages stored twice", got)
	}
}

// TestDeviceVersionFromControlPlane: a device fitted elsewhere (its applied
// version advanced in Postgres) starts a session on this relay at that
// version: the relay learns it from controld, so a command on the old base
// is a conflict and one on the new base goes through.
func TestDeviceVersionFromControlPlane(t *testing.T) {
	s := newControlStack(t)
	ctx := context.Background()
	for base := uint64(0); base < 3; base++ {
		if _, err := s.st.AdvanceDeviceConfig(ctx, pgstore.ConfigChange{TenantID: "t1", Serial: "SN1", Base: base, Params: map[string]int64{"gain.l.2k": int64(10 * (base + 1))}}); err != nil {
			t.Fatal(err)
		}
	}
	var login struct {
		Token string `json:"token"`
	}
	s.call(200, "POST", "/v1/login", "", map[string]any{"email": "doc@t1.example", "password": "correct horse battery"}, &login)
	var sess struct {
		ClinicianToken string `json:"clinician_token"`
	}
	s.call(201, "POST", "/v1/sessions", login.Token, map[string]any{"patient_id": "p1", "device_serial": "SN1"}, &sess)
	cl := relaytest.Dial(t, s.relay, "ws")
	w := cl.Hello([]byte(sess.ClinicianToken), false, 0)
	if w.ConfigVersion != 3 {
		t.Fatalf("WELCOME config version %d, want 3 from the control plane", w.ConfigVersion)
	}
	cfg, err := wire.DecodeConfig(w.Config)
	if err != nil || len(cfg.Params) != 1 || cfg.Params[0].Value != 30 {
		t.Fatalf("WELCOME config %+v (%v), want gain.l.2k=30", cfg, err)
	}
	send := func(id string, base uint64) wire.Frame {
		cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: id, Kind: wire.KindConfig, Flags: wire.FlagDurable,
			Payload: wire.AppendConfig(nil, &wire.Config{BaseVersion: base, Params: []wire.Param{{Name: "gain.l.2k", Value: 40}}})})
		f, err := cl.Next(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	if f := send("old-base", 0); f.Type != wire.TypeError || f.Code != wire.CodeConflict || f.ConfigVersion != 3 {
		t.Fatalf("command on base 0: %v %v (head %d), want conflict at 3", f.Type, f.Code, f.ConfigVersion)
	}
	if f := send("new-base", 3); f.Type != wire.TypePersisted {
		t.Fatalf("command on base 3: %v %v, want PERSISTED", f.Type, f.Code)
	}
}
