package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestGossipSeeds(t *testing.T) {
	m := []byte(`{"relays":[
		{"id":"a","healthy":true,"addresses":{"gossip":"10.0.0.1:7946","ws":"wss://a"}},
		{"id":"b","healthy":false,"addresses":{"gossip":"10.0.0.2:7946"}},
		{"id":"self","healthy":true,"addresses":{"gossip":"10.0.0.3:7946"}},
		{"id":"c","healthy":true,"addresses":{"ws":"wss://c"}},
		{"id":"d","healthy":true,"addresses":{"gossip":"10.0.0.4:7946"}}]}`)
	if got, want := gossipSeeds(m, "self"), []string{"10.0.0.1:7946", "10.0.0.4:7946"}; !slices.Equal(got, want) {
		t.Fatalf("seeds %v, want %v (healthy others with a gossip address)", got, want)
	}
	for _, bad := range []string{"", "{", `{"relays":7}`, "null"} {
		if got := gossipSeeds([]byte(bad), "self"); got != nil {
			t.Fatalf("seeds of %q = %v, want none", bad, got)
		}
	}
}

// TestGossipJoinFromControlPlane: relays given no --gossip-seeds find each
// other through the control plane — each publishes its gossip address
// when it registers, and joins through the addresses of the others in
// the relay map controld serves to relays (the public map leaves them
// out). Two relayd processes with a real controld over Postgres end up in
// one gossip cluster.
func TestGossipJoinFromControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postgres and two relayd processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	const operator = "operator-secret-token"
	hs, api, _ := startControld(ctx, t, operator, quiet, nil)
	creds := map[string]string{"relay-eu": api.SeedClinic(operator, "relay-eu")}
	var rel struct {
		Credential string `json:"credential"`
	}
	api.Call(201, "POST", "/v1/operator/relays", operator, map[string]any{"id": "relay-us", "region": "us", "capacity": 100}, &rel)
	creds["relay-us"] = rel.Credential

	dir, _, _, _ := childSetup(t)
	certFile, keyFile, secretFile, tc := clusterFiles(t, dir)
	var nodes []*node
	ops := map[*node]string{}
	for _, id := range []string{"relay-eu", "relay-us"} {
		credFile := filepath.Join(dir, id+".cred")
		if err := os.WriteFile(credFile, []byte(creds[id]+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		n := &node{t: t, id: id, addr: freePair(t)}
		n.args = []string{"--listen", n.addr, "--ops", "127.0.0.1:0", "--data", filepath.Join(dir, id),
			"--tls-cert", certFile, "--tls-key", keyFile, "--relay-id", id, "--region", id[len("relay-"):], "--log-level", "info",
			"--control-url", hs.URL, "--node-credential-file", credFile,
			"--peer-listen", freeUDP(t), "--peer-secret-file", secretFile,
			"--gossip-listen", freePair(t), "--gossip-profile", "local", "--gossip-cluster", "join-test"}
		n.start(tc)
		select {
		case ops[n] = <-n.c.ops:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s logged no ops address", id)
		}
		nodes = append(nodes, n)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		err := func() error {
			for _, n := range nodes {
				m, err := fetchClusterMap(ops[n])
				if err != nil {
					return err
				}
				for _, want := range nodes {
					if s := m.state(want.id); s != "alive" {
						return fmt.Errorf("%s sees %s %q", n.id, want.id, s)
					}
				}
			}
			return nil
		}()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no gossip cluster from the control plane's relay map within a minute: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // polling child processes' maps
	}
}
