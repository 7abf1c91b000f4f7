package relay_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
)

// pump sends n durable config commands from cl, each on the previous one's
// base, keeping at most window unanswered.
func pumpConfig(t *testing.T, cl *raw, from, n, window int, persisted map[string]uint64) {
	t.Helper()
	inflight := 0
	sent := from
	for len(persisted) < from+n-0 && (sent < from+n || inflight > 0) {
		for inflight < window && sent < from+n {
			v := int64(sent%2) * 10
			cl.send(&wire.Frame{Type: wire.TypeSend, ClientID: fmt.Sprintf("c%d", sent), Kind: wire.KindConfig,
				Flags: wire.FlagDurable, Payload: configPayload(uint64(sent), wire.Param{Name: "gain", Value: v})})
			sent++
			inflight++
		}
		f, err := cl.next(10 * time.Second)
		if err != nil {
			t.Fatalf("sender: %v (persisted %d)", err, len(persisted))
		}
		switch f.Type {
		case wire.TypePersisted:
			if _, dup := persisted[f.ClientID]; dup {
				t.Fatalf("second PERSISTED for %s", f.ClientID)
			}
			persisted[f.ClientID] = f.Seq
			inflight--
		case wire.TypeReceipt:
			cl.receipts = append(cl.receipts, f)
		default:
			t.Fatalf("sender got %v code %v %q", f.Type, f.Code, f.Message)
		}
	}
}

func TestTenThousandConfigCommands(t *testing.T) {
	const n = 10000
	r := relaytest.Start(t, relaytest.Options{})
	cl := dialRaw(t, r, "ws")
	cl.hello(r.Token(t, clinician("big")), false, 0)
	pt := dialRaw(t, r, "quic")
	pt.hello(r.Token(t, patient("big")), false, 0)

	// The patient acks received and applied as it goes, in its own goroutine
	// so the relay sees both directions at once.
	done := make(chan error, 1)
	go func() {
		var want uint64 = 1
		got := 0
		for got < n {
			f, err := pt.next(20 * time.Second)
			if err != nil {
				done <- fmt.Errorf("patient after %d: %w", got, err)
				return
			}
			switch f.Type {
			case wire.TypeDeliver:
				if f.Seq < want {
					done <- fmt.Errorf("duplicate delivery of seq %d", f.Seq)
					return
				}
				if f.Kind != wire.KindConfig || f.ClientID != fmt.Sprintf("c%d", got) {
					done <- fmt.Errorf("delivery %d is %s, want c%d (order)", f.Seq, f.ClientID, got)
					return
				}
				want = f.Seq + 1
				got++
				if err := pt.trySend(&wire.Frame{Type: wire.TypeAck, Seq: f.Seq, Stage: wire.StageReceived}); err != nil {
					done <- err
					return
				}
				if err := pt.trySend(&wire.Frame{Type: wire.TypeAck, Seq: f.Seq, Stage: wire.StageApplied}); err != nil {
					done <- err
					return
				}
			case wire.TypeReceipt:
				want = f.Seq + 1
			default:
				done <- fmt.Errorf("patient got %v", f.Type)
				return
			}
		}
		done <- nil
	}()
	persisted := map[string]uint64{}
	pumpConfig(t, cl, 0, n, 256, persisted)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Every command needs its received and applied receipt.
	stages := map[uint64]int{}
	deadline := time.Now().Add(30 * time.Second)
	for len(cl.receipts) < 2*n && time.Now().Before(deadline) {
		f, err := cl.next(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for receipts (%d): %v", len(cl.receipts), err)
		}
		if f.Type == wire.TypeReceipt {
			cl.receipts = append(cl.receipts, f)
		}
	}
	bySeq := map[uint64]string{}
	for id, seq := range persisted {
		bySeq[seq] = id
	}
	for _, rc := range cl.receipts {
		if bySeq[rc.RefSeq] != rc.RefClientID {
			t.Fatalf("receipt for seq %d names %s, want %s", rc.RefSeq, rc.RefClientID, bySeq[rc.RefSeq])
		}
		stages[rc.RefSeq] |= 1 << rc.Stage
	}
	for seq, id := range bySeq {
		if stages[seq] != 1<<wire.StageReceived|1<<wire.StageApplied {
			t.Fatalf("%s (seq %d): stages %b, want received and applied", id, seq, stages[seq])
		}
	}
	if len(persisted) != n || len(cl.receipts) != 2*n {
		t.Fatalf("persisted %d, receipts %d; want %d, %d", len(persisted), len(cl.receipts), n, 2*n)
	}
}

func TestResumeOnOtherTransport(t *testing.T) {
	for _, tc := range []struct{ first, second string }{{"quic", "ws"}, {"ws", "quic"}} {
		t.Run(tc.first+"-to-"+tc.second, func(t *testing.T) {
			r := relaytest.Start(t, relaytest.Options{})
			sid := "resume-" + tc.first
			cl := dialRaw(t, r, "ws")
			cl.hello(r.Token(t, clinician(sid)), false, 0)
			pt := dialRaw(t, r, tc.first)
			pt.hello(r.Token(t, patient(sid)), false, 0)
			const n = 400
			// Send chat messages; the patient reads about half, then drops.
			for i := range n {
				cl.send(&wire.Frame{Type: wire.TypeSend, ClientID: fmt.Sprintf("m%d", i), Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: []byte("hi")})
			}
			var last uint64
			seen := map[string]bool{}
			for len(seen) < n/2 {
				f := pt.expect(wire.TypeDeliver)
				if f.Seq <= last {
					t.Fatalf("seq %d after %d", f.Seq, last)
				}
				last = f.Seq
				seen[f.ClientID] = true
			}
			pt.close()
			pt2 := dialRaw(t, r, tc.second)
			w := pt2.hello(r.Token(t, patient(sid)), true, last)
			if w.HeadSeq < last {
				t.Fatalf("welcome head %d < last %d", w.HeadSeq, last)
			}
			for len(seen) < n {
				f := pt2.expect(wire.TypeDeliver)
				if f.Seq != last+1 {
					t.Fatalf("resumed at seq %d, want %d (gap or duplicate)", f.Seq, last+1)
				}
				if seen[f.ClientID] {
					t.Fatalf("duplicate %s", f.ClientID)
				}
				seen[f.ClientID] = true
				last = f.Seq
			}
			if f, err := pt2.next(200 * time.Millisecond); err == nil {
				t.Fatalf("extra frame %v seq %d", f.Type, f.Seq)
			}
		})
	}
}
