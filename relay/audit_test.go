package relay_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stapes-relay/stapes/audit"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
)

func readChain(t *testing.T, r *relaytest.Relay, session string) []audit.Entry {
	t.Helper()
	var es []audit.Entry
	err := r.Store.ReadChain(context.Background(), session, 0, 1<<62, 0, func(seq uint64, hash, frame []byte) error {
		es = append(es, audit.Entry{Seq: seq, Hash: append([]byte(nil), hash...), Frame: append([]byte(nil), frame...)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// TestAuditChain: the relay hash-chains every log entry, across restarts;
// an entry changed in the Pebble directory breaks the chain at its seq.
func TestAuditChain(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	send := func(from, to *relaytest.Conn, n, start int) {
		for i := range n {
			from.Send(&wire.Frame{Type: wire.TypeSend, ClientID: fmt.Sprintf("m%d", start+i), Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: []byte("hello")})
			from.NextOf(wire.TypePersisted, 5*time.Second)
			d := to.NextOf(wire.TypeDeliver, 5*time.Second)
			to.Send(&wire.Frame{Type: wire.TypeAck, Seq: d.Seq, Stage: wire.StageReceived})
		}
	}
	cl := relaytest.Dial(t, r, "ws")
	cl.Hello(r.Token(t, clinician("aud")), false, 0)
	pt := relaytest.Dial(t, r, "quic")
	pt.Hello(r.Token(t, patient("aud")), false, 0)
	send(cl, pt, 5, 0)
	r.WaitHead(t, "aud", 10) // the last ack is committed
	cl.Close()
	pt.Close()
	r.Restart(t) // the chain continues from the stored head
	cl = relaytest.Dial(t, r, "quic")
	cl.Hello(r.Token(t, clinician("aud")), false, 0)
	pt = relaytest.Dial(t, r, "ws")
	pt.Hello(r.Token(t, patient("aud")), true, 10)
	send(cl, pt, 5, 5)
	r.WaitHead(t, "aud", 20)
	es := readChain(t, r, "aud")
	if len(es) != 20 {
		t.Fatalf("log has %d entries, want 20 (10 messages, 10 receipts)", len(es))
	}
	if _, err := audit.Verify("aud", audit.Genesis, es); err != nil {
		t.Fatalf("intact log: %v", err)
	}
	cl.Close()
	pt.Close()

	// Tamper with entry 7's frame in Pebble, keeping its recorded hash.
	r.Stop()
	db, err := pebble.Open(r.Dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key := append([]byte{'l', '/', byte(len("aud"))}, "aud"...)
	key = append(key, 0, 0, 0, 0, 0, 0, 0, 7)
	v, closer, err := db.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), v...)
	closer.Close()
	tampered[len(tampered)-1] ^= 0xff
	if err := db.Set(key, tampered, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	db.Close()
	r.Restart(t)
	_, err = audit.Verify("aud", audit.Genesis, readChain(t, r, "aud"))
	var be *audit.BreakError
	if !errors.As(err, &be) || be.Seq != 7 {
		t.Fatalf("tampered log: %v, want a break at seq 7", err)
	}
}
