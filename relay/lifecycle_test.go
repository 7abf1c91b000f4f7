package relay_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/storage"
)

// events returns the session events in the relay's outbox, in order.
func outboxEvents(t *testing.T, r *relaytest.Relay) []storage.Event {
	t.Helper()
	var out []storage.Event
	if err := r.Store.ReadOutbox(context.Background(), 0, 0, func(rec storage.OutboxRecord) error {
		if rec.Event != nil {
			out = append(out, *rec.Event)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitEvents waits until the outbox holds n events.
func waitEvents(t *testing.T, r *relaytest.Relay, n int) []storage.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := outboxEvents(t, r)
		if len(evs) >= n || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSessionLifecycle: opening, joining, leaving and ending a session are
// recorded in the outbox in order, with ids only; an ended session closes
// its connections with session_closed and refuses new ones, also after a
// restart.
func TestSessionLifecycle(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	cl := relaytest.Dial(t, r, "ws")
	cl.Hello(r.Token(t, clinician("life")), false, 0)
	pt := relaytest.Dial(t, r, "quic")
	pt.Hello(r.Token(t, patient("life")), false, 0)
	pt.Close()
	waitEvents(t, r, 4)
	if err := r.Server.EndSession(context.Background(), "", "life", "control_plane"); err != nil {
		t.Fatal(err)
	}
	if code, closed := cl.ClosedWith(5 * time.Second); !closed || code != wire.CodeSessionClosed {
		t.Fatalf("clinician's connection: closed %v with %v, want session_closed", closed, code)
	}
	// Ending again records nothing more.
	if err := r.Server.EndSession(context.Background(), "", "life", "control_plane"); err != nil {
		t.Fatal(err)
	}
	evs := waitEvents(t, r, 6)
	type want struct {
		kind    uint8
		subject string
	}
	wants := []want{{1, ""}, {2, "c1"}, {2, "p1"}, {3, "p1"}, {4, ""}, {3, "c1"}}
	// The clinician's "left" races the "ended" record; compare as a set
	// of the last two.
	if len(evs) != len(wants) {
		t.Fatalf("%d events, want %d: %+v", len(evs), len(wants), evs)
	}
	if evs[4].Kind == 3 {
		evs[4], evs[5] = evs[5], evs[4]
	}
	for i, w := range wants {
		e := evs[i]
		var data map[string]any
		if err := json.Unmarshal(e.Data, &data); err != nil {
			t.Fatalf("event %d data %q: %v", i, e.Data, err)
		}
		if e.Kind != w.kind || e.Session != "life" || data["relay"] != "test" || (w.subject != "" && data["subject"] != w.subject) {
			t.Errorf("event %d = kind %d session %q data %v, want kind %d subject %q", i, e.Kind, e.Session, data, w.kind, w.subject)
		}
		if e.Tenant == "" {
			t.Errorf("event %d has no tenant", i)
		}
	}
	refused := func(when string) {
		t.Helper()
		c := relaytest.Dial(t, r, "quic")
		defer c.Close()
		c.Send(&wire.Frame{Type: wire.TypeHello, Token: r.Token(t, patient("life")), MinVersion: 1, MaxVersion: 1})
		if code, _ := c.ClosedWith(5 * time.Second); code != wire.CodeSessionClosed {
			t.Fatalf("%s: HELLO to an ended session got %v, want session_closed", when, code)
		}
	}
	refused("after end")
	r.Restart(t)
	refused("after restart")
	// Another session is unaffected.
	ok := relaytest.Dial(t, r, "ws")
	ok.Hello(r.Token(t, clinician("other")), false, 0)
	ok.Close()
	if ids := r.Server.SessionIDs(); len(ids) > 1 {
		t.Errorf("SessionIDs = %v", ids)
	}
}
