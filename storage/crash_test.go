package storage

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// crashWriter commits batches of 1..4 entries to one session; each batch also
// writes a meta marker, so a batch is visible as a whole or not at all.
type crashWriter struct {
	session string
	mu      sync.Mutex   // guards the fields below
	batches [][2]uint64  // first, last seq of each attempted batch
	acked   atomic.Int64 // batches whose Commit returned nil
}

func markerName(session string, batch int) string { return fmt.Sprintf("done/%s/%d", session, batch) }

func (w *crashWriter) run(s *Store, rng *rand.Rand, stop <-chan struct{}, onAck func()) error {
	next := uint64(1)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		last := next + uint64(rng.IntN(4))
		w.mu.Lock()
		w.batches = append(w.batches, [2]uint64{next, last})
		w.mu.Unlock()
		meta := map[string][]byte{markerName(w.session, i): []byte("ok")}
		if err := s.Commit(context.Background(), w.session, batch(w.session, next, last), meta); err != nil {
			return fmt.Errorf("Commit(%q, %d..%d): %w", w.session, next, last, err)
		}
		w.acked.Add(1)
		onAck()
		next = last + 1
	}
}

// TestCrashClone commits from several goroutines on a crashable in-memory
// FS, takes a crash clone (with a random share of unsynced data kept) at a
// random point, reopens from the clone and checks that every batch
// acknowledged before the clone is there, and that every batch is either
// entirely present or entirely absent.
func TestCrashClone(t *testing.T) {
	const rounds, writers = 12, 4
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for round := range rounds {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			s, err := Open("db", testOptions(fs))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			target := int64(1 + rng.IntN(150))
			var total atomic.Int64
			reached := make(chan struct{})
			var reachOnce sync.Once
			onAck := func() {
				if total.Add(1) >= target {
					reachOnce.Do(func() { close(reached) })
				}
			}
			stop := make(chan struct{})
			ws := make([]*crashWriter, writers)
			errs := make(chan error, writers)
			var wg sync.WaitGroup
			for i := range ws {
				ws[i] = &crashWriter{session: fmt.Sprintf("sess/%d", i)}
				wrng := rand.New(rand.NewPCG(rng.Uint64(), uint64(i)))
				wg.Go(func() { errs <- ws[i].run(s, wrng, stop, onAck) })
			}
			select {
			case <-reached:
			case <-time.After(20 * time.Second):
				t.Fatalf("only %d of %d commits acknowledged in time", total.Load(), target)
			}
			// Everything acknowledged before CrashClone starts is synced.
			ackedBefore := make([]int64, writers)
			for i, w := range ws {
				ackedBefore[i] = w.acked.Load()
			}
			unsynced := rng.IntN(101)
			clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: unsynced, RNG: rand.New(rand.NewPCG(rng.Uint64(), 1))})
			close(stop)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Errorf("writer: %v", err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}

			s2 := openStore(t, "db", testOptions(clone))
			for i, w := range ws {
				present := checkCrashedSession(t, s2, w)
				if int64(present) < ackedBefore[i] {
					t.Errorf("session %q: %d batches survived the crash (unsynced kept %d%%), but %d were acknowledged before it",
						w.session, present, unsynced, ackedBefore[i])
				}
			}
		})
	}
}

// checkCrashedSession checks that the session holds a prefix of w's batches,
// each complete, and nothing of the others; it returns how many survived.
func checkCrashedSession(t *testing.T, s *Store, w *crashWriter) int {
	t.Helper()
	ctx := context.Background()
	head, err := s.Head(ctx, w.session)
	if err != nil {
		t.Fatalf("Head(%q): %v", w.session, err)
	}
	recs := readAll(t, s, w.session, 0, math.MaxUint64, 0)
	if uint64(len(recs)) != head {
		t.Fatalf("session %q: head %d but %d log entries", w.session, head, len(recs))
	}
	for i, r := range recs {
		if r.seq != uint64(i+1) || !bytes.Equal(r.frame, frameFor(w.session, r.seq)) {
			t.Fatalf("session %q: entry %d is seq %d frame %q", w.session, i, r.seq, r.frame)
		}
	}
	present := 0
	for bi, b := range w.batches {
		_, marked, err := s.Meta(ctx, markerName(w.session, bi))
		if err != nil {
			t.Fatalf("Meta: %v", err)
		}
		var keys int
		for seq := b[0]; seq <= b[1]; seq++ {
			got, ok, err := s.LookupKey(ctx, w.session, keyFor(w.session, seq))
			if err != nil || (ok && got != seq) {
				t.Fatalf("LookupKey(%q, seq %d) = %d, %v, %v", w.session, seq, got, ok, err)
			}
			if ok {
				keys++
			}
		}
		inLog := b[1] <= head
		n := int(b[1] - b[0] + 1)
		switch {
		case inLog && marked && keys == n:
			if present != bi {
				t.Fatalf("session %q: batch %d present after a missing batch", w.session, bi)
			}
			present++
		case !inLog && !marked && keys == 0 && b[0] > head:
		default:
			t.Fatalf("session %q batch %d (seqs %d..%d) partially visible: head %d, marker %v, %d of %d keys",
				w.session, bi, b[0], b[1], head, marked, keys, n)
		}
	}
	return present
}
