package scenario

import (
	"testing"
	"time"
)

func TestSpreadOf(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	twenty := ms(20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
	tests := []struct {
		name string
		in   []time.Duration
		want spread
	}{
		{"none", nil, spread{}},
		{"one", ms(7), spread{1, 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond}},
		{"odd count, unsorted", ms(5, 1, 3), spread{3, time.Millisecond, 3 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond}},
		{"even count: lower middle", ms(4, 1, 3, 2), spread{4, time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond}},
		{"20 kills: p99 is the slowest", twenty, spread{20, time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := spreadOf(tc.in); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	var hundred []time.Duration
	for i := 100; i >= 1; i-- {
		hundred = append(hundred, time.Duration(i))
	}
	if got := spreadOf(hundred); got.p99 != 99 || got.p50 != 50 {
		t.Errorf("1..100: got p50 %d p99 %d, want 50 and 99", got.p50, got.p99)
	}
	if in := ms(3, 1, 2); spreadOf(in).min != time.Millisecond || in[0] != 3*time.Millisecond {
		t.Errorf("spreadOf sorted its argument: %v", in)
	}
	m := spreadOf(ms(1, 2)).metrics("resume")
	if m["resume_min_us"] != 1000 || m["resume_p50_us"] != 1000 || m["resume_p99_us"] != 2000 || m["resume_max_us"] != 2000 {
		t.Errorf("metrics: got %v", m)
	}
	if m := spreadOf(nil).metrics("resume"); len(m) != 0 {
		t.Errorf("metrics of nothing: got %v, want none", m)
	}
}

func TestOnceBook(t *testing.T) {
	tests := []struct {
		name string
		run  func(b *onceBook)
		want onceReport
	}{
		{"exactly once", func(b *onceBook) {
			b.persist("m1", 1)
			b.persist("m2", 3)
			b.deliver("m1", 1)
			b.deliver("m2", 3)
		}, onceReport{Persisted: 2}},
		{"delivered before PERSISTED reached the sender", func(b *onceBook) {
			b.deliver("m1", 1)
			b.persist("m1", 1)
		}, onceReport{Persisted: 1}},
		{"missing", func(b *onceBook) {
			b.persist("m1", 1)
			b.persist("m2", 2)
			b.deliver("m1", 1)
		}, onceReport{Persisted: 2, Missing: 1}},
		{"committed twice", func(b *onceBook) {
			b.persist("m1", 1)
			b.deliver("m1", 1)
			b.deliver("m1", 4)
		}, onceReport{Persisted: 1, Duplicated: 1}},
		{"another seq", func(b *onceBook) {
			b.persist("m1", 1)
			b.deliver("m1", 2)
		}, onceReport{Persisted: 1, Mismatched: 1}},
		{"never PERSISTED", func(b *onceBook) {
			b.deliver("m9", 9)
		}, onceReport{Unpersisted: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newOnceBook()
			tc.run(b)
			got := b.verify()
			if got.Persisted != tc.want.Persisted || got.Missing != tc.want.Missing || got.Duplicated != tc.want.Duplicated ||
				got.Mismatched != tc.want.Mismatched || got.Unpersisted != tc.want.Unpersisted {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if clean := tc.want.Missing+tc.want.Duplicated+tc.want.Mismatched+tc.want.Unpersisted == 0; (b.verify().err() == nil) != clean {
				t.Errorf("err() = %v, want an error: %v", b.verify().err(), !clean)
			}
		})
	}
}
