// Package controltest helps tests that drive a real controld over HTTP
// with a real relay syncing to it: API calls (seeding a clinic, login, a
// fitting session), a clinician↔patient chat over the relay, waiting for
// the sync to drain, exactly-once checks on the synced rows, and the
// syncer's error count. For tests only.
package controltest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
)

// Password is the password of the clinician SeedClinic creates.
const Password = "correct horse battery"

// API calls controld's HTTP API.
type API struct {
	T      testing.TB
	Base   string       // controld's base URL
	Client *http.Client // default http.DefaultClient
}

// Do sends a request with a bearer token ("" for none) and a JSON body
// (nil for none) and returns the status and the body.
func (a *API) Do(method, path, bearer string, body any) (int, []byte) {
	a.T.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			a.T.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.Base+path, rd)
	if err != nil {
		a.T.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	hc := a.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		a.T.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		a.T.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, raw
}

// Call is Do that fails the test unless the status is want, and decodes
// the answer into out when out is not nil.
func (a *API) Call(want int, method, path, bearer string, body, out any) {
	a.T.Helper()
	code, raw := a.Do(method, path, bearer, body)
	if code != want {
		a.T.Fatalf("%s %s = %d %s, want %d", method, path, code, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			a.T.Fatalf("%s %s: decoding %s: %v", method, path, raw, err)
		}
	}
}

// SeedClinic creates, with the operator token, tenant t1 with clinician c1
// (doc@t1.example, Password), patient p1 with device SN1 (model m1) in
// c1's care, and the shared relay relayID in region eu, and returns the
// relay's node credential.
func (a *API) SeedClinic(operator, relayID string) string {
	a.T.Helper()
	a.Call(201, "POST", "/v1/operator/tenants", operator, map[string]any{"id": "t1", "name": "Clinic"}, nil)
	a.Call(201, "POST", "/v1/operator/tenants/t1/clinicians", operator, map[string]any{"id": "c1", "email": "doc@t1.example", "password": Password}, nil)
	a.Call(201, "POST", "/v1/operator/tenants/t1/patients", operator, map[string]any{"id": "p1"}, nil)
	a.Call(201, "POST", "/v1/operator/tenants/t1/devices", operator, map[string]any{"serial": "SN1", "model": "m1", "patient_id": "p1"}, nil)
	a.Call(200, "POST", "/v1/operator/tenants/t1/care", operator, map[string]any{"clinician_id": "c1", "patient_id": "p1"}, nil)
	var node struct {
		Credential string `json:"credential"`
	}
	a.Call(201, "POST", "/v1/operator/relays", operator, map[string]any{"id": relayID, "region": "eu", "capacity": 100}, &node)
	return node.Credential
}

// Login logs doc@t1.example in and returns the API token.
func (a *API) Login() string {
	a.T.Helper()
	var login struct {
		Token string `json:"token"`
	}
	a.Call(200, "POST", "/v1/login", "", map[string]any{"email": "doc@t1.example", "password": Password}, &login)
	return login.Token
}

// Session is the part of POST /v1/sessions' answer tests use.
type Session struct {
	SessionID      string `json:"session_id"`
	ClinicianToken string `json:"clinician_token"`
	PatientToken   string `json:"patient_token"`
	Relay          struct {
		ID    string `json:"id"`
		WSURL string `json:"ws_url"`
	} `json:"relay"`
}

// NewSession logs in and creates a fitting session of p1 on device SN1.
func (a *API) NewSession() Session {
	a.T.Helper()
	var s Session
	a.Call(201, "POST", "/v1/sessions", a.Login(), map[string]any{"patient_id": "p1", "device_serial": "SN1"}, &s)
	return s
}

// Chat is a clinician and a patient connected to a relay in one session.
type Chat struct {
	T         testing.TB
	Clinician *relaytest.Conn
	Patient   *relaytest.Conn
	Acked     int // messages PERSISTED so far
}

// Join connects the clinician over WebSocket and the patient over QUIC
// with the session's tokens.
func Join(t testing.TB, r *relaytest.Relay, s Session) *Chat {
	t.Helper()
	c := &Chat{T: t, Clinician: relaytest.Dial(t, r, "ws"), Patient: relaytest.Dial(t, r, "quic")}
	c.Clinician.Hello([]byte(s.ClinicianToken), false, 0)
	c.Patient.Hello([]byte(s.PatientToken), false, 0)
	return c
}

// Exchange sends n durable chat messages from the clinician, each waited
// for until PERSISTED, delivered to the patient and acknowledged received.
func (c *Chat) Exchange(n int) {
	c.T.Helper()
	for range n {
		c.Clinician.Send(&wire.Frame{Type: wire.TypeSend, ClientID: fmt.Sprint("m", c.Acked), Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: []byte("hello")})
		c.Clinician.NextOf(wire.TypePersisted, 10*time.Second)
		c.Acked++
		d := c.Patient.NextOf(wire.TypeDeliver, 10*time.Second)
		c.Patient.Send(&wire.Frame{Type: wire.TypeAck, Seq: d.Seq, Stage: wire.StageReceived})
	}
}

// Outbox is what WaitDrained reads of a relay's store.
type Outbox interface {
	Head(ctx context.Context, session string) (uint64, error)
	OutboxAcked() uint64
	OutboxStable() uint64
}

// WaitDrained waits (up to 30 s) until the session's log holds a message
// and a receipt for every acknowledged message and the relay's outbox is
// acknowledged by controld up to its stable position.
func (c *Chat) WaitDrained(ob Outbox, session string) {
	c.T.Helper()
	head := uint64(2 * c.Acked) // every message and its receipt
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, _ := ob.Head(context.Background(), session)
		if h >= head && ob.OutboxAcked() == ob.OutboxStable() {
			return
		}
		if time.Now().After(deadline) {
			c.T.Fatalf("backlog not drained: head %d of %d, outbox acked %d of %d", h, head, ob.OutboxAcked(), ob.OutboxStable())
		}
		time.Sleep(20 * time.Millisecond) // polling the syncer
	}
}

// CheckExactlyOnce checks, with count (the rows of "FROM …" matching, $1
// bound to the session), that Postgres holds every acknowledged message
// and its receipt exactly once, with a valid audit row each and none
// flagged broken.
func (c *Chat) CheckExactlyOnce(count func(query string) int) {
	c.T.Helper()
	if got := count("messages WHERE tenant_id = 't1' AND session_id = $1"); got != c.Acked {
		c.T.Errorf("messages in Postgres = %d, acknowledged %d", got, c.Acked)
	}
	if got := count("receipts WHERE tenant_id = 't1' AND session_id = $1"); got != c.Acked {
		c.T.Errorf("receipts in Postgres = %d, want %d", got, c.Acked)
	}
	if got := count("audit_log WHERE session_id = $1 AND NOT chain_broken"); got != 2*c.Acked {
		c.T.Errorf("valid audit rows = %d, want %d", got, 2*c.Acked)
	}
	if got := count("audit_log WHERE session_id = $1 AND chain_broken"); got != 0 {
		c.T.Errorf("%d audit rows flagged broken", got)
	}
	if got := count("(SELECT client_id FROM messages WHERE session_id = $1 GROUP BY client_id HAVING count(*) > 1) d"); got != 0 {
		c.T.Errorf("%d messages stored twice", got)
	}
}

// SyncErrors returns stapes_relay_sync_batches_total{result="error"}.
func SyncErrors(t testing.TB, reg prometheus.Gatherer) float64 {
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
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == "error" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// WaitSyncErrors waits (up to 10 s) until the syncer has failed at least
// n times — it keeps trying while its control plane is down.
func WaitSyncErrors(t testing.TB, reg prometheus.Gatherer, n float64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); SyncErrors(t, reg) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("the syncer failed %v times, want %v, while its control plane was down", SyncErrors(t, reg), n)
		}
		time.Sleep(10 * time.Millisecond) // polling a metric
	}
}
