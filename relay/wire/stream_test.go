package wire_test

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
	"testing/iotest"

	"github.com/stapes-relay/stapes/relay/wire"
)

func TestStreamRoundTrip(t *testing.T) {
	frames := [][]byte{
		wire.Encode(&helloFresh),
		wire.Encode(&sendConfig),
		{byte(wire.TypePing)},
		bytes.Repeat([]byte{byte(wire.TypeSend)}, wire.DefaultMaxFrame),
	}
	var buf bytes.Buffer
	var appended []byte
	for _, f := range frames {
		if err := wire.WriteFrame(&buf, f); err != nil {
			t.Fatalf("WriteFrame: %v", err)
		}
		appended = wire.AppendLengthPrefixed(appended, f)
	}
	if !bytes.Equal(buf.Bytes(), appended) {
		t.Fatalf("WriteFrame and AppendLengthPrefixed disagree")
	}
	// One byte at a time, so every read is short.
	r := iotest.OneByteReader(bytes.NewReader(appended))
	for i, want := range frames {
		got, err := wire.ReadFrame(r, 0)
		if err != nil {
			t.Fatalf("ReadFrame #%d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("ReadFrame #%d = %d bytes, want %d", i, len(got), len(want))
		}
	}
	if _, err := wire.ReadFrame(r, 0); err != io.EOF {
		t.Errorf("ReadFrame at end = %v, want io.EOF exactly", err)
	}
}

func TestWriteFrameSingleWrite(t *testing.T) {
	w := &countingWriter{}
	if err := wire.WriteFrame(w, wire.Encode(&sendConfig)); err != nil {
		t.Fatal(err)
	}
	if w.writes != 1 {
		t.Errorf("WriteFrame made %d writes, want 1 (QUIC and TLS records stay whole)", w.writes)
	}
	want := errors.New("broken pipe")
	if err := wire.WriteFrame(errWriter{want}, []byte{1}); !errors.Is(err, want) {
		t.Errorf("WriteFrame error = %v, want %v", err, want)
	}
}

type countingWriter struct{ writes int }

func (w *countingWriter) Write(p []byte) (int, error) { w.writes++; return len(p), nil }

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }

func TestReadFrameErrors(t *testing.T) {
	readErr := errors.New("connection reset")
	tests := []struct {
		name     string
		r        io.Reader
		maxFrame int
		want     error
		exactly  bool // err == want, not only errors.Is
	}{
		{"EOF at frame boundary", bytes.NewReader(nil), 0, io.EOF, true},
		{"EOF inside length", bytes.NewReader([]byte{0, 0}), 0, wire.ErrTruncated, false},
		{"EOF inside length is unexpected", bytes.NewReader([]byte{0}), 0, io.ErrUnexpectedEOF, false},
		{"zero length", bytes.NewReader([]byte{0, 0, 0, 0, 1}), 0, wire.ErrEmpty, false},
		{"above maxFrame", bytes.NewReader([]byte{0, 0, 4, 1}), 1024, wire.ErrTooLarge, false},
		{"above default maxFrame", bytes.NewReader([]byte{0, 1, 0, 1}), 0, wire.ErrTooLarge, false},
		{"length 2^32-1", bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff}), 0, wire.ErrTooLarge, false},
		{"truncated body", bytes.NewReader([]byte{0, 0, 0, 5, 1, 2}), 0, wire.ErrTruncated, false},
		{"truncated body is unexpected EOF", bytes.NewReader([]byte{0, 0, 0, 5, 1, 2}), 0, io.ErrUnexpectedEOF, false},
		{"body missing", bytes.NewReader([]byte{0, 0, 0, 5}), 0, wire.ErrTruncated, false},
		{"reader error in length", iotest.ErrReader(readErr), 0, readErr, false},
		{"reader error in body", io.MultiReader(bytes.NewReader([]byte{0, 0, 0, 5, 1}), iotest.ErrReader(readErr)), 0, readErr, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := wire.ReadFrame(tt.r, tt.maxFrame)
			if b != nil {
				t.Errorf("ReadFrame returned %d bytes with error %v", len(b), err)
			}
			if tt.exactly && err != tt.want || !errors.Is(err, tt.want) {
				t.Errorf("ReadFrame = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReadFrameAtLimit(t *testing.T) {
	in := wire.AppendLengthPrefixed(nil, bytes.Repeat([]byte{3}, 1024))
	got, err := wire.ReadFrame(bytes.NewReader(in), 1024)
	if err != nil || len(got) != 1024 {
		t.Errorf("ReadFrame(1024 bytes, limit 1024) = %d bytes, %v; want 1024, nil", len(got), err)
	}
}

// TestReadFrameOversizeReadsNothing: an announced length above the limit is
// refused before the body is read or allocated, so a peer cannot make the
// relay allocate by lying about a length.
func TestReadFrameOversizeReadsNothing(t *testing.T) {
	r := &countingReader{r: bytes.NewReader(append([]byte{0x7f, 0xff, 0xff, 0xff}, make([]byte, 1<<16)...))}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := wire.ReadFrame(r, wire.DefaultMaxFrame)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("ReadFrame = %v, want ErrTooLarge", err)
	}
	if r.n != 4 {
		t.Errorf("ReadFrame consumed %d bytes, want only the 4-byte length", r.n)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<10 {
		t.Errorf("ReadFrame allocated %d bytes refusing an oversize frame", grew)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
