package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// oracle is the nearest-rank quantile of a sorted slice.
func oracle(sorted []int64, q float64) int64 {
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func TestHistogramQuantilesMatchOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		gen  func() int64
		n    int
	}{
		{"small exact values", func() int64 { return rng.Int64N(1000) }, 5000},
		{"uniform microseconds", func() int64 { return rng.Int64N(5_000_000) }, 20000},
		{"lognormal latencies", func() int64 { return int64(math.Exp(rng.NormFloat64()*1.5 + 11)) }, 50000},
		{"single value", func() int64 { return 123456789 }, 10},
		{"bimodal with stall", func() int64 {
			if rng.IntN(100) == 0 {
				return 250_000_000
			}
			return 80_000 + rng.Int64N(20_000)
		}, 30000},
	}
	qs := []float64{0.001, 0.25, 0.5, 0.9, 0.99, 0.999, 1}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHistogram()
			vals := make([]int64, tc.n)
			for i := range vals {
				vals[i] = tc.gen()
				h.RecordValue(vals[i])
			}
			slices.Sort(vals)
			for _, q := range qs {
				want := oracle(vals, q)
				got := int64(h.Quantile(q))
				// The bucket's upper bound: never below the exact value,
				// at most 1/512 above it.
				if got < want || float64(got-want) > float64(want)/halfCount {
					t.Errorf("q=%v: got %d, want %d (within +%.3f%%)", q, got, want, 100.0/halfCount)
				}
			}
			if got, want := h.Max(), time.Duration(vals[len(vals)-1]); got != want {
				t.Errorf("max: got %v, want %v", got, want)
			}
			if got, want := h.Min(), time.Duration(vals[0]); got != want {
				t.Errorf("min: got %v, want %v", got, want)
			}
			if got := h.Count(); got != uint64(tc.n) {
				t.Errorf("count: got %d, want %d", got, tc.n)
			}
		})
	}
}

func TestHistogramMergeEqualsCombined(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	a, b, all := NewHistogram(), NewHistogram(), NewHistogram()
	var vals []int64
	for i := range 20000 {
		v := rng.Int64N(10_000_000)
		if i%3 == 0 {
			v *= 50 // the second histogram sees the slow tail
			b.RecordValue(v)
		} else {
			a.RecordValue(v)
		}
		all.RecordValue(v)
		vals = append(vals, v)
	}
	a.Merge(b)
	a.Merge(nil)
	a.Merge(NewHistogram())
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		if got, want := a.Quantile(q), all.Quantile(q); got != want {
			t.Errorf("q=%v: merged %v, combined %v", q, got, want)
		}
		if got, want := int64(a.Quantile(q)), oracle(vals, q); got < want || float64(got-want) > float64(want)/halfCount {
			t.Errorf("q=%v: merged %d, oracle %d", q, got, want)
		}
	}
	if a.Count() != all.Count() || a.Max() != all.Max() || a.Min() != all.Min() || a.Mean() != all.Mean() {
		t.Errorf("merged count/min/max/mean %d/%v/%v/%v, want %d/%v/%v/%v", a.Count(), a.Min(), a.Max(), a.Mean(),
			all.Count(), all.Min(), all.Max(), all.Mean())
	}
}

func TestHistogramEdges(t *testing.T) {
	h := NewHistogram()
	if got := h.Quantile(0.5); got != 0 {
		t.Errorf("empty quantile: got %v, want 0", got)
	}
	h.RecordValue(-5)            // counts as 0
	h.RecordValue(math.MaxInt64) // clamped bucket, exact max
	if got := h.Quantile(0.5); got != 0 {
		t.Errorf("p50: got %v, want 0", got)
	}
	if got := h.Max(); got != math.MaxInt64 {
		t.Errorf("max: got %v, want MaxInt64", got)
	}
	for i := 0; i < numCounts; i++ {
		lo, hi := bucketBounds(i)
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d: bounds [%d,%d] map to %d,%d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
		if i > 0 {
			_, prevHi := bucketBounds(i - 1)
			if prevHi+1 != lo {
				t.Fatalf("bucket %d starts at %d, previous ends at %d", i, lo, prevHi)
			}
		}
	}
}
