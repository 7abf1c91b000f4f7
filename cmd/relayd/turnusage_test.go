package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stapes-relay/stapes/control"
	"github.com/stapes-relay/stapes/control/controlserver"
	"github.com/stapes-relay/stapes/control/controltest"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/storage"
	"github.com/stapes-relay/stapes/token"
	"github.com/stapes-relay/stapes/turn"
)

// TestTURNUsageSyncedToPostgres (issue 7, end to end, in one process but
// nothing faked): controld over a real Postgres with a TURN secret; a
// relay and its TURN server (relayd's usage recorder on OnUsage) register
// with it, publishing their TURN address. A session's answer carries the
// relay's ICE servers with a credential for that session; a TURN client
// allocates with it and relays to a lab peer; when the allocation closes,
// the usage goes into the relay's outbox as a turn_usage event with the
// session's tenant, is synced, and is a row in session_events. Usage of a
// session this relay knows nothing about is dropped and counted, and does
// not hold up the outbox: the event after it is synced too.
func TestTURNUsageSyncedToPostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	secret := []byte("usage-turn-secret-0123456789abcdef")

	const operator = "operator-secret-token"
	hs, api, st := startControld(ctx, t, operator, quiet, func(c *controlserver.Config) { c.TURNSecrets = [][]byte{secret} })
	cred := api.SeedClinic(operator, "relay-a")

	// The relay, its TURN server and the recorder, wired as relayd does.
	kr := token.NewKeyring()
	r := relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) { c.Auth, c.RelayID = kr, "relay-a" }})
	reg := prometheus.NewRegistry()
	rec, err := newUsageRecorder(r.Store, r.Server, "relay-a", reg, prometheus.Labels{"relay": "relay-a", "region": "eu"}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	pcs, err := turn.ListenUDP(ctx, "udp4", "127.0.0.1:0", 1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	tcfg := turn.LocalConfig(&turn.Credentials{Secrets: [][]byte{secret}})
	tcfg.PacketConns, tcfg.OnUsage, tcfg.Logger = pcs, rec.OnUsage, quiet
	ts, err := turn.New(tcfg)
	if err != nil {
		t.Fatal(err)
	}
	rec.start(ts)
	h := &turnHandle{usage: rec}
	h.srv.Store(ts)
	h.udp, _, _ = ts.Addrs()
	defer h.Close()

	addrs := map[string]string{"ws": r.WSURL}
	for k, v := range h.published("127.0.0.1") {
		addrs[k] = v
	}
	dir, err := control.NewDirectory(control.DirectoryConfig{URL: hs.URL, Credential: cred, Keyring: kr, Addresses: addrs, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := dir.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dir.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	syncer, err := control.NewSyncer(control.SyncConfig{Outbox: r.Store, Relay: "relay-a", URL: hs.URL, Credential: cred, Logger: quiet,
		Registerer: reg, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}

	// A session with ICE servers for this relay's TURN.
	var s struct {
		controltest.Session
		ICEServers []struct {
			URLs       []string `json:"urls"`
			Username   string   `json:"username"`
			Credential string   `json:"credential"`
		} `json:"ice_servers"`
	}
	api.Call(http.StatusCreated, "POST", "/v1/sessions", api.Login(), map[string]any{"patient_id": "p1", "device_serial": "SN1"}, &s)
	if len(s.ICEServers) != 1 || len(s.ICEServers[0].URLs) != 2 || s.ICEServers[0].URLs[0] != "turn:"+h.udp+"?transport=udp" {
		t.Fatalf("ice_servers = %+v, want this relay's TURN at %s (udp, tcp)", s.ICEServers, h.udp)
	}
	ice := s.ICEServers[0]
	// The participants are on the relay, so it knows the session's tenant.
	controltest.Join(t, r, s.Session)

	allocate := func(user, pass string) {
		t.Helper()
		rc, release := turnAllocate(t, h.udp, user, pass)
		defer release() // a Refresh with lifetime 0: the allocation ends, its usage is recorded
		peer, err := net.ListenPacket("udp4", "127.0.0.2:0")
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		buf := make([]byte, 1500)
		for i := range 5 {
			if _, err := rc.WriteTo(bytes.Repeat([]byte{byte(i)}, 100), peer.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, _, err := peer.ReadFrom(buf); err != nil {
				t.Fatalf("peer: %v", err)
			}
		}
	}
	usageRows := func() int {
		var n int
		if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM session_events WHERE tenant_id = 't1' AND session_id = $1
			AND kind = 'turn_usage' AND relay_node_id = 'relay-a' AND data->>'bytes_in' = '500' AND data->>'packets_in' = '5'
			AND data->>'relay' = 'relay-a' AND (data->>'allocations')::int = 1`, s.SessionID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	syncUntil := func(what string, cond func() bool) {
		t.Helper()
		waitFor(t, what, 30*time.Second, func() bool {
			if _, err := syncer.SyncOnce(ctx); err != nil {
				t.Fatalf("sync: %v", err)
			}
			return cond()
		})
	}

	// 1. controld's credential allocates; the usage reaches Postgres.
	allocate(ice.Username, ice.Credential)
	syncUntil("a turn_usage row", func() bool { return usageRows() == 1 })

	// 2. A session this relay never saw: dropped, counted.
	creds := &turn.Credentials{Secrets: [][]byte{secret}}
	u, p, _, err := creds.Mint("ses-elsewhere", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	allocate(u, p)
	waitFor(t, "the unknown session's usage dropped", 10*time.Second, func() bool {
		return counterValue(rec.dropped.WithLabelValues(usageUnknownSession)) == 1
	})

	// 3. A tenant-less event of an unknown session already in the outbox
	// (an older relay wrote it) does not hold up what comes after it.
	if _, err := r.Store.AppendEvent(ctx, storage.Event{Session: "ses-ghost", Kind: 5, At: time.Now(), Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	allocate(ice.Username, ice.Credential)
	syncUntil("the second turn_usage row past the ghost event", func() bool { return usageRows() == 2 })
	if got := counterValue(rec.recorded); got != 2 {
		t.Errorf("records = %v, want 2", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "stapes_relay_sync_events_dropped_total" && mf.GetMetric()[0].GetCounter().GetValue() != 1 {
			t.Errorf("sync events dropped = %v, want 1", mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
