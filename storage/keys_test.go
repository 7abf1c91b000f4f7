package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestKeyLayout(t *testing.T) {
	cases := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"log", logKey("a/b", 258), []byte("l/\x03a/b\x00\x00\x00\x00\x00\x00\x01\x02")},
		{"idempotency", idemKey("a/b", "k1"), []byte("k/\x03a/bk1")},
		{"head", headKey("a/b"), []byte("h/\x03a/b")},
		{"meta", metaKey("dev/7"), []byte("m/dev/7")},
		{"seq", encodeSeq(1<<56 + 2), []byte("\x01\x00\x00\x00\x00\x00\x00\x02")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Equal(tc.got, tc.want) {
				t.Fatalf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
	// Log keys of one session sort by seq.
	if bytes.Compare(logKey("s", 255), logKey("s", 256)) >= 0 {
		t.Error("logKey(s, 255) does not sort before logKey(s, 256)")
	}
}

func FuzzDecodeSeq(f *testing.F) {
	f.Add([]byte{})
	f.Add(encodeSeq(0))
	f.Add(encodeSeq(1<<64 - 1))
	f.Add([]byte{1, 2, 3})
	f.Add([]byte("123456789"))
	f.Fuzz(func(t *testing.T, v []byte) {
		seq, err := decodeSeq(v)
		if len(v) != seqLen {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeSeq(%x) error = %v, want ErrCorrupt", v, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("decodeSeq(%x): %v", v, err)
		}
		if !bytes.Equal(encodeSeq(seq), v) {
			t.Fatalf("encodeSeq(decodeSeq(%x)) = %x", v, encodeSeq(seq))
		}
	})
}

// FuzzLogSeq decodes arbitrary keys as log keys of a session: it must never
// panic, accept only keys logKey produces, and round-trip.
func FuzzLogSeq(f *testing.F) {
	f.Add("a/b", logKey("a/b", 7))
	f.Add("a", logKey("a/b", 7))
	f.Add("a", []byte("l/\x01a"))
	f.Add("s", append(logKey("s", 1), 0))
	f.Add("s", []byte{})
	f.Fuzz(func(t *testing.T, session string, key []byte) {
		if checkSession(session) != nil {
			return
		}
		prefix := sessionPrefix(kindLog, session, 0)
		seq, err := logSeq(prefix, key)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("logSeq error = %v, want ErrCorrupt", err)
			}
			return
		}
		if got := logKey(session, seq); !bytes.Equal(got, key) {
			t.Fatalf("logSeq(%q, %q) = %d, but logKey gives %q", prefix, key, seq, got)
		}
	})
}

// FuzzKeyEncoding checks that the layout is unambiguous: different
// (session, key) pairs never share an encoding, no session's log prefix is
// a prefix of another session's, and a log key never equals another kind's.
func FuzzKeyEncoding(f *testing.F) {
	f.Add("a/b", "c", "a", "b/c", uint64(1))
	f.Add("a", "b", "a", "b", uint64(0))
	f.Add("ab", "", "a", "b", uint64(1<<63))
	f.Add("s\x00", "k", "s", "\x00k", uint64(42))
	f.Fuzz(func(t *testing.T, s1, k1, s2, k2 string, seq uint64) {
		if checkSession(s1) != nil || checkSession(s2) != nil || len(k1) > MaxKeyLen || len(k2) > MaxKeyLen {
			return
		}
		same := s1 == s2 && k1 == k2
		if got := bytes.Equal(idemKey(s1, k1), idemKey(s2, k2)); got != same {
			t.Fatalf("idemKey(%q, %q) == idemKey(%q, %q) is %v, want %v", s1, k1, s2, k2, got, same)
		}
		p1, p2 := sessionPrefix(kindLog, s1, 0), sessionPrefix(kindLog, s2, 0)
		if s1 != s2 && (bytes.HasPrefix(p1, p2) || bytes.HasPrefix(p2, p1)) {
			t.Fatalf("log prefixes of %q and %q overlap", s1, s2)
		}
		l1 := logKey(s1, seq)
		if got, err := logSeq(p1, l1); err != nil || got != seq {
			t.Fatalf("logSeq(logKey(%q, %d)) = %d, %v", s1, seq, got, err)
		}
		if s1 != s2 {
			if _, err := logSeq(p2, l1); err == nil {
				t.Fatalf("log key of %q decodes as a log key of %q", s1, s2)
			}
		}
		if binary.BigEndian.Uint64(l1[len(l1)-seqLen:]) != seq {
			t.Fatalf("logKey(%q, %d) does not end in the seq", s1, seq)
		}
		for _, other := range [][]byte{headKey(s2), metaKey(s2), idemKey(s2, k2)} {
			if bytes.Equal(l1, other) {
				t.Fatalf("log key %q equals a key of another kind", l1)
			}
		}
	})
}
