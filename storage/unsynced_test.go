package storage

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/stapes-relay/stapes/storage/storagetest"
)

// outboxRanges returns the readable outbox records as first..last pairs.
func outboxRanges(t *testing.T, s *Store) [][2]uint64 {
	t.Helper()
	var got [][2]uint64
	if err := s.ReadOutbox(context.Background(), 0, 0, func(r OutboxRecord) error {
		if r.Event == nil {
			got = append(got, [2]uint64{r.First, r.Last})
		}
		return nil
	}); err != nil {
		t.Fatalf("ReadOutbox: %v", err)
	}
	return got
}

// TestCommitUnsynced: an unsynced commit is visible at once, survives a
// crash only once its background sync is done, and its outbox record is
// readable only then — so the syncer never ships what a crash could take
// back.
func TestCommitUnsynced(t *testing.T) {
	ctx := context.Background()
	base := vfs.NewCrashableMem()
	gate := &storagetest.WALGate{}
	s := openStore(t, "db", testOptions(gate.Wrap(base)))
	t.Cleanup(gate.Open) // before Close (cleanups run last first), which waits for the sync
	if err := s.Commit(ctx, "a", batch("a", 1, 2), nil); err != nil {
		t.Fatal(err)
	}

	gate.Close()
	done := make(chan error, 1)
	go func() { done <- s.CommitUnsynced(ctx, "a", batch("a", 3, 5), map[string][]byte{"m/a": []byte("v")}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("CommitUnsynced: %v", err)
		}
	case <-time.After(10 * time.Second):
		gate.Open()
		t.Fatal("CommitUnsynced waited for the WAL sync")
	}
	// Visible at once to this process.
	checkLog(t, s, "a", 5)
	if seq, ok, err := s.LookupKey(ctx, "a", keyFor("a", 4)); err != nil || !ok || seq != 4 {
		t.Fatalf("LookupKey(seq 4) = %d, %v, %v", seq, ok, err)
	}
	if blob, ok, err := s.Meta(ctx, "m/a"); err != nil || !ok || string(blob) != "v" {
		t.Fatalf("Meta = %q, %v, %v", blob, ok, err)
	}
	// Not yet shipped: only the synced commit's record is readable.
	if got := outboxRanges(t, s); len(got) != 1 || got[0] != [2]uint64{1, 2} {
		t.Fatalf("outbox before the sync = %v, want [[1 2]]", got)
	}
	// A crash now may take the unsynced batch back, never the synced one.
	func() {
		c := openStore(t, "db", testOptions(base.CrashClone(vfs.CrashCloneCfg{})))
		checkLog(t, c, "a", 2)
		if _, ok, _ := c.Meta(ctx, "m/a"); ok {
			t.Error("the unsynced meta survived a crash before its sync")
		}
		// The store goes on from there.
		if err := c.Commit(ctx, "a", batch("a", 3, 3), nil); err != nil {
			t.Fatalf("Commit after the crash: %v", err)
		}
		_ = c.Close()
	}()

	gate.Open()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := outboxRanges(t, s)
		if len(got) == 2 && got[1] == [2]uint64{3, 5} {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox after the sync = %v, want [[1 2] [3 5]]", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	c := openStore(t, "db", testOptions(base.CrashClone(vfs.CrashCloneCfg{})))
	checkLog(t, c, "a", 5)
}

// TestCommitUnsyncedClose: Close waits for the background sync, and what
// was committed unsynced is on the disk afterwards.
func TestCommitUnsyncedClose(t *testing.T) {
	ctx := context.Background()
	base := vfs.NewCrashableMem()
	s, err := Open("db", testOptions(base))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		sess := string(rune('a' + i))
		wg.Go(func() {
			for seq := uint64(1); seq <= 50; seq++ {
				if err := s.CommitUnsynced(ctx, sess, batch(sess, seq, seq), nil); err != nil {
					t.Errorf("CommitUnsynced(%s, %d): %v", sess, seq, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	c := openStore(t, "db", testOptions(base.CrashClone(vfs.CrashCloneCfg{})))
	for i := range 8 {
		checkLog(t, c, string(rune('a'+i)), 50)
	}
	if got := len(outboxRanges(t, c)); got != 8*50 {
		t.Errorf("outbox records after reopen = %d, want %d", got, 8*50)
	}
}

// TestRecovered: a store reopened after Close is not Recovered; one
// reopened from a crash (here a crash clone) is, and so is a new store.
func TestRecovered(t *testing.T) {
	base := vfs.NewCrashableMem()
	s, err := Open("db", testOptions(base))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Recovered() {
		t.Error("a new store is not Recovered")
	}
	crashed := base.CrashClone(vfs.CrashCloneCfg{}) // while open
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, "db", testOptions(base))
	if s.Recovered() {
		t.Error("Recovered after a clean Close")
	}
	c := openStore(t, "db", testOptions(crashed))
	if !c.Recovered() {
		t.Error("not Recovered after a crash")
	}
	// The mark is consumed at Open: a crash of a process that opened a
	// cleanly closed store shows too.
	if c2 := openStore(t, "db", testOptions(base.CrashClone(vfs.CrashCloneCfg{}))); !c2.Recovered() {
		t.Error("not Recovered after a crash of a process that had a clean start")
	}
}
