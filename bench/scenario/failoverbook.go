package scenario

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"
)

// spread is the distribution of a handful of durations (one per kill).
type spread struct {
	n                  int
	min, p50, p99, max time.Duration
}

// spreadOf returns the minimum, the nearest-rank p50 and p99 (the
// smallest value with at least that share of values at or below it; no
// interpolation, so the p99 of fewer than 100 values is their maximum)
// and the maximum of ds.
func spreadOf(ds []time.Duration) spread {
	if len(ds) == 0 {
		return spread{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(q float64) time.Duration {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return spread{n: len(s), min: s[0], p50: rank(0.5), p99: rank(0.99), max: s[len(s)-1]}
}

// metrics names the spread's figures prefix_min_us ... prefix_max_us;
// none without values.
func (s spread) metrics(prefix string) map[string]float64 {
	if s.n == 0 {
		return nil
	}
	return map[string]float64{
		prefix + "_min_us": usOf(s.min), prefix + "_p50_us": usOf(s.p50),
		prefix + "_p99_us": usOf(s.p99), prefix + "_max_us": usOf(s.max),
	}
}

// onceBook checks exactly-once delivery: what the sender saw PERSISTED
// (client id → seq) against what the receiver was delivered.
type onceBook struct {
	mu        sync.Mutex // guards the fields below
	persisted map[string]uint64
	delivered map[string][]uint64
}

func newOnceBook() *onceBook {
	return &onceBook{persisted: map[string]uint64{}, delivered: map[string][]uint64{}}
}

// persist records that message id was PERSISTED as seq.
func (b *onceBook) persist(id string, seq uint64) {
	b.mu.Lock()
	b.persisted[id] = seq
	b.mu.Unlock()
}

// deliver records that message id was delivered as seq.
func (b *onceBook) deliver(id string, seq uint64) {
	b.mu.Lock()
	b.delivered[id] = append(b.delivered[id], seq)
	b.mu.Unlock()
}

// onceReport is what verify found.
type onceReport struct {
	Persisted   int // messages PERSISTED
	Missing     int // PERSISTED, never delivered
	Duplicated  int // delivered more than once
	Mismatched  int // delivered under another seq than PERSISTED
	Unpersisted int // delivered, never PERSISTED to the sender
	examples    []string
}

// verify compares the two sides; call it once both have settled.
func (b *onceBook) verify() onceReport {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := onceReport{Persisted: len(b.persisted)}
	note := func(format string, args ...any) {
		if len(r.examples) < 3 {
			r.examples = append(r.examples, fmt.Sprintf(format, args...))
		}
	}
	ids := make([]string, 0, len(b.persisted))
	for id := range b.persisted {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		seq, got := b.persisted[id], b.delivered[id]
		switch {
		case len(got) == 0:
			r.Missing++
			note("%s (seq %d) never delivered", id, seq)
		case len(got) > 1:
			r.Duplicated++
			note("%s delivered %d times (seqs %v)", id, len(got), got)
		case got[0] != seq:
			r.Mismatched++
			note("%s PERSISTED as seq %d, delivered as %d", id, seq, got[0])
		}
	}
	for id, got := range b.delivered {
		if _, ok := b.persisted[id]; !ok {
			r.Unpersisted++
			note("%s delivered (seqs %v), never PERSISTED", id, got)
		}
	}
	return r
}

// err is nil when every PERSISTED message was delivered exactly once,
// under its seq, and nothing else was delivered.
func (r onceReport) err() error {
	if r.Missing+r.Duplicated+r.Mismatched+r.Unpersisted == 0 {
		return nil
	}
	return fmt.Errorf("not exactly once: of %d PERSISTED, %d never delivered, %d delivered twice or more, %d under another seq; %d delivered but never PERSISTED (e.g. %v)",
		r.Persisted, r.Missing, r.Duplicated, r.Mismatched, r.Unpersisted, r.examples)
}

func (r onceReport) metrics() map[string]float64 {
	return map[string]float64{"messages": float64(r.Persisted), "missing": float64(r.Missing),
		"duplicated": float64(r.Duplicated), "mismatched": float64(r.Mismatched), "unpersisted": float64(r.Unpersisted)}
}
