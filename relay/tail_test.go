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
