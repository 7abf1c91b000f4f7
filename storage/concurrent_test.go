package storage

import (
	"context"
	"fmt"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// walFsyncs returns how many WAL fsyncs the store's Pebble has done.
func walFsyncs(t testing.TB, s *Store) uint64 {
	t.Helper()
	var m dto.Metric
	if err := s.db.Metrics().LogWriter.FsyncLatency.Write(&m); err != nil {
		t.Fatalf("reading fsync histogram: %v", err)
	}
	return m.GetHistogram().GetSampleCount()
}

// TestConcurrentCommits commits from 64 goroutines, one session each, on a
// real Pebble directory, then checks every session after a reopen. Run with
// -race.
func TestConcurrentCommits(t *testing.T) {
	const sessions, batches = 64, 20
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(nil))
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for i := range sessions {
		sess := fmt.Sprintf("session-%02d", i)
		wg.Go(func() {
			seq := uint64(1)
			for b := range batches {
				last := seq + uint64(b%3)
				meta := map[string][]byte{"last/" + sess: fmt.Appendf(nil, "%d", last)}
				if err := s.Commit(ctx, sess, batch(sess, seq, last), meta); err != nil {
					errs <- err
					return
				}
				// Readers run alongside the writers.
				if h, err := s.Head(ctx, sess); err != nil || h != last {
					errs <- fmt.Errorf("Head(%q) = %d, %v; want %d", sess, h, err, last)
					return
				}
				seq = last + 1
			}
		})
	}
	wg.Wait()
	close(errs)
	// Grouped commit: a global lock around Commit would give one fsync per
	// Commit (or more); Pebble's pipeline shares fsyncs between them.
	commits, fsyncs := uint64(sessions*batches), walFsyncs(t, s)
	t.Logf("%d commits, %d WAL fsyncs", commits, fsyncs)
	if fsyncs >= commits {
		t.Errorf("%d WAL fsyncs for %d concurrent commits: want fewer (grouped)", fsyncs, commits)
	}
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	heads := make(map[string]uint64)
	for i := range sessions {
		sess := fmt.Sprintf("session-%02d", i)
		h, err := s.Head(ctx, sess)
		if err != nil {
			t.Fatalf("Head(%q): %v", sess, err)
		}
		heads[sess] = h
		checkLog(t, s, sess, h)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s2 := openStore(t, dir, testOptions(nil))
	for sess, h := range heads {
		checkLog(t, s2, sess, h)
		m, ok, err := s2.Meta(ctx, "last/"+sess)
		if err != nil || !ok || string(m) != fmt.Sprint(h) {
			t.Fatalf("Meta(last/%s) = %q, %v, %v; want %d", sess, m, ok, err, h)
		}
	}
}
