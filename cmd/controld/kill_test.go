package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stapes-relay/stapes/control"
	"github.com/stapes-relay/stapes/control/pglocal/pgtest"
	"github.com/stapes-relay/stapes/control/pgstore"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/token"
)

const killOperator = "kill-test-operator-token"

// apiClient calls a controld child over plain HTTP.
type apiClient struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func (c *apiClient) call(want int, method, path, bearer string, body, out any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatal(err)
		}
	}
}

func syncFailures(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "stapes_relay_sync_batches_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == "error" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

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
	api := &apiClient{t: t, base: "http://" + addr, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}

	api.call(201, "POST", "/v1/operator/tenants", killOperator, map[string]any{"id": "t1", "name": "Clinic"}, nil)
	api.call(201, "POST", "/v1/operator/tenants/t1/clinicians", killOperator, map[string]any{"id": "c1", "email": "doc@t1.example", "password": "correct horse battery"}, nil)
	api.call(201, "POST", "/v1/operator/tenants/t1/patients", killOperator, map[string]any{"id": "p1"}, nil)
	api.call(201, "POST", "/v1/operator/tenants/t1/devices", killOperator, map[string]any{"serial": "SN1", "model": "m1", "patient_id": "p1"}, nil)
	api.call(200, "POST", "/v1/operator/tenants/t1/care", killOperator, map[string]any{"clinician_id": "c1", "patient_id": "p1"}, nil)
	var node struct {
		Credential string `json:"credential"`
	}
	api.call(201, "POST", "/v1/operator/relays", killOperator, map[string]any{"id": "relay-a", "region": "eu"}, &node)

	kr := token.NewKeyring()
	var keys struct {
		Keys []struct {
			KID       string `json:"kid"`
			PublicKey string `json:"public_key"`
		} `json:"keys"`
	}
	api.call(200, "GET", "/v1/relay/keys", node.Credential, nil, &keys)
	for _, k := range keys.Keys {
		pub, _ := base64.StdEncoding.DecodeString(k.PublicKey)
		if err := kr.Add(k.KID, pub); err != nil {
			t.Fatal(err)
		}
	}
	quiet := slog.New(slog.DiscardHandler)
	rl := relaytest.Start(t, relaytest.Options{Logger: quiet, Configure: func(c *relay.Config) { c.Auth = kr; c.RelayID = "relay-a" }})
	api.call(200, "POST", "/v1/relay/register", node.Credential, map[string]any{"addresses": map[string]string{"ws": rl.WSURL}}, nil)
	api.call(200, "POST", "/v1/relay/heartbeat", node.Credential, map[string]any{"load": 0, "draining": false}, nil)

	var login struct {
		Token string `json:"token"`
	}
	api.call(200, "POST", "/v1/login", "", map[string]any{"email": "doc@t1.example", "password": "correct horse battery"}, &login)
	var sess struct {
		SessionID      string `json:"session_id"`
		ClinicianToken string `json:"clinician_token"`
		PatientToken   string `json:"patient_token"`
	}
	api.call(201, "POST", "/v1/sessions", login.Token, map[string]any{"patient_id": "p1", "device_serial": "SN1"}, &sess)
	cl := relaytest.Dial(t, rl, "ws")
	cl.Hello([]byte(sess.ClinicianToken), false, 0)
	pt := relaytest.Dial(t, rl, "quic")
	pt.Hello([]byte(sess.PatientToken), false, 0)

	reg := prometheus.NewRegistry()
	syncTr := &http.Transport{}
	defer syncTr.CloseIdleConnections()
	sy, err := control.NewSyncer(control.SyncConfig{Outbox: rl.Store, Relay: "relay-a", URL: api.base, Credential: node.Credential,
		HTTPClient: &http.Client{Transport: syncTr, Timeout: 10 * time.Second}, Registerer: reg, MaxRecords: 20,
		Interval: 10 * time.Millisecond, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sy.Run(ctx) }()
	defer func() { cancel(); <-done }()

	acked := 0
	exchange := func(n int) {
		t.Helper()
		for range n {
			cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: fmt.Sprint("m", acked), Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: []byte("hello")})
			cl.NextOf(wire.TypePersisted, 10*time.Second)
			acked++
			d := pt.NextOf(wire.TypeDeliver, 10*time.Second)
			pt.Send(&wire.Frame{Type: wire.TypeAck, Seq: d.Seq, Stage: wire.StageReceived})
		}
	}
	exchange(60) // the syncer ships while the session runs
	if err := cd.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-cd.done
	exchange(80) // controld is gone; the relay goes on acknowledging
	for deadline := time.Now().Add(10 * time.Second); syncFailures(t, reg) < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the syncer never failed while controld was down")
		}
		time.Sleep(10 * time.Millisecond) // polling a metric
	}
	cd = startControld(t, args...)
	cd.waitReady(t)
	exchange(20)

	head := uint64(2 * acked) // every message and its receipt
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, _ := rl.Store.Head(context.Background(), sess.SessionID)
		if h >= head && rl.Store.OutboxAcked() == rl.Store.OutboxStable() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog not drained: head %d of %d, outbox acked %d of %d", h, head, rl.Store.OutboxAcked(), rl.Store.OutboxStable())
		}
		time.Sleep(20 * time.Millisecond) // polling the syncer
	}

	st, err := pgstore.Open(context.Background(), pgstore.Config{DSN: dsn, Logger: quiet, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	count := func(query string) int {
		var n int
		if err := st.Pool().QueryRow(context.Background(), "SELECT count(*) FROM "+query, sess.SessionID).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", query, err)
		}
		return n
	}
	if got := count("messages WHERE tenant_id = 't1' AND session_id = $1"); got != acked {
		t.Errorf("messages in Postgres = %d, acknowledged %d", got, acked)
	}
	if got := count("receipts WHERE tenant_id = 't1' AND session_id = $1"); got != acked {
		t.Errorf("receipts in Postgres = %d, want %d", got, acked)
	}
	if got := count("audit_log WHERE session_id = $1 AND NOT chain_broken"); got != 2*acked {
		t.Errorf("valid audit rows = %d, want %d", got, 2*acked)
	}
	if got := count("audit_log WHERE session_id = $1 AND chain_broken"); got != 0 {
		t.Errorf("%d audit rows flagged broken", got)
	}
	if got := count("(SELECT client_id FROM messages WHERE session_id = $1 GROUP BY client_id HAVING count(*) > 1) d"); got != 0 {
		t.Errorf("%d messages stored twice", got)
	}
}
