package storage

import (
	"bytes"
	"context"
	"errors"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// syncGate holds WAL syncs while closed; a held sync then returns err.
type syncGate struct {
	on      atomic.Bool
	reached chan struct{} // gets a value when a sync is held
	open    chan struct{} // closed to let held syncs go
	err     error         // what the held syncs return
}

func newSyncGate() *syncGate {
	return &syncGate{reached: make(chan struct{}, 1), open: make(chan struct{})}
}

func (g *syncGate) MaybeError(op errorfs.Op) error {
	k := op.Kind
	if !g.on.Load() || !isWAL(op) || (k != errorfs.OpFileSync && k != errorfs.OpFileSyncData && k != errorfs.OpFileSyncTo) {
		return nil
	}
	select {
	case g.reached <- struct{}{}:
	default:
	}
	<-g.open
	return g.err
}

func (g *syncGate) String() string { return "syncGate" }

// TestReadsSeeOnlyDurableData holds a Commit's WAL sync and checks that
// reads do not report its batch, although Pebble already shows it, until
// Commit returns; and that if the sync then fails they never do.
func TestReadsSeeOnlyDurableData(t *testing.T) {
	cases := []struct {
		name     string
		syncErr  error
		wantHead uint64
	}{
		{"sync succeeds", nil, 4},
		{"sync fails", errorfs.ErrInjected, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			gate := newSyncGate()
			gate.err = tc.syncErr
			s := openStore(t, "db", testOptions(errorfs.Wrap(vfs.NewMem(), gate)))
			if err := s.Commit(ctx, "s", batch("s", 1, 3), map[string][]byte{"cfg": []byte("v3")}); err != nil {
				t.Fatalf("Commit(1..3): %v", err)
			}

			gate.on.Store(true)
			var wg sync.WaitGroup
			var commitErr error
			wg.Go(func() {
				commitErr = s.Commit(ctx, "s", batch("s", 4, 4), map[string][]byte{"cfg": []byte("v4")})
			})
			select {
			case <-gate.reached:
			case <-time.After(10 * time.Second):
				t.Fatal("the Commit's WAL sync never started")
			}
			// Wait until Pebble shows the unsynced batch to readers.
			deadline := time.Now().Add(10 * time.Second)
			for {
				if v, ok, err := s.get(headKey("s")); err == nil && ok && bytes.Equal(v, encodeSeq(4)) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("Pebble never showed the in-flight batch")
				}
				runtime.Gosched()
			}

			if h, err := s.Head(ctx, "s"); err != nil || h != 3 {
				t.Errorf("Head during the sync = %d, %v; want 3", h, err)
			}
			s.mu.Lock()
			clear(s.heads) // the same without the head cache
			s.mu.Unlock()
			if h, err := s.Head(ctx, "s"); err != nil || h != 3 {
				t.Errorf("Head during the sync, cold cache = %d, %v; want 3", h, err)
			}
			if got := readAll(t, s, "s", 0, math.MaxUint64, 0); len(got) != 3 {
				t.Errorf("ReadLog during the sync returned %d entries, want 3", len(got))
			}
			if seq, ok, err := s.LookupKey(ctx, "s", keyFor("s", 4)); err != nil || ok {
				t.Errorf("LookupKey(seq 4 key) during the sync = %d, %v, %v; want not found", seq, ok, err)
			}
			if seq, ok, err := s.LookupKey(ctx, "s", keyFor("s", 2)); err != nil || !ok || seq != 2 {
				t.Errorf("LookupKey(seq 2 key) during the sync = %d, %v, %v; want 2", seq, ok, err)
			}
			short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			if _, _, err := s.Meta(short, "cfg"); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Meta(cfg) during the sync: error %v, want it to wait (DeadlineExceeded)", err)
			}
			cancel()
			metaDone := make(chan error, 1)
			go func() {
				b, ok, err := s.Meta(ctx, "cfg")
				if err == nil && (!ok || string(b) != "v4") {
					err = errors.New("Meta(cfg) after the sync = " + string(b) + ", want v4")
				}
				metaDone <- err
			}()

			close(gate.open)
			wg.Wait()
			metaErr := <-metaDone
			if tc.syncErr == nil {
				if commitErr != nil {
					t.Fatalf("Commit(4): %v", commitErr)
				}
				if metaErr != nil {
					t.Errorf("Meta waiting for the Commit: %v", metaErr)
				}
				checkLog(t, s, "s", tc.wantHead)
				return
			}
			if !errors.Is(commitErr, ErrFailed) {
				t.Fatalf("Commit(4) with a failed sync: error %v, want ErrFailed", commitErr)
			}
			if !errors.Is(metaErr, ErrFailed) {
				t.Errorf("Meta waiting for the failed Commit: error %v, want ErrFailed", metaErr)
			}
			if _, err := s.Head(ctx, "s"); !errors.Is(err, ErrFailed) {
				t.Errorf("Head after the failed sync: error %v, want ErrFailed", err)
			}
		})
	}
}
