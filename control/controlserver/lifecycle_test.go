package controlserver

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/control"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/storage"
)

// TestSessionLifecycleEndToEnd: a session created through the API, both
// sides on a real relay; the clinician ends it through the API; the
// relay's heartbeat learns it, closes both connections with
// session_closed and refuses a new one; the relay's lifecycle events
// (opened, joined ×2, left ×2, ended) reach session_events once each, and
// the session is "ended" in Postgres with the relay it ran on.
func TestSessionLifecycleEndToEnd(t *testing.T) {
	s := newStack(t)
	a, cl, pt := s.session()
	cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "m1", Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: []byte("hi")})
	expect(t, cl, wire.TypePersisted)
	expect(t, pt, wire.TypeDeliver)
	kr, _ := s.keyring(s.cred)
	srv := s.relay.Server
	dir, err := control.NewDirectory(control.DirectoryConfig{URL: s.hs.URL, Credential: s.cred, Keyring: kr,
		Addresses: map[string]string{"ws": s.relay.WSURL}, HTTPClient: s.hs.Client(), Logger: quiet(),
		Sessions: srv.SessionIDs,
		Ended: func(ids []string) {
			for _, id := range ids {
				if err := srv.EndSession(context.Background(), "", id, "control_plane"); err != nil {
					t.Errorf("EndSession: %v", err)
				}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := dir.Heartbeat(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if code, _ := cl.ClosedWith(100 * time.Millisecond); code != 0 {
		t.Fatalf("a running session was closed (%v)", code)
	}
	s.must(http.StatusOK, "POST", "/v1/sessions/"+a.SessionID+"/end", s.login("t1"), nil, nil)
	if err := dir.Heartbeat(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*relaytest.Conn{"clinician": cl, "patient": pt} {
		if code, closed := c.ClosedWith(5 * time.Second); !closed || code != wire.CodeSessionClosed {
			t.Fatalf("%s: closed %v with %v, want session_closed", name, closed, code)
		}
	}
	again := relaytest.Dial(t, s.relay, "ws")
	again.Send(&wire.Frame{Type: wire.TypeHello, Token: []byte(a.PatientToken), MinVersion: 1, MaxVersion: 1})
	if code, _ := again.ClosedWith(5 * time.Second); code != wire.CodeSessionClosed {
		t.Fatalf("HELLO after the end: %v, want session_closed", code)
	}
	again.Close()

	// Wait for the relay's event writer (opened, 2 joined, 2 left, ended).
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := 0
		_ = s.relay.Store.ReadOutbox(ctxT(t), 0, 0, func(r storage.OutboxRecord) error {
			if r.Event != nil {
				n++
			}
			return nil
		})
		if n >= 6 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.syncAll()
	for _, c := range []struct {
		kind string
		want int
	}{{"opened", 1}, {"joined", 2}, {"left", 2}, {"ended", 1}} {
		if n := s.count(`session_events WHERE tenant_id = 't1' AND session_id = $1 AND kind = $2 AND relay_node_id = 'relay-a'`, a.SessionID, c.kind); n != c.want {
			t.Errorf("%d %q events in Postgres, want %d", n, c.kind, c.want)
		}
	}
	if n := s.count(`session_events WHERE data->>'subject' IN ('c1', 'p1') AND data->>'transport' IN ('ws', 'quic')`); n < 4 {
		t.Errorf("join/leave events carry subject and transport in %d rows, want 4", n)
	}
	if n := s.count(`fitting_sessions WHERE session_id = $1 AND state = 'ended' AND relay_node_id = 'relay-a' AND ended_at IS NOT NULL`, a.SessionID); n != 1 {
		t.Errorf("the session is not ended on relay-a in Postgres")
	}
	// Replaying every batch inserts no event twice.
	before := s.count(`session_events`)
	s.rec.mu.Lock()
	bodies := append([][]byte(nil), s.rec.bodies...)
	s.rec.mu.Unlock()
	for _, b := range bodies {
		if code, ans, raw := s.postBatch(s.cred, "application/x-stapes-sync", b); code != http.StatusOK || ans.Events != 0 {
			t.Fatalf("replay: %d %s", code, raw)
		}
	}
	if after := s.count(`session_events`); after != before {
		t.Fatalf("replay changed session_events from %d to %d rows", before, after)
	}
}
