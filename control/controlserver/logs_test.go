package controlserver

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stapes-relay/stapes/control/syncproto"
	"github.com/stapes-relay/stapes/relay/wire"
)

// lockedBuffer is a log sink for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogsCarryNoPHI drives every kind of request, failures included, with
// debug logging on, and checks the log for anything but ids: names,
// e-mail addresses, device serials (HIPAA identifiers), passwords, tokens,
// credentials, payloads.
func TestLogsCarryNoPHI(t *testing.T) {
	var logs lockedBuffer
	e := newEnv(t, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	e.clinic("t1")
	cred := e.relayNode("r1", "eu", "wss://r1.example/v1/connect", 0)
	tok := e.login("t1")
	e.call("POST", "/v1/login", "", map[string]any{"email": "doc@t1.example", "password": "wrong password!"})
	e.call("POST", "/v1/operator/tenants", testOperator+"x", map[string]any{"id": "t9", "name": "x"})
	e.call("GET", "/v1/relay/keys", cred[:len(cred)-4]+"AAAA", nil)
	e.must(http.StatusOK, "GET", "/v1/patients", tok, nil, nil)
	var s sessionAnswer
	e.must(http.StatusCreated, "POST", "/v1/sessions", tok, map[string]any{"patient_id": "p1", "device_serial": "t1-SN1"}, &s)
	e.call("POST", "/v1/sessions", tok, map[string]any{"patient_id": "p2"})
	e.must(http.StatusOK, "PUT", "/v1/push/registrations/inst-1", s.PatientToken, map[string]any{"provider": "fcm", "push_token": "secret-push-token"}, nil)
	e.call("PUT", "/v1/push/registrations/inst-1", s.PatientToken, map[string]any{"provider": "webhook", "push_token": "http://secret-hook.example"})
	e.must(http.StatusOK, "POST", "/v1/relay/heartbeat", cred, map[string]any{"load": 1, "draining": false, "sessions": []string{s.SessionID}}, nil)
	e.must(http.StatusOK, "GET", "/v1/map", "", nil, nil)
	ch := newChainer("t1", s.SessionID)
	good := ch.next(deliver("c1", "m1", wire.KindChat, []byte("secret-chat-payload")))
	bad := ch.next(deliver("c1", "m2", wire.KindChat, []byte("tampered-chat-payload")))
	bad.Frame = wire.Encode(&wire.Frame{Type: wire.TypeDeliver, Seq: 2, Sender: "c1", Kind: wire.KindChat, Payload: []byte("forged-chat-payload")})
	e.postBatch(cred, syncproto.ContentType, syncproto.Append(nil, &syncproto.Batch{Relay: "r1", Pos: 1, Records: []syncproto.Record{good, bad}}))

	e.must(http.StatusOK, "POST", "/v1/sessions/"+s.SessionID+"/end", tok, nil, nil)
	e.call("POST", "/v1/sessions/"+s.SessionID+"/tokens", tok, nil)
	out := logs.String()
	if !strings.Contains(out, s.SessionID) || !strings.Contains(out, "audit chain broken") || !strings.Contains(out, "session ended") ||
		!strings.Contains(out, "push registration stored") {
		t.Fatalf("the log lacks the expected lines:\n%s", out)
	}
	for _, secret := range []string{"Patient p1", "Patient p2", "doc@t1.example", testPassword, "wrong password!", tok,
		s.ClinicianToken, s.PatientToken, cred, testOperator, "secret-chat-payload", "tampered", "forged-chat", "Clinic t1", "t1-SN1", "t1-SN2",
		"secret-push-token", "secret-hook"} {
		if strings.Contains(out, secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
}
