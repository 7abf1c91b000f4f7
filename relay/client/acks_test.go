package client

import (
	"errors"
	"testing"

	"github.com/stapes-relay/stapes/relay/wire"
)

func isDone(a *pendingAck) bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

func TestAckBookResendUntilConfirmed(t *testing.T) {
	var b ackBook
	a1, _, _ := b.add(5, wire.StageReceived, "", true, 100)
	a2, _, _ := b.add(6, wire.StageReceived, "", true, 100)
	if again, _, _ := b.add(5, wire.StageReceived, "", false, 100); again != a1 || a1.auto {
		t.Fatal("second add of the same ack did not return the first, or left it automatic")
	}
	for gen := uint64(1); gen <= 2; gen++ {
		for _, want := range []*pendingAck{a1, a2} {
			got := b.next(gen)
			if got != want {
				t.Fatalf("gen %d: next = %+v, want seq %d", gen, got, want.seq)
			}
			got.gen = gen
		}
		if got := b.next(gen); got != nil {
			t.Fatalf("gen %d: next after all written = seq %d", gen, got.seq)
		}
		if n := b.inflight(gen); n != 2 {
			t.Fatalf("gen %d: inflight = %d, want 2", gen, n)
		}
	}
	b.confirm(5, wire.StageReceived)
	if !isDone(a1) || a1.err != nil {
		t.Fatalf("confirmed ack done=%v err=%v", isDone(a1), a1.err)
	}
	if got := b.next(3); got != a2 {
		t.Fatalf("next on gen 3 = %+v, want only seq 6", got)
	}
	b.confirm(5, wire.StageApplied) // not ours: no effect
	if b.len() != 1 {
		t.Fatalf("len = %d, want 1", b.len())
	}
}

func TestAckBookFinalStages(t *testing.T) {
	tests := []struct {
		name       string
		first      wire.Stage
		second     wire.Stage
		confirm    bool // confirm first before adding second
		wantErr    error
		secondDone bool
	}{
		{"same final twice while pending", wire.StageApplied, wire.StageApplied, false, nil, false},
		{"other final while pending", wire.StageApplied, wire.StageRejected, false, ErrAlreadyFinal, false},
		{"other final after confirm", wire.StageRejected, wire.StageApplied, true, ErrAlreadyFinal, false},
		{"same final after confirm", wire.StageApplied, wire.StageApplied, true, nil, true},
		{"received after final", wire.StageApplied, wire.StageReceived, false, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b ackBook
			if _, _, err := b.add(9, tt.first, "x", false, 100); err != nil {
				t.Fatalf("first add: %v", err)
			}
			if tt.confirm {
				b.confirm(9, tt.first)
			}
			a, _, err := b.add(9, tt.second, "", false, 100)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("second add err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && isDone(a) != tt.secondDone {
				t.Fatalf("second ack done = %v, want %v", isDone(a), tt.secondDone)
			}
		})
	}
}

func TestAckBookFinalConfirmEndsOtherFinal(t *testing.T) {
	// The relay keeps the first final stage and ignores a second; if a
	// second one was queued (say by another process of the same subject),
	// confirming the first ends it instead of resending it forever.
	var b ackBook
	b.finals = map[uint64]wire.Stage{}
	b.byKey = map[ackKey]*pendingAck{}
	rej := &pendingAck{ackKey: ackKey{3, wire.StageRejected}, done: make(chan struct{})}
	b.list = append(b.list, rej)
	b.byKey[rej.ackKey] = rej
	b.confirm(3, wire.StageApplied)
	if !isDone(rej) || !errors.Is(rej.err, ErrAlreadyFinal) {
		t.Fatalf("other final ack done=%v err=%v, want ended with ErrAlreadyFinal", isDone(rej), rej.err)
	}
}

func TestAckBookForgetsOldestAutomaticAcks(t *testing.T) {
	var b ackBook
	manual, _, _ := b.add(1, wire.StageApplied, "", false, 3)
	auto2, _, _ := b.add(2, wire.StageReceived, "", true, 3)
	b.add(3, wire.StageReceived, "", true, 3)
	_, forgot, _ := b.add(4, wire.StageReceived, "", true, 3)
	if forgot != 1 || !isDone(auto2) || isDone(manual) {
		t.Fatalf("forgot=%d auto2 done=%v manual done=%v; want the oldest automatic ack forgotten", forgot, isDone(auto2), isDone(manual))
	}
	if b.len() != 3 {
		t.Fatalf("len = %d, want 3", b.len())
	}
}

func TestAckBookFailAndDrain(t *testing.T) {
	var b ackBook
	r, _, _ := b.add(8, wire.StageReceived, "", true, 10)
	ap, _, _ := b.add(8, wire.StageApplied, "", false, 10)
	other, _, _ := b.add(9, wire.StageReceived, "", true, 10)
	refused := &Error{Code: wire.CodeUnknownSeq}
	b.fail(8, refused)
	if !errors.Is(r.err, refused) || !errors.Is(ap.err, refused) || isDone(other) {
		t.Fatal("fail(8) did not end exactly the acks for seq 8")
	}
	b.drain(ErrClosed)
	if !errors.Is(other.err, ErrClosed) || b.len() != 0 {
		t.Fatal("drain left acks")
	}
}
