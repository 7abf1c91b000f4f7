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
func pumpConfig(t *testing.T, cl *relaytest.Conn, from, n, window int, persisted map[string]uint64) {
	t.Helper()
	inflight := 0
	sent := from
	for len(persisted) < from+n-0 && (sent < from+n || inflight > 0) {
		for inflight < window && sent < from+n {
			v := int64(sent%2) * 10
			cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: fmt.Sprintf("c%d", sent), Kind: wire.KindConfig,
				Flags: wire.FlagDurable, Payload: configPayload(uint64(sent), wire.Param{Name: "gain", Value: v})})
			sent++
			inflight++
		}
		f, err := cl.Next(10 * time.Second)
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
			cl.Receipts = append(cl.Receipts, f)
		default:
			t.Fatalf("sender got %v code %v %q", f.Type, f.Code, f.Message)
		}
	}
}

func TestTenThousandConfigCommands(t *testing.T) {
	const n = 10000
	r := relaytest.Start(t, relaytest.Options{})
	cl := relaytest.Dial(t, r, "ws")
	cl.Hello(r.Token(t, clinician("big")), false, 0)
	pt := relaytest.Dial(t, r, "quic")
	pt.Hello(r.Token(t, patient("big")), false, 0)

	// The patient acks received and applied as it goes, in its own goroutine
	// so the relay sees both directions at once.
	done := make(chan error, 1)
	go func() {
		var want uint64 = 1
		got := 0
		for got < n {
			f, err := pt.Next(20 * time.Second)
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
				if err := pt.TrySend(&wire.Frame{Type: wire.TypeAck, Seq: f.Seq, Stage: wire.StageReceived}); err != nil {
					done <- err
					return
				}
				if err := pt.TrySend(&wire.Frame{Type: wire.TypeAck, Seq: f.Seq, Stage: wire.StageApplied}); err != nil {
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
	for len(cl.Receipts) < 2*n && time.Now().Before(deadline) {
		f, err := cl.Next(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for receipts (%d): %v", len(cl.Receipts), err)
		}
		if f.Type == wire.TypeReceipt {
			cl.Receipts = append(cl.Receipts, f)
		}
	}
	bySeq := map[uint64]string{}
	for id, seq := range persisted {
		bySeq[seq] = id
	}
	for _, rc := range cl.Receipts {
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
	if len(persisted) != n || len(cl.Receipts) != 2*n {
		t.Fatalf("persisted %d, receipts %d; want %d, %d", len(persisted), len(cl.Receipts), n, 2*n)
	}
}

func TestResumeOnOtherTransport(t *testing.T) {
	for _, tc := range []struct{ first, second string }{{"quic", "ws"}, {"ws", "quic"}} {
		t.Run(tc.first+"-to-"+tc.second, func(t *testing.T) {
			r := relaytest.Start(t, relaytest.Options{})
			sid := "resume-" + tc.first
			cl := relaytest.Dial(t, r, "ws")
			cl.Hello(r.Token(t, clinician(sid)), false, 0)
			pt := relaytest.Dial(t, r, tc.first)
			pt.Hello(r.Token(t, patient(sid)), false, 0)
			const n = 400
			// Send chat messages; the patient reads about half, then drops.
			for i := range n {
				cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: fmt.Sprintf("m%d", i), Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: []byte("hi")})
			}
			var last uint64
			seen := map[string]bool{}
			for len(seen) < n/2 {
				f := pt.Expect(wire.TypeDeliver)
				if f.Seq <= last {
					t.Fatalf("seq %d after %d", f.Seq, last)
				}
				last = f.Seq
				seen[f.ClientID] = true
			}
			pt.Close()
			pt2 := relaytest.Dial(t, r, tc.second)
			w := pt2.Hello(r.Token(t, patient(sid)), true, last)
			if w.HeadSeq < last {
				t.Fatalf("welcome head %d < last %d", w.HeadSeq, last)
			}
			for len(seen) < n {
				f := pt2.Expect(wire.TypeDeliver)
				if f.Seq != last+1 {
					t.Fatalf("resumed at seq %d, want %d (gap or duplicate)", f.Seq, last+1)
				}
				if seen[f.ClientID] {
					t.Fatalf("duplicate %s", f.ClientID)
				}
				seen[f.ClientID] = true
				last = f.Seq
			}
			if f, err := pt2.Next(200 * time.Millisecond); err == nil {
				t.Fatalf("extra frame %v seq %d", f.Type, f.Seq)
			}
		})
	}
}
