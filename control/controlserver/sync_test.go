package controlserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stapes-relay/stapes/control"
	"github.com/stapes-relay/stapes/control/syncproto"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
)

// recorder sits between a relay's syncer and controld and keeps every
// sync batch and answer, so a test can replay a batch and read answers.
type recorder struct {
	next http.Handler

	mu      sync.Mutex // guards the fields below
	bodies  [][]byte
	answers []syncAnswer
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	rw := httptest.NewRecorder()
	rc.next.ServeHTTP(rw, r)
	if r.URL.Path == "/v1/relay/sync" && rw.Code == http.StatusOK {
		var a syncAnswer
		_ = json.Unmarshal(rw.Body.Bytes(), &a)
		rc.mu.Lock()
		rc.bodies = append(rc.bodies, body)
		rc.answers = append(rc.answers, a)
		rc.mu.Unlock()
	}
	for k, v := range rw.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rw.Code)
	_, _ = w.Write(rw.Body.Bytes())
}

// stack is controld plus a real relay that trusts controld's keys and
// syncs to it through a recorder.
type stack struct {
	*env
	relay *relaytest.Relay
	cred  string
	proxy *httptest.Server
	rec   *recorder
}

func newStack(t *testing.T) *stack {
	t.Helper()
	e := newEnv(t)
	e.clinic("t1")
	if _, err := e.srv.EnsureSigningKey(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	s := &stack{env: e, rec: &recorder{next: e.srv.Handler()}}
	s.cred = e.relayNode("relay-a", "eu", "", 0)
	kr, _ := e.keyring(s.cred)
	s.relay = relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) {
		c.Auth = kr
		c.RelayID = "relay-a"
		c.Logger = quiet()
	}})
	e.must(http.StatusOK, "POST", "/v1/relay/register", s.cred, map[string]any{"addresses": map[string]string{"ws": s.relay.WSURL}}, nil)
	e.must(http.StatusOK, "POST", "/v1/relay/heartbeat", s.cred, map[string]any{"load": 0, "draining": false}, nil)
	s.proxy = httptest.NewServer(s.rec)
	t.Cleanup(s.proxy.Close)
	return s
}

// session creates a fitting session for p1 with its device and connects
// both sides to the relay with the minted tokens.
func (s *stack) session() (sessionAnswer, *relaytest.Conn, *relaytest.Conn) {
	s.t.Helper()
	var a sessionAnswer
	s.must(http.StatusCreated, "POST", "/v1/sessions", s.login("t1"), map[string]any{"patient_id": "p1", "device_serial": "t1-SN1"}, &a)
	if a.Relay.WSURL != s.relay.WSURL {
		s.t.Fatalf("session placed on %+v, want the test relay", a.Relay)
	}
	cl := relaytest.Dial(s.t, s.relay, "ws")
	cl.Hello([]byte(a.ClinicianToken), false, 0)
	pt := relaytest.Dial(s.t, s.relay, "quic")
	pt.Hello([]byte(a.PatientToken), false, 0)
	return a, cl, pt
}

// syncAll runs the relay's syncer until controld confirmed every committed
// outbox record.
func (s *stack) syncAll() {
	s.t.Helper()
	sy, err := control.NewSyncer(control.SyncConfig{Outbox: s.relay.Store, Relay: "relay-a", URL: s.proxy.URL,
		Credential: s.cred, HTTPClient: s.proxy.Client(), Logger: quiet(), MaxRecords: 3})
	if err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for s.relay.Store.OutboxAcked() < s.relay.Store.OutboxStable() || s.relay.Store.OutboxStable() == 0 {
		if _, err := sy.SyncOnce(ctxT(s.t)); err != nil {
			s.t.Fatalf("sync: %v", err)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("outbox acked %d of %d", s.relay.Store.OutboxAcked(), s.relay.Store.OutboxStable())
		}
	}
}

func expect(t *testing.T, c *relaytest.Conn, want wire.Type) wire.Frame {
	t.Helper()
	for {
		f, err := c.Next(5 * time.Second)
		if err != nil {
			t.Fatalf("waiting for %v: %v", want, err)
		}
		if f.Type == want {
			return f
		}
		if f.Type != wire.TypeReceipt && f.Type != wire.TypePersisted {
			t.Fatalf("got %v (code %v), want %v", f.Type, f.Code, want)
		}
	}
}

// TestSyncFromRelayExactlyOnce is the real relay→controld path: a session
// created through the API, both sides on a relay with the minted tokens,
// a config command applied, the relay's syncer shipping its outbox. Every
// message, receipt and audit row lands once; the applied config advances
// the device in Postgres; replaying every batch inserts nothing.
func TestSyncFromRelayExactlyOnce(t *testing.T) {
	s := newStack(t)
	a, cl, pt := s.session()
	cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "cfg-1", Kind: wire.KindConfig, Flags: wire.FlagDurable,
		Payload: wire.AppendConfig(nil, &wire.Config{BaseVersion: 0, Params: []wire.Param{{Name: "gain.l.2k", Value: 20}}})})
	expect(t, cl, wire.TypePersisted)
	cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "chat-1", Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: []byte("hello")})
	expect(t, cl, wire.TypePersisted)
	for seq := uint64(1); seq <= 2; seq++ {
		if d := expect(t, pt, wire.TypeDeliver); d.Seq != seq {
			t.Fatalf("delivered seq %d, want %d", d.Seq, seq)
		}
	}
	pt.Send(&wire.Frame{Type: wire.TypeAck, Seq: 1, Stage: wire.StageReceived})
	pt.Send(&wire.Frame{Type: wire.TypeAck, Seq: 1, Stage: wire.StageApplied})
	pt.Send(&wire.Frame{Type: wire.TypeAck, Seq: 2, Stage: wire.StageReceived})
	s.relay.WaitHead(t, a.SessionID, 5)
	cl.Close()
	pt.Close()

	s.syncAll()
	if got := s.count("messages WHERE tenant_id = 't1' AND session_id = $1", a.SessionID); got != 2 {
		t.Errorf("messages = %d, want 2", got)
	}
	if got := s.count("receipts WHERE tenant_id = 't1' AND session_id = $1", a.SessionID); got != 3 {
		t.Errorf("receipts = %d, want 3", got)
	}
	if got := s.count("audit_log WHERE tenant_id = 't1' AND session_id = $1 AND NOT chain_broken", a.SessionID); got != 5 {
		t.Errorf("valid audit rows = %d, want 5", got)
	}
	if got := s.count("messages WHERE session_id = $1 AND seq = 1 AND kind = 1 AND sender = 'c1' AND client_id = 'cfg-1'", a.SessionID); got != 1 {
		t.Errorf("the config message is not stored as sent")
	}
	if got := s.count("receipts WHERE session_id = $1 AND ref_seq = 1 AND stage = 2 AND acker = 'p1'", a.SessionID); got != 1 {
		t.Errorf("the applied receipt is not stored as sent")
	}
	dc, err := s.st.DeviceConfig(ctxT(t), "t1", "t1-SN1")
	if err != nil || dc.Version != 1 || dc.Params["gain.l.2k"] != 20 {
		t.Fatalf("device config = %+v, %v; want version 1 with gain.l.2k 20", dc, err)
	}
	if x, err := s.st.Session(ctxT(t), "t1", a.SessionID); err != nil || x.State != "active" || x.RelayNodeID != "relay-a" {
		t.Fatalf("session row after sync = %+v, %v; want active on relay-a", x, err)
	}
	var inserted int64
	s.rec.mu.Lock()
	bodies, answers := slices.Clone(s.rec.bodies), slices.Clone(s.rec.answers)
	s.rec.mu.Unlock()
	for _, ans := range answers {
		inserted += ans.Inserted
		if len(ans.Broken) != 0 || len(ans.ConfigConflicts) != 0 {
			t.Errorf("answer %+v reports broken chains or conflicts", ans)
		}
	}
	if inserted != 5 || len(bodies) < 2 {
		t.Fatalf("%d batches inserted %d entries, want 5 in several batches", len(bodies), inserted)
	}

	// Replay every batch, as a relay would after losing controld's answer.
	for i, body := range bodies {
		var ans syncAnswer
		code, b := s.post(body)
		if code != http.StatusOK || json.Unmarshal(b, &ans) != nil {
			t.Fatalf("replay %d: %d %s", i, code, b)
		}
		if ans.Inserted != 0 || ans.Messages != 0 || ans.Receipts != 0 || ans.AckedPos != answers[i].AckedPos || len(ans.Broken) != 0 {
			t.Fatalf("replay %d answered %+v, want nothing inserted and the same acked_pos", i, ans)
		}
	}
	if got := s.count("audit_log WHERE session_id = $1", a.SessionID); got != 5 {
		t.Errorf("audit rows after replay = %d, want 5", got)
	}
	if dc, _ := s.st.DeviceConfig(ctxT(t), "t1", "t1-SN1"); dc.Version != 1 {
		t.Fatalf("device version after replay = %d, want 1", dc.Version)
	}
}

// post sends a raw sync body as relay-a.
func (s *stack) post(body []byte) (int, []byte) {
	s.t.Helper()
	req, _ := http.NewRequestWithContext(ctxT(s.t), "POST", s.hs.URL+"/v1/relay/sync", bytes.NewReader(body))
	req.Header.Set("Content-Type", syncproto.ContentType)
	req.Header.Set("Authorization", "Bearer "+s.cred)
	resp, err := s.hs.Client().Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestSyncTamperedEntry: an entry changed in the relay's Pebble directory
// (frame altered, recorded hash kept) before sync is reported in "broken",
// stored in audit_log flagged, and never stored as a message; the entries
// around it are stored normally.
func TestSyncTamperedEntry(t *testing.T) {
	s := newStack(t)
	a, cl, pt := s.session()
	pt.Close()
	for i := range 4 {
		cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: fmt.Sprint("m", i), Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: []byte("hello")})
		expect(t, cl, wire.TypePersisted)
	}
	s.relay.WaitHead(t, a.SessionID, 4)
	cl.Close()

	s.relay.Stop()
	db, err := pebble.Open(s.relay.Dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key := append([]byte{'l', '/', byte(len(a.SessionID))}, a.SessionID...)
	key = append(key, 0, 0, 0, 0, 0, 0, 0, 3)
	v, closer, err := db.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(v)
	closer.Close()
	tampered[len(tampered)-1] ^= 0x20 // a payload byte; the recorded hash is untouched
	if err := db.Set(key, tampered, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s.relay.Restart(t)

	s.syncAll()
	s.rec.mu.Lock()
	var broken []string
	for _, ans := range s.rec.answers {
		broken = append(broken, ans.Broken...)
	}
	s.rec.mu.Unlock()
	if !slices.Equal(broken, []string{a.SessionID}) {
		t.Fatalf("broken = %q, want [%s]", broken, a.SessionID)
	}
	if got := s.count("audit_log WHERE session_id = $1 AND seq = 3 AND chain_broken", a.SessionID); got != 1 {
		t.Errorf("seq 3 is not flagged in audit_log")
	}
	if got := s.count("audit_log WHERE session_id = $1 AND NOT chain_broken", a.SessionID); got != 3 {
		t.Errorf("valid audit rows = %d, want 3 (seqs 1, 2, 4)", got)
	}
	var seqs []int64
	rows, err := s.st.Pool().Query(ctxT(t), "SELECT seq FROM messages WHERE session_id = $1 ORDER BY seq", a.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var q int64
		_ = rows.Scan(&q)
		seqs = append(seqs, q)
	}
	rows.Close()
	if !slices.Equal(seqs, []int64{1, 2, 4}) {
		t.Fatalf("stored messages %v, want [1 2 4]: the tampered one must not be stored as valid", seqs)
	}
}

// TestRelayAdmissionWithControldTokens: a relay that takes its keys from
// controld (control.Directory) admits controld's session tokens and
// refuses them for another session, once expired, and once their kid is
// revoked.
func TestRelayAdmissionWithControldTokens(t *testing.T) {
	s := newStack(t)
	a, cl, pt := s.session() // admitted
	cl.Close()
	pt.Close()
	kr, _ := s.keyring(s.cred)
	dir, err := control.NewDirectory(control.DirectoryConfig{URL: s.hs.URL, Credential: s.cred, Keyring: kr,
		Addresses: map[string]string{"ws": s.relay.WSURL}, HTTPClient: s.hs.Client(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	s.relay.Stop()
	s.relay = relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) { c.Auth = kr; c.RelayID = "relay-a"; c.Logger = quiet() }})
	if err := dir.Register(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	refused := func(tok, session string) wire.Code {
		t.Helper()
		c := relaytest.Dial(t, s.relay, "ws")
		defer c.Close()
		c.Send(&wire.Frame{Type: wire.TypeHello, Token: []byte(tok), MinVersion: 1, MaxVersion: 1, Session: session})
		code, closed := c.ClosedWith(5 * time.Second)
		if !closed {
			t.Fatalf("HELLO was not refused")
		}
		return code
	}
	if code := refused(a.ClinicianToken, "another-session"); code != wire.CodeForbidden {
		t.Errorf("token for another session: code %v, want forbidden", code)
	}

	late := newEnvOn(t, s.env, func(c *Config) { c.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) } })
	var old sessionAnswer
	late.must(http.StatusCreated, "POST", "/v1/sessions", late.login("t1"), map[string]any{"patient_id": "p1"}, &old)
	if code := refused(old.PatientToken, ""); code != wire.CodeExpired {
		t.Errorf("expired token: code %v, want expired", code)
	}

	s.must(http.StatusOK, "POST", "/v1/operator/signing-keys/"+a.KeyID+"/revoke", testOperator, nil, nil)
	if err := dir.RefreshKeys(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if code := refused(a.PatientToken, ""); code != wire.CodeUnauthorized {
		t.Errorf("token of a revoked kid: code %v, want unauthorized", code)
	}
}
