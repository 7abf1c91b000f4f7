package storage

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/stapes-relay/stapes/relay/wire"
)

// testOptions returns Options for tests: quiet logger, small cache.
func testOptions(fs vfs.FS) Options {
	return Options{
		FS:        fs,
		Logger:    slog.New(slog.DiscardHandler),
		CacheSize: 1 << 20,
	}
}

// openStore opens a store and closes it when the test ends.
func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%q): %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// frameFor is a deterministic frame for a session's seq.
func frameFor(session string, seq uint64) []byte {
	return fmt.Appendf(nil, "frame %s #%d", session, seq)
}

// keyFor is a deterministic idempotency key for a session's seq.
func keyFor(session string, seq uint64) string {
	return fmt.Sprintf("msg-%s-%d", session, seq)
}

// batch builds entries first..last with frameFor and keyFor.
func batch(session string, first, last uint64) []wire.LogEntry {
	var es []wire.LogEntry
	for seq := first; seq <= last; seq++ {
		es = append(es, wire.LogEntry{Seq: seq, Key: keyFor(session, seq), Frame: frameFor(session, seq)})
	}
	return es
}

type logRecord struct {
	seq   uint64
	frame []byte
}

// readAll returns the session's log (copies of the frames).
func readAll(t testing.TB, s *Store, session string, after, upto uint64, limit int) []logRecord {
	t.Helper()
	var got []logRecord
	err := s.ReadLog(context.Background(), session, after, upto, limit, func(seq uint64, frame []byte) error {
		got = append(got, logRecord{seq, bytes.Clone(frame)})
		return nil
	})
	if err != nil {
		t.Fatalf("ReadLog(%q, %d, %d, %d): %v", session, after, upto, limit, err)
	}
	return got
}

// checkLog asserts the session's whole log is seqs 1..head with frameFor
// frames and keyFor keys, and that Head is head.
func checkLog(t testing.TB, s *Store, session string, head uint64) {
	t.Helper()
	ctx := context.Background()
	gotHead, err := s.Head(ctx, session)
	if err != nil || gotHead != head {
		t.Fatalf("Head(%q) = %d, %v; want %d", session, gotHead, err, head)
	}
	recs := readAll(t, s, session, 0, math.MaxUint64, 0)
	if uint64(len(recs)) != head {
		t.Fatalf("ReadLog(%q) returned %d entries, want %d", session, len(recs), head)
	}
	for i, r := range recs {
		want := uint64(i + 1)
		if r.seq != want || !bytes.Equal(r.frame, frameFor(session, want)) {
			t.Fatalf("ReadLog(%q)[%d] = seq %d frame %q; want seq %d frame %q", session, i, r.seq, r.frame, want, frameFor(session, want))
		}
		seq, ok, err := s.LookupKey(ctx, session, keyFor(session, want))
		if err != nil || !ok || seq != want {
			t.Fatalf("LookupKey(%q, %q) = %d, %v, %v; want %d, true, nil", session, keyFor(session, want), seq, ok, err, want)
		}
	}
}
