package storage

import (
	"bytes"
	"context"
	"errors"
	"math"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/stapes-relay/stapes/relay/wire"
)

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(nil))

	// Sessions chosen to collide under a naive "l/<session>/<seq>" layout.
	sessions := []string{"a/b", "a", "a/b/", "b"}
	for _, sess := range sessions {
		for _, r := range [][2]uint64{{1, 1}, {2, 5}, {6, 10}} {
			if err := s.Commit(ctx, sess, batch(sess, r[0], r[1]), nil); err != nil {
				t.Fatalf("Commit(%q, %d..%d): %v", sess, r[0], r[1], err)
			}
		}
	}
	// An entry without an idempotency key, and meta only commits.
	noKey := []wire.LogEntry{{Seq: 1, Frame: []byte("no key")}}
	if err := s.Commit(ctx, "nokey", noKey, map[string][]byte{"dev/1": []byte("v1"), "dev/2": {}}); err != nil {
		t.Fatalf("Commit(nokey): %v", err)
	}
	if err := s.Commit(ctx, "nokey", nil, map[string][]byte{"dev/3": []byte("v3"), "dev/1": []byte("v1b")}); err != nil {
		t.Fatalf("Commit(meta only): %v", err)
	}
	if err := s.Commit(ctx, "nokey", nil, map[string][]byte{"dev/3": nil, "never-set": nil}); err != nil {
		t.Fatalf("Commit(meta delete): %v", err)
	}
	if err := s.Commit(ctx, "nokey", nil, nil); err != nil {
		t.Fatalf("Commit(empty): %v", err)
	}

	verify := func(t *testing.T, s *Store) {
		for _, sess := range sessions {
			checkLog(t, s, sess, 10)
		}
		readCases := []struct {
			name        string
			after, upto uint64
			limit       int
			wantFirst   uint64
			wantN       int
		}{
			{"all", 0, math.MaxUint64, 0, 1, 10},
			{"middle", 3, 7, 0, 4, 4},
			{"limit", 0, math.MaxUint64, 3, 1, 3},
			{"negative limit", 0, math.MaxUint64, -1, 1, 10},
			{"limit above range", 8, 9, 5, 9, 1},
			{"last", 9, math.MaxUint64, 0, 10, 1},
			{"upto beyond head", 5, 100, 0, 6, 5},
			{"after head", 10, math.MaxUint64, 0, 0, 0},
			{"empty range", 5, 5, 0, 0, 0},
			{"inverted range", 7, 3, 0, 0, 0},
			{"upto zero", 0, 0, 0, 0, 0},
		}
		for _, tc := range readCases {
			t.Run(tc.name, func(t *testing.T) {
				got := readAll(t, s, "a/b", tc.after, tc.upto, tc.limit)
				if len(got) != tc.wantN {
					t.Fatalf("got %d entries, want %d", len(got), tc.wantN)
				}
				for i, r := range got {
					want := tc.wantFirst + uint64(i)
					if r.seq != want || !bytes.Equal(r.frame, frameFor("a/b", want)) {
						t.Fatalf("entry %d: got seq %d frame %q, want seq %d frame %q", i, r.seq, r.frame, want, frameFor("a/b", want))
					}
				}
			})
		}
		if got := readAll(t, s, "unknown", 0, math.MaxUint64, 0); len(got) != 0 {
			t.Errorf("ReadLog(unknown): got %d entries, want 0", len(got))
		}
		if got := readAll(t, s, "nokey", 0, math.MaxUint64, 0); len(got) != 1 || string(got[0].frame) != "no key" {
			t.Errorf("ReadLog(nokey): got %v, want one entry %q", got, "no key")
		}

		keyCases := []struct {
			name, session, key string
			wantSeq            uint64
			wantOK             bool
		}{
			{"present", "a/b", keyFor("a/b", 7), 7, true},
			{"other session's key", "a", keyFor("a/b", 7), 0, false},
			{"unknown key", "a/b", "nope", 0, false},
			{"unknown session", "zzz", keyFor("a/b", 7), 0, false},
		}
		for _, tc := range keyCases {
			t.Run("key "+tc.name, func(t *testing.T) {
				seq, ok, err := s.LookupKey(ctx, tc.session, tc.key)
				if err != nil || seq != tc.wantSeq || ok != tc.wantOK {
					t.Fatalf("LookupKey = %d, %v, %v; want %d, %v, nil", seq, ok, err, tc.wantSeq, tc.wantOK)
				}
			})
		}

		metaCases := []struct {
			name   string
			want   []byte
			wantOK bool
		}{
			{"dev/1", []byte("v1b"), true},
			{"dev/2", []byte{}, true},
			{"dev/3", nil, false},
			{"never-set", nil, false},
		}
		for _, tc := range metaCases {
			t.Run("meta "+tc.name, func(t *testing.T) {
				got, ok, err := s.Meta(ctx, tc.name)
				if err != nil || ok != tc.wantOK || !bytes.Equal(got, tc.want) || (ok && got == nil) {
					t.Fatalf("Meta = %q (nil %v), %v, %v; want %q, %v, nil", got, got == nil, ok, err, tc.want, tc.wantOK)
				}
			})
		}
		// Meta returns a copy.
		b, _, _ := s.Meta(ctx, "dev/1")
		b[0] = 'X'
		if again, _, _ := s.Meta(ctx, "dev/1"); string(again) != "v1b" {
			t.Errorf("Meta after modifying the returned blob = %q, want %q", again, "v1b")
		}
	}

	t.Run("open", func(t *testing.T) { verify(t, s) })
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s2 := openStore(t, dir, testOptions(nil))
	t.Run("reopened", func(t *testing.T) { verify(t, s2) })
}

func TestReadLogCallback(t *testing.T) {
	s := openStore(t, "db", testOptions(vfs.NewMem()))
	if err := s.Commit(context.Background(), "s", batch("s", 1, 300), nil); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	errStop := errors.New("stop")
	cases := []struct {
		name    string
		cancel  bool // cancel ctx at the first entry
		fnErr   error
		wantErr error
		maxN    int
	}{
		{"fn error returned unwrapped", false, errStop, errStop, 1},
		{"ctx cancelled mid-read", true, nil, context.Canceled, readCheckEvery + 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			n := 0
			err := s.ReadLog(ctx, "s", 0, math.MaxUint64, 0, func(uint64, []byte) error {
				n++
				if tc.cancel {
					cancel()
				}
				return tc.fnErr
			})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ReadLog error = %v, want %v", err, tc.wantErr)
			}
			if tc.fnErr != nil && err != tc.fnErr {
				t.Fatalf("ReadLog error = %#v, want fn's error unwrapped", err)
			}
			if n > tc.maxN {
				t.Fatalf("fn called %d times, want at most %d", n, tc.maxN)
			}
		})
	}
}

func TestOpenOptions(t *testing.T) {
	cases := []struct {
		name string
		dir  string
		opts Options
	}{
		{"empty dir", "", testOptions(vfs.NewMem())},
		{"negative cache", "db", Options{FS: vfs.NewMem(), CacheSize: -1}},
		{"tiny memtable", "db", Options{FS: vfs.NewMem(), MemTableSize: 1024}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.dir, tc.opts)
			if !errors.Is(err, ErrInvalidOptions) {
				if s != nil {
					_ = s.Close()
				}
				t.Fatalf("Open error = %v, want ErrInvalidOptions", err)
			}
		})
	}
	var o Options
	o.EnsureDefaults()
	if o.FS != vfs.Default || o.Logger == nil || o.CacheSize != defaultCacheSize || o.MemTableSize != defaultMemTableSize {
		t.Errorf("EnsureDefaults() = %+v, want the documented defaults", o)
	}
}

func TestClose(t *testing.T) {
	ctx := context.Background()
	s, err := Open("db", testOptions(vfs.NewMem()))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := s.Commit(ctx, "s", batch("s", 1, 1), nil); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	for i := range 3 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"Commit", func() error { return s.Commit(ctx, "s", batch("s", 2, 2), nil) }},
		{"Head", func() error { _, err := s.Head(ctx, "s"); return err }},
		{"ReadLog", func() error {
			return s.ReadLog(ctx, "s", 0, 10, 0, func(uint64, []byte) error { return nil })
		}},
		{"LookupKey", func() error { _, _, err := s.LookupKey(ctx, "s", "k"); return err }},
		{"Meta", func() error { _, _, err := s.Meta(ctx, "m"); return err }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: got %v, want ErrClosed", c.name, err)
		}
	}
}
