package storage

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/stapes-relay/stapes/relay/wire"
)

func TestCommitErrors(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, "db", testOptions(vfs.NewMem()))
	const sess = "s"
	if err := s.Commit(ctx, sess, batch(sess, 1, 3), map[string][]byte{"m": []byte("old")}); err != nil {
		t.Fatalf("Commit(1..3): %v", err)
	}
	// Secrets stand in for patient data: no error may repeat them.
	const secret = "SECRET"
	frame := []byte(secret + "-frame")
	e := func(seq uint64, key string) wire.LogEntry {
		return wire.LogEntry{Seq: seq, Key: key, Frame: frame}
	}
	long := strings.Repeat("x", 129)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	cases := []struct {
		name    string
		ctx     context.Context
		session string
		entries []wire.LogEntry
		meta    map[string][]byte
		want    error
	}{
		{"gap", ctx, sess, []wire.LogEntry{e(5, "")}, nil, ErrSeqGap},
		{"gap inside batch", ctx, sess, []wire.LogEntry{e(4, ""), e(6, "")}, nil, ErrSeqGap},
		{"seq at head", ctx, sess, []wire.LogEntry{e(3, "")}, nil, ErrSeqConflict},
		{"seq zero", ctx, sess, []wire.LogEntry{e(0, "")}, nil, ErrSeqConflict},
		{"repeated seq in batch", ctx, sess, []wire.LogEntry{e(4, ""), e(4, "")}, nil, ErrSeqConflict},
		{"descending in batch", ctx, sess, []wire.LogEntry{e(4, ""), e(5, ""), e(3, "")}, nil, ErrSeqConflict},
		{"gap on new session", ctx, "new", []wire.LogEntry{e(2, "")}, nil, ErrSeqGap},
		{"committed key", ctx, sess, []wire.LogEntry{e(4, secret+"-x"), e(5, keyFor(sess, 2))}, nil, ErrDuplicateKey},
		{"key twice in batch", ctx, sess, []wire.LogEntry{e(4, secret+"-k"), e(5, secret+"-k")}, nil, ErrDuplicateKey},
		{"key too long", ctx, sess, []wire.LogEntry{e(4, long)}, nil, ErrInvalidKey},
		{"empty session", ctx, "", []wire.LogEntry{e(1, "")}, nil, ErrInvalidSession},
		{"session too long", ctx, long, []wire.LogEntry{e(1, "")}, nil, ErrInvalidSession},
		{"empty meta name", ctx, sess, []wire.LogEntry{e(4, "")}, map[string][]byte{"": frame}, ErrInvalidMetaName},
		{"meta name too long", ctx, sess, nil, map[string][]byte{strings.Repeat("m", MaxMetaNameLen+1): frame}, ErrInvalidMetaName},
		{"cancelled", cancelled, sess, []wire.LogEntry{e(4, secret+"-c")}, map[string][]byte{"m": frame}, context.Canceled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Commit(tc.ctx, tc.session, tc.entries, tc.meta)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Commit error = %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "storage: ") || strings.Contains(err.Error(), secret) {
				t.Fatalf("Commit error %q: want a storage: prefix and no key or frame contents", err)
			}
			// Nothing was written.
			checkLog(t, s, sess, 3)
			if got, _ := s.Head(ctx, "new"); got != 0 {
				t.Fatalf("Head(new) = %d, want 0", got)
			}
			for _, en := range tc.entries {
				if en.Key == "" || len(en.Key) > MaxKeyLen {
					continue
				}
				if seq, ok, err := s.LookupKey(ctx, sess, en.Key); err != nil || (ok && seq > 3) {
					t.Fatalf("LookupKey after failed Commit = %d, %v, %v; want nothing new", seq, ok, err)
				}
			}
			if m, _, _ := s.Meta(ctx, "m"); string(m) != "old" {
				t.Fatalf("Meta(m) after failed Commit = %q, want %q", m, "old")
			}
		})
	}
}

func TestCommitConcurrentSameSession(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, "db", testOptions(vfs.NewMem()))
	// Simulate a Commit for "s" in progress.
	in, _, _, ok := s.claim("s")
	if !ok {
		t.Fatal("claim(s) = false on an idle session")
	}
	err := s.Commit(ctx, "s", batch("s", 1, 1), nil)
	if !errors.Is(err, ErrConcurrentCommit) {
		t.Fatalf("Commit during another Commit: error = %v, want ErrConcurrentCommit", err)
	}
	if err := s.Commit(ctx, "other", batch("other", 1, 1), nil); err != nil {
		t.Fatalf("Commit(other) during a Commit(s): %v", err)
	}
	s.release("s", in, 0, false)
	if err := s.Commit(ctx, "s", batch("s", 1, 1), nil); err != nil {
		t.Fatalf("Commit after release: %v", err)
	}
	checkLog(t, s, "s", 1)
}

func TestLookupKeyInvalid(t *testing.T) {
	s := openStore(t, "db", testOptions(vfs.NewMem()))
	cases := []struct {
		name, session, key string
		want               error
	}{
		{"empty key", "s", "", ErrInvalidKey},
		{"long key", "s", strings.Repeat("k", MaxKeyLen+1), ErrInvalidKey},
		{"empty session", "", "k", ErrInvalidSession},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := s.LookupKey(context.Background(), tc.session, tc.key); !errors.Is(err, tc.want) {
				t.Fatalf("LookupKey error = %v, want %v", err, tc.want)
			}
		})
	}
	if err := s.ReadLog(context.Background(), "", 0, math.MaxUint64, 0, nil); !errors.Is(err, ErrInvalidSession) {
		t.Errorf("ReadLog(\"\") error = %v, want ErrInvalidSession", err)
	}
}
