package storage

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/prometheus/client_golang/prometheus"
)

func isWAL(op errorfs.Op) bool { return strings.HasSuffix(op.Path, ".log") }

// TestWALFaults makes WAL writes or syncs fail while sessions commit, and
// checks that no Commit returns nil for data that is not durable, that the
// store refuses to report anything afterwards, and that a crash clone
// (synced data only) holds every batch whose Commit returned nil.
func TestWALFaults(t *testing.T) {
	cases := []struct {
		name    string
		inject  func(op errorfs.Op) bool
		writers int
	}{
		{"sync fails", func(op errorfs.Op) bool {
			k := op.Kind
			return isWAL(op) && (k == errorfs.OpFileSync || k == errorfs.OpFileSyncData || k == errorfs.OpFileSyncTo)
		}, 1},
		{"write fails", func(op errorfs.Op) bool { return isWAL(op) && op.Kind == errorfs.OpFileWrite }, 1},
		{"sync fails under concurrent commits", func(op errorfs.Op) bool {
			k := op.Kind
			return isWAL(op) && (k == errorfs.OpFileSync || k == errorfs.OpFileSyncData || k == errorfs.OpFileSyncTo)
		}, 8},
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			base := vfs.NewCrashableMem()
			toggle := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
				if tc.inject(op) {
					return errorfs.ErrInjected
				}
				return nil
			})}
			var fatals atomic.Int32
			opts := testOptions(errorfs.Wrap(base, toggle))
			opts.OnFatal = func(error) { fatals.Add(1) }
			reg := prometheus.NewRegistry()
			opts.Registerer = reg
			s, err := Open("db", opts)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}

			// Writers commit one entry per batch until their first error.
			heads := make([]atomic.Uint64, tc.writers) // highest seq whose Commit returned nil
			var total atomic.Int64
			target := int64(5 + rng.IntN(40))
			reached := make(chan struct{})
			var once sync.Once
			var wg sync.WaitGroup
			errs := make([]error, tc.writers)
			for i := range tc.writers {
				sess := fmt.Sprintf("w%d", i)
				wg.Go(func() {
					for seq := uint64(1); seq < 100000; seq++ {
						if err := s.Commit(ctx, sess, batch(sess, seq, seq), nil); err != nil {
							errs[i] = err
							return
						}
						heads[i].Store(seq)
						if total.Add(1) == target {
							once.Do(func() { close(reached) })
						}
					}
				})
			}
			select {
			case <-reached:
			case <-time.After(20 * time.Second):
				t.Fatal("writers made no progress")
			}
			toggle.On()
			wg.Wait()

			for i, err := range errs {
				if !errors.Is(err, ErrFailed) {
					t.Errorf("writer %d stopped with %v, want ErrFailed", i, err)
				}
			}
			if got := fatals.Load(); got != 1 {
				t.Errorf("OnFatal called %d times, want 1", got)
			}
			if got := gatherValue(t, reg, "stapes_storage_failed", ""); got != 1 {
				t.Errorf("stapes_storage_failed = %v, want 1", got)
			}
			// The failed batches may sit in Pebble's memtable; the store must
			// not report them (or anything else) any more.
			calls := []struct {
				name string
				call func() error
			}{
				{"Commit", func() error { return s.Commit(ctx, "other", batch("other", 1, 1), nil) }},
				{"Head", func() error { _, err := s.Head(ctx, "w0"); return err }},
				{"ReadLog", func() error {
					return s.ReadLog(ctx, "w0", 0, math.MaxUint64, 0, func(uint64, []byte) error { return nil })
				}},
				{"LookupKey", func() error { _, _, err := s.LookupKey(ctx, "w0", keyFor("w0", 1)); return err }},
				{"Meta", func() error { _, _, err := s.Meta(ctx, "m"); return err }},
			}
			for _, c := range calls {
				if err := c.call(); !errors.Is(err, ErrFailed) {
					t.Errorf("%s after the failure: got %v, want ErrFailed", c.name, err)
				}
			}
			closed := make(chan error, 1)
			go func() { closed <- s.Close() }()
			select {
			case err := <-closed:
				t.Logf("Close after failure: %v", err)
			case <-time.After(20 * time.Second):
				t.Fatal("Close after a WAL failure did not return")
			}

			// Only what was synced survives a crash: every nil Commit must.
			s2 := openStore(t, "db", testOptions(base.CrashClone(vfs.CrashCloneCfg{})))
			for i := range tc.writers {
				sess := fmt.Sprintf("w%d", i)
				head, err := s2.Head(ctx, sess)
				if err != nil {
					t.Fatalf("Head(%q) after reopen: %v", sess, err)
				}
				if acked := heads[i].Load(); head < acked {
					t.Errorf("session %q: head %d after crash, but Commit returned nil up to seq %d", sess, head, acked)
				}
				checkLog(t, s2, sess, head)
			}
		})
	}
}
