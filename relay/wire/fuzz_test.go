package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stapes-relay/stapes/relay/wire"
)

// isDecodeError reports whether err wraps one of the package's sentinels,
// as every decode failure must.
func isDecodeError(err error) bool {
	for _, s := range []error{wire.ErrEmpty, wire.ErrTooLarge, wire.ErrMalformed, wire.ErrTruncated, wire.ErrUnknownType} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FuzzDecode: Decode never panics; every error wraps a sentinel; a frame it
// accepts re-encodes (canonically, unknown tags dropped) to bytes that decode
// to the same frame, and that encoding is a fixed point. Frames are compared,
// not bytes, because Decode skips unknown tags and explicit zero values.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		f1, err := wire.Decode(b, 0)
		if err != nil {
			if !isDecodeError(err) {
				t.Fatalf("Decode error %v wraps no wire sentinel", err)
			}
			if errors.Is(err, wire.ErrUnknownType) && f1.Type != wire.Type(b[0]) {
				t.Fatalf("ErrUnknownType with Type %v, want %v", f1.Type, wire.Type(b[0]))
			}
			return
		}
		enc := wire.Encode(&f1)
		if len(enc) > len(b) {
			t.Fatalf("re-encoding grew from %d to %d bytes", len(b), len(enc))
		}
		f2, err := wire.Decode(enc, 0)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(b))): %v\nb   %x\nenc %x", err, b, enc)
		}
		if !framesEqual(&f1, &f2) {
			t.Fatalf("frame changed through Encode:\nfirst  %+v\nsecond %+v", f1, f2)
		}
		if again := wire.Encode(&f2); !bytes.Equal(again, enc) {
			t.Fatalf("encoding not a fixed point:\n%x\n%x", enc, again)
		}
	})
}

// FuzzDecodeConfig: the same properties for the Config payload.
func FuzzDecodeConfig(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		c1, err := wire.DecodeConfig(b)
		if err != nil {
			if !errors.Is(err, wire.ErrMalformed) && !errors.Is(err, wire.ErrTruncated) {
				t.Fatalf("DecodeConfig error %v is neither ErrMalformed nor ErrTruncated", err)
			}
			return
		}
		if len(c1.Params) > wire.MaxParams {
			t.Fatalf("accepted %d params", len(c1.Params))
		}
		enc := wire.AppendConfig(nil, &c1)
		if len(enc) > len(b) {
			t.Fatalf("re-encoding grew from %d to %d bytes", len(b), len(enc))
		}
		c2, err := wire.DecodeConfig(enc)
		if err != nil {
			t.Fatalf("DecodeConfig(AppendConfig(DecodeConfig(b))): %v\nb   %x\nenc %x", err, b, enc)
		}
		if !configsEqual(&c1, &c2) {
			t.Fatalf("config changed through AppendConfig:\nfirst  %+v\nsecond %+v", c1, c2)
		}
		if again := wire.AppendConfig(nil, &c2); !bytes.Equal(again, enc) {
			t.Fatalf("encoding not a fixed point:\n%x\n%x", enc, again)
		}
	})
}

// FuzzReadFrame: ReadFrame never panics, returns each frame exactly as
// prefixed in the stream, never one above the limit, and ends with io.EOF
// only at a frame boundary.
func FuzzReadFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, max uint16) {
		limit := int(max)
		if limit == 0 {
			limit = wire.DefaultMaxFrame
		}
		r := bytes.NewReader(data)
		off := 0
		for {
			b, err := wire.ReadFrame(r, int(max))
			if err != nil {
				switch {
				case err == io.EOF:
					if off != len(data) {
						t.Fatalf("io.EOF at offset %d of %d", off, len(data))
					}
				case errors.Is(err, wire.ErrTruncated):
					if rest := len(data) - off; rest >= 4 && rest >= 4+int(binary.BigEndian.Uint32(data[off:])) {
						t.Fatalf("ErrTruncated with a whole frame left at offset %d", off)
					}
				case errors.Is(err, wire.ErrTooLarge):
					if n := binary.BigEndian.Uint32(data[off:]); int64(n) <= int64(limit) {
						t.Fatalf("ErrTooLarge for length %d, limit %d", n, limit)
					}
				case errors.Is(err, wire.ErrEmpty):
					if binary.BigEndian.Uint32(data[off:]) != 0 {
						t.Fatalf("ErrEmpty for a non-zero length")
					}
				default:
					t.Fatalf("ReadFrame error %v", err)
				}
				return
			}
			if len(b) == 0 || len(b) > limit {
				t.Fatalf("frame of %d bytes, limit %d", len(b), limit)
			}
			if want := wire.AppendLengthPrefixed(nil, b); !bytes.Equal(data[off:off+len(want)], want) {
				t.Fatalf("frame at offset %d differs from the stream", off)
			}
			off += 4 + len(b)
		}
	})
}

// Seed corpora, checked in under testdata/fuzz/NAME/ in the "go test fuzz v1"
// format and regenerated with -update. Every golden frame is a seed.

type seed struct {
	name string
	data []byte
	max  int // FuzzReadFrame only
}

func decodeSeeds() []seed {
	var s []seed
	for _, e := range examples {
		if e.frame != nil && !e.stream {
			s = append(s, seed{name: "golden-" + e.name, data: e.bytes()})
		}
	}
	every := allFields()
	return append(s,
		seed{name: "every-field", data: wire.Encode(&every)},
		seed{name: "empty", data: nil},
		seed{name: "unknown-type", data: []byte{0x0c, 0x0f, 0x01, 0x01}},
		seed{name: "duplicate-field", data: frameBytes(wire.TypeAck, field(wire.TagSeq, 1), field(wire.TagSeq, 1))},
		seed{name: "truncated-length", data: []byte{byte(wire.TypeAck), byte(wire.TagSeq), 0x80}},
		seed{name: "truncated-value", data: []byte{byte(wire.TypeSend), byte(wire.TagPayload), 5, 1, 2}},
		seed{name: "noncanonical-int", data: frameBytes(wire.TypeAck, field(wire.TagSeq, 0x80, 0x00))},
		seed{name: "noncanonical-length", data: []byte{byte(wire.TypeAck), byte(wire.TagSeq), 0x81, 0x00, 0x05}},
		seed{name: "overlong-int", data: frameBytes(wire.TypePing, field(wire.TagNonce, bytes.Repeat([]byte{0xff}, 11)...))},
		seed{name: "kind-out-of-range", data: frameBytes(wire.TypeSend, field(wire.TagKind, uvarint(1<<16)...))},
		seed{name: "bad-utf8", data: frameBytes(wire.TypeSend, field(wire.TagClientID, 'c', 0xff))},
		seed{name: "unknown-tags", data: frameBytes(wire.TypeAck, field(0), field(wire.TagSeq, 5), field(200, 1), field(200, 2))},
		seed{name: "explicit-zeros", data: frameBytes(wire.TypeHello, field(wire.TagLastSeq, 0), field(wire.TagFatal, 0), field(wire.TagToken))},
	)
}

func configSeeds() []seed {
	return []seed{
		{name: "golden-config-payload", data: exampleConfigBytes},
		{name: "golden-welcome-snapshot", data: exampleSnapshot},
		{name: "base-only", data: base(0)},
		{name: "missing-base", data: param("g", zigzag(1))},
		{name: "duplicate-param", data: bytes.Join([][]byte{base(1), param("g", zigzag(1)), param("g", zigzag(2))}, nil)},
		{name: "empty-name", data: bytes.Join([][]byte{base(1), param("", zigzag(1))}, nil)},
		{name: "bad-value", data: bytes.Join([][]byte{base(1), param("g", []byte{0x80, 0x00})}, nil)},
		{name: "extremes", data: bytes.Join([][]byte{base(1<<63 - 1), param("lo", zigzag(-1<<63)), param("hi", zigzag(1<<63-1))}, nil)},
		{name: "unknown-tag", data: bytes.Join([][]byte{field(7, 1, 2), base(3)}, nil)},
	}
}

func readFrameSeeds() []seed {
	quic := examples[len(examples)-1]
	for _, e := range examples {
		if e.name == "quic-send-config" {
			quic = e
		}
	}
	two := wire.AppendLengthPrefixed(wire.AppendLengthPrefixed(nil, wire.Encode(&helloFresh)), []byte{byte(wire.TypePing)})
	return []seed{
		{name: "golden-quic-send-config", data: quic.bytes()},
		{name: "two-frames", data: two},
		{name: "two-frames-small-limit", data: two, max: 8},
		{name: "oversize", data: []byte{0, 0, 0, 17, 1}, max: 16},
		{name: "huge-length", data: []byte{0xff, 0xff, 0xff, 0xff}},
		{name: "zero-length", data: []byte{0, 0, 0, 0}},
		{name: "truncated-body", data: []byte{0, 0, 0, 5, 1, 2}},
		{name: "truncated-length", data: []byte{0, 0}},
		{name: "empty", data: nil},
	}
}

func seedFile(s seed, withMax bool) string {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	fmt.Fprintf(&b, "[]byte(%q)\n", s.data)
	if withMax {
		fmt.Fprintf(&b, "uint16(%d)\n", s.max)
	}
	return b.String()
}

// TestFuzzSeeds keeps the checked-in seed corpora in step with the golden
// examples. Crashers the fuzzer adds to the same directories are left alone.
func TestFuzzSeeds(t *testing.T) {
	corpora := []struct {
		fuzzer  string
		seeds   []seed
		withMax bool
	}{
		{"FuzzDecode", decodeSeeds(), false},
		{"FuzzDecodeConfig", configSeeds(), false},
		{"FuzzReadFrame", readFrameSeeds(), true},
	}
	for _, c := range corpora {
		dir := filepath.Join("testdata", "fuzz", c.fuzzer)
		for _, s := range c.seeds {
			path := filepath.Join(dir, s.name)
			want := seedFile(s, c.withMax)
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("%v (run go test ./relay/wire -update)", err)
				continue
			}
			if string(got) != want {
				t.Errorf("%s is stale (run with -update)", path)
			}
		}
	}
}
