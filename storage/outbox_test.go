package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func readOutbox(t *testing.T, s *Store, after uint64) []OutboxRecord {
	t.Helper()
	var out []OutboxRecord
	if err := s.ReadOutbox(context.Background(), after, 0, func(r OutboxRecord) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOutbox(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	s := openStore(t, "db", testOptions(fs))
	commits := []struct {
		session     string
		first, last uint64
	}{{"a", 1, 3}, {"b", 1, 1}, {"a", 4, 4}}
	for _, c := range commits {
		if err := s.Commit(ctx, c.session, batch(c.session, c.first, c.last), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(ctx, "m-only", nil, map[string][]byte{"x": []byte("1")}); err != nil {
		t.Fatal(err)
	}
	got := readOutbox(t, s, 0)
	if len(got) != len(commits) {
		t.Fatalf("got %d records, want %d (a commit without entries writes none)", len(got), len(commits))
	}
	for i, c := range commits {
		want := OutboxRecord{Pos: uint64(i + 1), Session: c.session, First: c.first, Last: c.last}
		if got[i] != want {
			t.Fatalf("record %d = %+v, want %+v", i, got[i], want)
		}
	}
	if err := s.AckOutbox(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if got := readOutbox(t, s, 0); len(got) != 1 || got[0].Pos != 3 {
		t.Fatalf("after ack 2: %+v, want only pos 3", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, "db", testOptions(fs))
	if s2.OutboxAcked() != 2 {
		t.Fatalf("acked after reopen = %d, want 2", s2.OutboxAcked())
	}
	if err := s2.Commit(ctx, "b", batch("b", 2, 2), nil); err != nil {
		t.Fatal(err)
	}
	if got := readOutbox(t, s2, 2); len(got) != 2 || got[1].Pos != 4 || got[1].Session != "b" {
		t.Fatalf("after reopen: %+v, want pos 3 and a new pos 4 for b", got)
	}
}

// TestOutboxStable: a record is not read while a lower position is still
// being committed; a position whose commit never lands is a hole that is
// skipped once nothing below it is in flight.
func TestOutboxStable(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, "db", testOptions(vfs.NewMem()))
	held := s.assignOutbox() // a commit in flight at position 1
	if err := s.Commit(ctx, "a", batch("a", 1, 1), nil); err != nil {
		t.Fatal(err)
	}
	if got := readOutbox(t, s, 0); len(got) != 0 {
		t.Fatalf("read %+v past an in-flight position", got)
	}
	s.outboxDone(held) // it failed: a hole
	if got := readOutbox(t, s, 0); len(got) != 1 || got[0].Pos != held+1 {
		t.Fatalf("got %+v, want the record after the hole", got)
	}
}

func TestChainHashes(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, "db", testOptions(vfs.NewMem()))
	es := batch("a", 1, 3)
	for i := range es {
		h := sha256.Sum256(es[i].Frame)
		es[i].Hash = h[:]
	}
	es[2].Hash = nil // an entry without a chain hash reads back without one
	if err := s.Commit(ctx, "a", es, nil); err != nil {
		t.Fatal(err)
	}
	i := 0
	if err := s.ReadChain(ctx, "a", 0, 3, 0, func(seq uint64, hash, frame []byte) error {
		if !bytes.Equal(frame, es[i].Frame) || !bytes.Equal(hash, es[i].Hash) {
			t.Fatalf("seq %d: hash %x frame %q, want %x %q", seq, hash, frame, es[i].Hash, es[i].Frame)
		}
		i++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, r := range readAll(t, s, "a", 0, 3, 0) {
		if !bytes.Equal(r.frame, frameFor("a", r.seq)) {
			t.Fatalf("ReadLog seq %d = %q: the hash must not leak into frames", r.seq, r.frame)
		}
	}
}

func FuzzOutboxRecord(f *testing.F) {
	f.Add(outboxRecord("a", 1, 3))
	f.Add(outboxRecord("session-1", 7, 7))
	f.Add([]byte{0})
	f.Add([]byte{3, 'a', 'b'})
	f.Fuzz(func(t *testing.T, v []byte) {
		session, first, last, err := decodeOutboxRecord(v)
		if err != nil {
			return
		}
		if !bytes.Equal(outboxRecord(session, first, last), v) {
			t.Fatalf("record does not re-encode to itself")
		}
	})
}
