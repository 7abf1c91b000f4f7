package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/client"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/token"
)

// clusterMap is relayd's /v1/map with gossip on.
type clusterMap struct {
	Source  string             `json:"source"`
	Self    string             `json:"self"`
	Regions []client.MapRegion `json:"regions"`
	Relays  []clusterRelay     `json:"relays"`
}

// clusterRelay is the control plane's relay map entry plus gossip state.
type clusterRelay struct {
	client.MapRelay
	State string `json:"state"`
	Self  bool   `json:"self"`
}

// healthy returns how many healthy relays the map counts in region.
func (m *clusterMap) healthy(region string) int {
	for _, r := range m.Regions {
		if r.Name == region {
			return r.Healthy
		}
	}
	return 0
}

// state returns the state id has in the map ("" if it is not listed).
func (m *clusterMap) state(id string) string {
	for _, r := range m.Relays {
		if r.ID == id {
			return r.State
		}
	}
	return ""
}

var mapClient = &http.Client{Timeout: 2 * time.Second}

func fetchClusterMap(ops string) (*clusterMap, error) {
	resp, err := mapClient.Get("http://" + ops + "/v1/map")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/map: %s", resp.Status)
	}
	var m clusterMap
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return nil, err
	}
	return &m, nil
}

// TestClusterMembership is issue 6's acceptance 1 on real processes: three
// relays in three regions (eu, us, ap) gossip on loopback with an
// encryption key and converge — each one's /v1/map lists all three alive
// with the right region and addresses. A relay SIGKILLed is reported dead
// by the other two; restarted on the same ports and data it is alive
// everywhere again; a relay stopped with SIGTERM drains and is reported
// left, not failed. Before that, a clinician on the eu relay and a patient
// on the us relay run config commands through the relay-to-relay link
// (acceptance 2). No timing is asserted: every wait is a bounded poll.
func TestClusterMembership(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three relayd processes")
	}
	dir, keyring, signer, _ := childSetup(t)
	certFile, keyFile, secretFile, tc := clusterFiles(t, dir)
	key := make([]byte, 32)
	rand.Read(key)
	gossipKey := filepath.Join(dir, "gossip-key")
	if err := os.WriteFile(gossipKey, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	regions := []string{"eu", "us", "ap"}
	var nodes []*node
	gossipAddr := map[*node]string{}
	for _, r := range regions {
		n := &node{t: t, id: "relay-" + r, addr: freePair(t)}
		nodes = append(nodes, n)
		gossipAddr[n] = freePair(t) // memberlist takes TCP and UDP on one port
	}
	var seeds []string
	for _, n := range nodes {
		seeds = append(seeds, gossipAddr[n])
	}
	region := map[string]string{}
	for i, n := range nodes {
		region[n.id] = regions[i]
		n.args = []string{"--listen", n.addr, "--ops", "127.0.0.1:0", "--data", filepath.Join(dir, n.id), "--keyring", keyring,
			"--tls-cert", certFile, "--tls-key", keyFile, "--relay-id", n.id, "--region", regions[i], "--log-level", "info",
			"--peer-listen", freeUDP(t), "--peer-secret-file", secretFile,
			"--gossip-listen", gossipAddr[n], "--gossip-seeds", strings.Join(seeds, ","), "--gossip-key-file", gossipKey,
			"--gossip-profile", "local", "--gossip-cluster", "cluster-test", "--drain-timeout", "10s"}
	}
	ops := map[*node]string{}
	start := func(n *node) {
		n.start(tc)
		select {
		case ops[n] = <-n.c.ops:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s logged no ops address", n.id)
		}
	}
	for _, n := range nodes {
		start(n)
	}

	// waitMaps polls the maps of the given relays until check accepts
	// every one of them, or a minute passes.
	waitMaps := func(what string, on []*node, check func(n *node, m *clusterMap) error) time.Duration {
		t.Helper()
		began := time.Now()
		deadline := began.Add(time.Minute)
		for {
			var err error
			for _, n := range on {
				m, ferr := fetchClusterMap(ops[n])
				if ferr != nil {
					err = fmt.Errorf("%s: %w", n.id, ferr)
					break
				}
				if cerr := check(n, m); cerr != nil {
					raw, _ := json.Marshal(m)
					err = fmt.Errorf("%s: %w (map %s)", n.id, cerr, raw)
					break
				}
			}
			if err == nil {
				took := time.Since(began)
				t.Logf("%s: after %v", what, took.Round(time.Millisecond))
				return took
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within a minute: %v", what, err)
			}
			time.Sleep(50 * time.Millisecond) // polling other processes' maps
		}
	}
	// allAlive checks a map lists the three relays alive with the right
	// metadata, and itself as self.
	allAlive := func(n *node, m *clusterMap) error {
		if m.Source != "gossip" || m.Self != n.id {
			return fmt.Errorf("source %q self %q, want gossip %s", m.Source, m.Self, n.id)
		}
		if len(m.Relays) != len(nodes) {
			return fmt.Errorf("%d relays, want %d", len(m.Relays), len(nodes))
		}
		for _, want := range nodes {
			i := slices.IndexFunc(m.Relays, func(r clusterRelay) bool { return r.ID == want.id })
			if i < 0 {
				return fmt.Errorf("%s missing", want.id)
			}
			r := m.Relays[i]
			if r.State != "alive" || r.Draining {
				return fmt.Errorf("%s is %s (draining %v)", r.ID, r.State, r.Draining)
			}
			if r.Region != region[r.ID] || r.Addresses["quic"] != "quic://"+want.addr || r.Addresses["ws"] != "wss://"+want.addr+relay.WSPath || r.Self != (r.ID == n.id) || !r.Healthy {
				return fmt.Errorf("%s: region %q quic %q ws %q self %v healthy %v; want %q %q %q %v", r.ID, r.Region, r.Addresses["quic"], r.Addresses["ws"], r.Self, r.Healthy,
					region[r.ID], "quic://"+want.addr, "wss://"+want.addr+relay.WSPath, r.ID == n.id)
			}
		}
		for _, reg := range regions {
			if m.healthy(reg) != 1 {
				return fmt.Errorf("regions %v, want one healthy relay in each of %v", m.Regions, regions)
			}
		}
		return nil
	}
	// gone checks the victim is listed in state want and its region has
	// no alive relay.
	gone := func(victim *node, want string) func(*node, *clusterMap) error {
		return func(_ *node, m *clusterMap) error {
			if got := m.state(victim.id); got != want {
				return fmt.Errorf("%s is %q, want %q", victim.id, got, want)
			}
			if m.healthy(region[victim.id]) != 0 {
				return fmt.Errorf("regions %v: %s still counted", m.Regions, region[victim.id])
			}
			return nil
		}
	}
	others := func(victim *node) []*node {
		return slices.DeleteFunc(slices.Clone(nodes), func(n *node) bool { return n == victim })
	}

	converge := waitMaps("three relays converged", nodes, allAlive)
	// The SDK reads a relay's map like the control plane's.
	rm, err := client.FetchMap(t.Context(), mapClient, "http://"+ops[nodes[1]]+"/v1/map")
	if err != nil {
		t.Fatalf("client.FetchMap on relayd's map: %v", err)
	}
	if c := rm.Candidates("quic"); len(c) != len(nodes) {
		t.Fatalf("relayd's map gives the SDK %d QUIC candidates, want %d: %+v", len(c), len(nodes), c)
	}

	// Acceptance 2 on real processes: the session is placed on the eu
	// relay; the clinician connects there, the patient to its nearest
	// relay (us), which serves it through the relay-to-relay link.
	mint := func(role, subject string) []byte {
		tok, err := signer.Sign(token.Claims{Tenant: "t1", Subject: subject, Role: role, Session: "span", Device: "HA-1", Model: "m1",
			Relay: nodes[0].id, Expiry: time.Now().Add(time.Hour).Unix(), IssuedAt: time.Now().Unix(), ID: subject + role})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	clin := relaytest.DialAddr(t, nodes[0].addr, tc, "ws")
	clin.Hello(mint("clinician", "c1"), false, 0)
	pat := relaytest.DialAddr(t, nodes[1].addr, tc, "quic")
	if w := pat.Hello(mint("patient", "p1"), false, 0); w.Epoch != 1 || w.Session != "span" {
		t.Fatalf("patient at %s: WELCOME %+v", nodes[1].id, w)
	}
	if v := metricValue(t, ops[nodes[1]], "stapes_relay_forwarded_connections"); v != "1" {
		t.Fatalf("%s forwards %q connections, want 1", nodes[1].id, v)
	}
	fit := relaytest.NewFitter(t, clin, pat)
	for range 25 {
		fit.Command()
	}
	pat.Close()
	pat = relaytest.DialAddr(t, nodes[1].addr, tc, "ws")
	pat.Hello(mint("patient", "p1"), true, fit.Last)
	fit.Pat = pat
	for range 25 {
		fit.Command()
	}
	clin.Close()

	victim := nodes[0] // the first seed
	victim.c.kill()    // SIGKILL by pid
	// The patient forwarded to the victim (the session's home) is told
	// when the link dies, so it can resume (bounded wait, not a timing).
	killed := time.Now()
	if code, closed := pat.ClosedWith(time.Minute); !closed || code != wire.CodeUnavailable {
		t.Fatalf("forwarded patient after its home was killed: closed %v code %v, want unavailable", closed, code)
	}
	linkLost := time.Since(killed)
	detect := waitMaps("SIGKILLed "+victim.id+" reported dead by the others", others(victim), gone(victim, "dead"))
	start(victim)
	rejoin := waitMaps(victim.id+" restarted: three alive again", nodes, allAlive)

	leaver := nodes[2]
	termAt := time.Now()
	if err := leaver.c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-leaver.c.exit:
		leaver.c.exit <- err
		if err != nil {
			t.Fatalf("%s after SIGTERM: %v", leaver.id, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not exit within 30s of SIGTERM", leaver.id)
	}
	exited := time.Since(termAt)
	left := waitMaps("SIGTERMed "+leaver.id+" reported left by the others", others(leaver), gone(leaver, "left"))
	t.Logf("forwarded client told of its dead home after %v", linkLost.Round(time.Millisecond))
	t.Logf("converged %v, SIGKILL detected %v, rejoined %v, SIGTERM to exit %v, leave seen %v after (local profile, loopback)",
		converge.Round(time.Millisecond), detect.Round(time.Millisecond), rejoin.Round(time.Millisecond), exited.Round(time.Millisecond), left.Round(time.Millisecond))
}

// metricValue reads one unlabelled metric from a relay's ops /metrics.
func metricValue(t *testing.T, ops, name string) string {
	t.Helper()
	_, metrics := get(t, "http://"+ops+"/metrics")
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}
