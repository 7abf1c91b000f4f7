package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stapes-relay/stapes/control"
	"github.com/stapes-relay/stapes/control/controlserver"
	"github.com/stapes-relay/stapes/control/controltest"
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
	api   *controltest.API
	relay *relaytest.Relay
	cred  string
	sync  *control.Syncer
	reg   *prometheus.Registry
}

// lateSource lets the relay start before the directory that needs its
// addresses exists.
type lateSource struct{ *control.Directory }

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

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
	s.api = &controltest.API{T: t, Base: s.hs.URL, Client: s.hs.Client()}
	s.cred = s.api.SeedClinic(operator, "relay-a")

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
	sess := s.api.NewSession()
	if sess.Relay.WSURL != s.relay.WSURL {
		t.Fatalf("placed on %s, want the test relay", sess.Relay.WSURL)
	}
	chat := controltest.Join(t, s.relay, sess)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.sync.Run(ctx) }()
	defer func() { cancel(); <-done }()

	chat.Exchange(40)
	if err := s.pg.Kill(); err != nil { // Postgres really stops
		t.Fatal(err)
	}
	chat.Exchange(120) // the relay goes on acknowledging with the database down
	controltest.WaitSyncErrors(t, s.reg, 2)
	if err := s.pg.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	chat.Exchange(40)
	chat.WaitDrained(s.relay.Store, sess.SessionID)
	chat.CheckExactlyOnce(func(query string) int { return s.count(query, sess.SessionID) })
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
	sess := s.api.NewSession()
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
