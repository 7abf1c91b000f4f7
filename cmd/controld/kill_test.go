package main

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stapes-relay/stapes/control"
	"github.com/stapes-relay/stapes/control/controltest"
	"github.com/stapes-relay/stapes/control/pglocal/pgtest"
	"github.com/stapes-relay/stapes/control/pgstore"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/token"
)

const killOperator = "kill-test-operator-token"

// TestControldSIGKILLLosesNothing (issue 5, acceptance 3, controld half):
// a real controld process is killed with SIGKILL while a relay's syncer
// ships a live session to it; the relay keeps acknowledging; a new
// controld on the same database and port takes over, the backlog drains,
// and every acknowledged message and receipt is in Postgres exactly once
// with an intact audit chain.
func TestControldSIGKILLLosesNothing(t *testing.T) {
	dir := t.TempDir()
	dsn := pgtest.Start(t)
	opFile := filepath.Join(dir, "operator-token")
	if err := os.WriteFile(opFile, []byte(killOperator), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args := []string{"serve", "--database-url", dsn, "--migrate", "--plain", "--listen", addr, "--ops", "127.0.0.1:0",
		"--secret-file", filepath.Join(dir, "secret"), "--operator-token-file", opFile, "--log-level", "info"}
	cd := startControld(t, args...)
	cd.waitReady(t)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	api := &controltest.API{T: t, Base: "http://" + addr, Client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	cred := api.SeedClinic(killOperator, "relay-a")

	kr := token.NewKeyring()
	var keys struct {
		Keys []struct {
			KID       string `json:"kid"`
			PublicKey string `json:"public_key"`
		} `json:"keys"`
	}
	api.Call(200, "GET", "/v1/relay/keys", cred, nil, &keys)
	for _, k := range keys.Keys {
		pub, _ := base64.StdEncoding.DecodeString(k.PublicKey)
		if err := kr.Add(k.KID, pub); err != nil {
			t.Fatal(err)
		}
	}
	quiet := slog.New(slog.DiscardHandler)
	rl := relaytest.Start(t, relaytest.Options{Logger: quiet, Configure: func(c *relay.Config) { c.Auth = kr; c.RelayID = "relay-a" }})
	api.Call(200, "POST", "/v1/relay/register", cred, map[string]any{"addresses": map[string]string{"ws": rl.WSURL}}, nil)
	api.Call(200, "POST", "/v1/relay/heartbeat", cred, map[string]any{"load": 0, "draining": false}, nil)
	sess := api.NewSession()
	chat := controltest.Join(t, rl, sess)

	reg := prometheus.NewRegistry()
	syncTr := &http.Transport{}
	defer syncTr.CloseIdleConnections()
	sy, err := control.NewSyncer(control.SyncConfig{Outbox: rl.Store, Relay: "relay-a", URL: api.Base, Credential: cred,
		HTTPClient: &http.Client{Transport: syncTr, Timeout: 10 * time.Second}, Registerer: reg, MaxRecords: 20,
		Interval: 10 * time.Millisecond, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sy.Run(ctx) }()
	defer func() { cancel(); <-done }()

	chat.Exchange(60) // the syncer ships while the session runs
	if err := cd.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-cd.done
	chat.Exchange(80) // controld is gone; the relay goes on acknowledging
	controltest.WaitSyncErrors(t, reg, 2)
	cd = startControld(t, args...)
	cd.waitReady(t)
	chat.Exchange(20)
	chat.WaitDrained(rl.Store, sess.SessionID)

	st, err := pgstore.Open(context.Background(), pgstore.Config{DSN: dsn, Logger: quiet, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	chat.CheckExactlyOnce(func(query string) int {
		var n int
		if err := st.Pool().QueryRow(context.Background(), "SELECT count(*) FROM "+query, sess.SessionID).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", query, err)
		}
		return n
	})
}
