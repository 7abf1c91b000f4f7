package client

import (
	"testing"
	"time"

	"github.com/stapes-relay/stapes/relay/wire"
)

func newOutgoing(id string) *outgoing {
	return &outgoing{sent: newSent(id, wire.KindChat, true), frame: []byte(id)}
}

func nextID(q *pendingQueue, gen uint64, now time.Time) (string, time.Duration) {
	o, wait := q.next(gen, now)
	if o == nil {
		return "", wait
	}
	o.gen = gen // what the writer does
	return o.sent.id, wait
}

func TestPendingQueueOrderAndRewrite(t *testing.T) {
	var q pendingQueue
	now := time.Now()
	for _, id := range []string{"a", "b", "c"} {
		if !q.add(newOutgoing(id)) {
			t.Fatalf("add(%s) refused", id)
		}
	}
	if q.add(newOutgoing("b")) {
		t.Fatal("add of a pending id accepted, want refused")
	}
	var got []string
	for {
		id, _ := nextID(&q, 1, now)
		if id == "" {
			break
		}
		got = append(got, id)
	}
	if want := "a b c"; join(got) != want {
		t.Fatalf("connection 1 writes %q, want %q", join(got), want)
	}
	if n := q.inflight(1); n != 3 {
		t.Errorf("inflight = %d, want 3", n)
	}

	// "a" is persisted on connection 1; the rest is written again, in
	// order, on connection 2.
	if o, _ := q.persisted("a", 7); o == nil || o.seq != 7 {
		t.Fatalf("persisted(a) = %+v", o)
	}
	got = nil
	for {
		id, _ := nextID(&q, 2, now)
		if id == "" {
			break
		}
		got = append(got, id)
	}
	if want := "b c"; join(got) != want {
		t.Fatalf("connection 2 writes %q, want %q", join(got), want)
	}
	if n := q.inflight(2); n != 2 {
		t.Errorf("inflight = %d, want 2", n)
	}
}

func TestPendingQueueRetryHoldsBackLater(t *testing.T) {
	var q pendingQueue
	now := time.Now()
	for _, id := range []string{"a", "b"} {
		q.add(newOutgoing(id))
	}
	a := q.get("a")
	q.retry(a, 1, now, 50*time.Millisecond)
	if id, wait := nextID(&q, 1, now); id != "" || wait != 50*time.Millisecond {
		t.Fatalf("next during a's delay = %q, wait %v; want nothing for 50ms", id, wait)
	}
	if id, _ := nextID(&q, 1, now.Add(50*time.Millisecond)); id != "a" {
		t.Fatalf("next after delay = %q, want a", id)
	}
	if id, _ := nextID(&q, 1, now.Add(50*time.Millisecond)); id != "b" {
		t.Fatalf("next after a = %q, want b", id)
	}
	if a.attempts != 1 {
		t.Errorf("attempts = %d, want 1", a.attempts)
	}
}

func TestPendingQueueRetryKeepsPlace(t *testing.T) {
	var q pendingQueue
	now := time.Now()
	for _, id := range []string{"a", "b", "c", "d"} {
		q.add(newOutgoing(id))
	}
	for range 3 {
		nextID(&q, 1, now) // a, b, c written
	}
	q.retry(q.get("b"), 1, now, 0)
	q.retry(q.get("b"), 1, now, 0) // a second ERROR for it changes nothing
	q.remove(q.get("a"))
	var got []string
	for {
		id, _ := nextID(&q, 1, now)
		if id == "" {
			break
		}
		got = append(got, id)
	}
	if want := "b d"; join(got) != want {
		t.Fatalf("after retry of b: writes %q, want %q", join(got), want)
	}
	if q.len() != 3 {
		t.Fatalf("len = %d, want 3", q.len())
	}
}

func TestPendingQueueReceipts(t *testing.T) {
	var q pendingQueue
	q.add(newOutgoing("a"))
	q.add(newOutgoing("b"))
	q.persisted("a", 10)

	// By seq: exact.
	if o := q.receipt(Receipt{RefSeq: 10, Stage: wire.StageReceived}, "a"); o == nil || o.sent.id != "a" {
		t.Fatalf("receipt for seq 10 matched %v, want a", o)
	}
	// Another sender's message that happens to use our client id "a".
	if o := q.receipt(Receipt{RefSeq: 11, Stage: wire.StageReceived}, "a"); o != nil {
		t.Fatalf("receipt for seq 11 matched %s, want none", o.sent.id)
	}
	// Before PERSISTED (backlog after a reconnect): kept, matched later by
	// seq only.
	if o := q.receipt(Receipt{RefSeq: 12, Stage: wire.StageReceived}, "b"); o != nil {
		t.Fatal("receipt before PERSISTED matched at once")
	}
	if o := q.receipt(Receipt{RefSeq: 99, Stage: wire.StageReceived}, "b"); o != nil {
		t.Fatal("receipt before PERSISTED matched at once")
	}
	o, early := q.persisted("b", 12)
	if o == nil || len(early) != 1 || early[0].RefSeq != 12 {
		t.Fatalf("persisted(b) early receipts = %+v, want the one about seq 12", early)
	}
	if o, early := q.persisted("b", 12); o == nil || early != nil {
		t.Fatalf("repeated PERSISTED returned early receipts %+v", early)
	}

	q.remove(q.get("a"))
	if q.get("a") != nil || q.receipt(Receipt{RefSeq: 10}, "") != nil || q.len() != 1 {
		t.Fatal("removed message still found")
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}
