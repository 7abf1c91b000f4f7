package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/audit"
	"github.com/stapes-relay/stapes/control/syncproto"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/token"
)

// receiver stands in for controld's ingest endpoint until controld exists
// (issue 5): it verifies each session's chain as it grows, inserts each
// (session, seq) once, and can be told to fail.
type receiver struct {
	mu       sync.Mutex
	rows     map[string]map[uint64][]byte
	chains   map[string][]byte
	heads    map[string]uint64
	down     bool
	batches  int
	replayed int
}

func newReceiver() *receiver {
	return &receiver{rows: map[string]map[uint64][]byte{}, chains: map[string][]byte{}, heads: map[string]uint64{}}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if r.Header.Get("Authorization") != "Bearer node-secret" {
		http.Error(w, "who are you", http.StatusUnauthorized)
		return
	}
	body, _ := io.ReadAll(r.Body)
	b, err := syncproto.Decode(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.batches++
	inserted := 0
	var broken []string
	for _, rec := range b.Records {
		if rc.rows[rec.Session] == nil {
			rc.rows[rec.Session] = map[uint64][]byte{}
		}
		if _, dup := rc.rows[rec.Session][rec.Seq]; dup {
			rc.replayed++
			continue
		}
		prev := rc.chains[rec.Session]
		if prev == nil {
			prev = audit.Genesis
		}
		if rec.Seq != rc.heads[rec.Session]+1 {
			broken = append(broken, rec.Session)
			continue
		}
		if _, err := audit.Verify(rec.Session, prev, []audit.Entry{{Seq: rec.Seq, Hash: rec.Hash, Frame: rec.Frame}}); err != nil {
			broken = append(broken, rec.Session)
			continue
		}
		rc.rows[rec.Session][rec.Seq] = rec.Frame
		rc.chains[rec.Session] = rec.Hash
		rc.heads[rec.Session] = rec.Seq
		inserted++
	}
	json.NewEncoder(w).Encode(map[string]any{"acked_pos": b.Pos, "inserted": inserted, "broken": broken})
}

// TestSyncShipsEveryEntryOnce: a real relay commits messages and receipts
// while the receiver is down for a while; the syncer retries and, once it
// is back, every entry arrives exactly once with an intact chain.
func TestSyncShipsEveryEntryOnce(t *testing.T) {
	rc := newReceiver()
	hs := httptest.NewServer(rc)
	defer hs.Close()
	r := relaytest.Start(t, relaytest.Options{})
	sy, err := NewSyncer(SyncConfig{Outbox: r.Store, Relay: "test", URL: hs.URL, Credential: "node-secret",
		MaxRecords: 50, Interval: 10 * time.Millisecond, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sy.Run(ctx) }()

	const sessions, msgs = 3, 60
	for s := range sessions {
		sid := fmt.Sprintf("sync-%d", s)
		cl := relaytest.Dial(t, r, "ws")
		cl.Hello(r.Token(t, token.Claims{Subject: "c1", Role: "clinician", Session: sid}), false, 0)
		for i := range msgs {
			if i == msgs/3 && s == 1 {
				rc.mu.Lock()
				rc.down = true // the control plane goes away mid-stream
				rc.mu.Unlock()
			}
			cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: fmt.Sprint(i), Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: []byte("x")})
			cl.Expect(wire.TypePersisted)
		}
		cl.Close()
	}
	rc.mu.Lock()
	rc.down = false
	rc.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rc.mu.Lock()
		n := 0
		for _, rows := range rc.rows {
			n += len(rows)
		}
		rc.mu.Unlock()
		if n == sessions*msgs && r.Store.OutboxAcked() == r.Store.OutboxStable() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver has %d of %d entries", n, sessions*msgs)
		}
		time.Sleep(10 * time.Millisecond) // polling another component
	}
	cancel()
	<-done
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for s := range sessions {
		sid := fmt.Sprintf("sync-%d", s)
		if got := len(rc.rows[sid]); got != msgs || rc.heads[sid] != msgs {
			t.Fatalf("%s: %d rows, head %d; want %d", sid, got, rc.heads[sid], msgs)
		}
	}
	if rc.replayed != 0 {
		t.Fatalf("%d entries were sent twice after confirmation", rc.replayed)
	}
	t.Logf("%d batches", rc.batches)
}
