package relay

import "testing"

func TestTailRing(t *testing.T) {
	r := tailRing{max: 40}
	for seq := uint64(1); seq <= 100; seq++ {
		r.push(entry{seq: seq})
		for _, probe := range []uint64{seq, seq - min(seq-1, 39)} {
			if e, ok := r.get(probe); !ok || e.seq != probe {
				t.Fatalf("after push %d: get(%d) = %v %v", seq, probe, e.seq, ok)
			}
		}
		if seq > 40 {
			if _, ok := r.get(seq - 40); ok {
				t.Fatalf("after push %d: seq %d should have been evicted", seq, seq-40)
			}
		}
	}
	if len(r.buf) != 40 {
		t.Fatalf("grew to %d, want the max 40", len(r.buf))
	}
}

func TestTailRingByteBound(t *testing.T) {
	r := tailRing{max: 100, maxBytes: 1000}
	for seq := uint64(1); seq <= 50; seq++ {
		r.push(entry{seq: seq, frame: make([]byte, 300)})
		if r.bytes > 1000 && r.first != r.last {
			t.Fatalf("after %d: holds %d bytes", seq, r.bytes)
		}
		if _, ok := r.get(seq); !ok {
			t.Fatalf("newest entry %d not held", seq)
		}
	}
	if _, ok := r.get(47); ok {
		t.Fatal("held more than the byte bound allows")
	}
	r.push(entry{seq: 51, frame: make([]byte, 5000)}) // larger than the bound: still held alone
	if e, ok := r.get(51); !ok || r.first != 51 || len(e.frame) != 5000 {
		t.Fatalf("oversized newest entry: first %d ok %v", r.first, ok)
	}
}
