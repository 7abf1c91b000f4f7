package storage

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// syncLater schedules the WAL sync that makes an unsynced commit durable
// and then releases its outbox position (0: none). One goroutine syncs at
// a time; commits that arrive during a sync share the next one.
func (s *Store) syncLater(pos uint64) {
	s.lazyMu.Lock()
	if pos != 0 {
		s.lazyPos = append(s.lazyPos, pos)
	}
	s.lazyDirty = true
	start := !s.lazyRunning
	s.lazyRunning = true
	s.lazyMu.Unlock()
	if !start {
		return
	}
	// Counted as a call in progress, so Close waits for the sync. The
	// caller is itself a call in progress: Close cannot have finished.
	s.mu.Lock()
	s.inflight++
	s.mu.Unlock()
	go s.syncLoop()
}

// syncLoop syncs the WAL until no unsynced commit is left. A failed sync
// fails the store, and the positions it should have released stay
// unreadable: what they name may not be on the disk.
func (s *Store) syncLoop() {
	defer s.exit()
	for {
		s.lazyMu.Lock()
		if !s.lazyDirty {
			s.lazyRunning = false
			s.lazyMu.Unlock()
			return
		}
		if s.lazyDelay > 0 {
			// Let the commits of the next moments share this sync.
			s.lazyMu.Unlock()
			time.Sleep(s.lazyDelay)
			s.lazyMu.Lock()
		}
		ps := s.lazyPos
		s.lazyPos, s.lazyDirty = nil, false
		s.lazyMu.Unlock()
		if err := s.syncWAL(); err != nil {
			continue // failed and logged once by fail.set; lazyDirty is cleared
		}
		for _, p := range ps {
			s.outboxDone(p)
		}
	}
}

// syncWAL syncs everything written to the WAL so far.
func (s *Store) syncWAL() (err error) {
	if err := s.fail.get(); err != nil {
		return err
	}
	defer func() {
		// As in apply: a failed WAL writer makes Pebble panic.
		if r := recover(); r != nil {
			err = s.fail.set(fmt.Errorf("pebble panicked during a WAL sync: %v", r))
		}
	}()
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return s.fail.set(fmt.Errorf("WAL sync: %w", err))
	}
	return s.fail.get()
}

// cleanKey is present while the store is closed after a clean Close.
var cleanKey = []byte("y/closed-cleanly")

// loadClean notes whether the previous process closed the store, and
// removes the mark (synced) so that a crash of this one shows at the next
// Open.
func (s *Store) loadClean() error {
	_, ok, err := s.get(cleanKey)
	if err != nil {
		return err
	}
	s.recovered = !ok
	if !ok {
		return nil
	}
	b := s.db.NewBatch()
	_ = b.Delete(cleanKey, nil)
	defer b.Close()
	return s.apply(b, true)
}

// markClean records a clean Close. Everything is synced by then.
func (s *Store) markClean() error {
	if err := s.fail.get(); err != nil {
		return err
	}
	b := s.db.NewBatch()
	_ = b.Set(cleanKey, nil, nil)
	defer b.Close()
	return s.apply(b, true)
}

// Recovered reports whether the store was opened after a process that
// did not close it (a crash, SIGKILL, power loss — or a store that is
// new). Commits made with CommitUnsynced in that process may have been
// lost: a replicating home must fetch what its replica has before it
// serves a session again (package relay).
func (s *Store) Recovered() bool { return s.recovered }
