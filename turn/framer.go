package turn

import (
	"encoding/binary"
	"fmt"
	"io"
)

// framer splits a TURN-over-TCP stream (RFC 8656 §12.5: STUN messages and
// ChannelData padded to 4 bytes) into frames. Read hands out the stream
// unchanged except for dropped frames, never past the end of the current
// frame, so a reader that handles one frame at a time (pion's STUNConn)
// never holds the next one. STUN requests are buffered whole and shown to
// inspect first (false drops them); everything else streams through.
type framer struct {
	r       func([]byte) (int, error)
	inspect func(frame []byte) bool

	buf        [maxRequest]byte
	start, end int // buffered bytes: buf[start:end]
	remain     int // bytes of the current frame still to hand out
}

// maxRequest bounds a STUN request on a stream (all of ours are a few
// hundred bytes); a larger one is a bad frame.
const maxRequest = 4096

// Read implements io.Reader over the framed stream.
func (f *framer) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if f.remain > 0 {
			if f.start == f.end {
				f.start, f.end = 0, 0
				if err := f.fill(1); err != nil {
					return 0, err
				}
			}
			n := copy(p[:min(len(p), f.remain)], f.buf[f.start:f.end])
			f.start += n
			f.remain -= n
			return n, nil
		}
		if err := f.need(4); err != nil {
			return 0, err
		}
		h := f.buf[f.start : f.start+4]
		switch h[0] >> 6 {
		case 0: // STUN: 20-byte header + length
			total := 20 + int(binary.BigEndian.Uint16(h[2:4]))
			if !isRequest(h) {
				f.remain = total
				continue
			}
			if total > maxRequest {
				return 0, fmt.Errorf("%w: %d-byte STUN request", ErrBadFrame, total)
			}
			if err := f.need(total); err != nil {
				return 0, err
			}
			if f.inspect != nil && !f.inspect(f.buf[f.start:f.start+total]) {
				f.start += total // dropped
				continue
			}
			f.remain = total
		case 1: // ChannelData: 4-byte header + length padded to 4
			ln := int(binary.BigEndian.Uint16(h[2:4]))
			f.remain = 4 + (ln+3)&^3
		default:
			return 0, fmt.Errorf("%w: first byte %#x", ErrBadFrame, h[0])
		}
	}
}

// isRequest reports whether a STUN header's class is request (C1C0 = 00).
func isRequest(h []byte) bool {
	return h[0]&0x01 == 0 && h[1]&0x10 == 0
}

// need makes at least n bytes available at buf[start:].
func (f *framer) need(n int) error {
	if f.end-f.start >= n {
		return nil
	}
	if f.start+n > len(f.buf) {
		f.end = copy(f.buf[:], f.buf[f.start:f.end])
		f.start = 0
	}
	return f.fill(n)
}

// fill reads until n bytes are buffered from start.
func (f *framer) fill(n int) error {
	for empty := 0; f.end-f.start < n; {
		m, err := f.r(f.buf[f.end:])
		f.end += m
		if err != nil && f.end-f.start < n {
			return err
		}
		if m == 0 {
			if empty++; empty > 100 {
				return io.ErrNoProgress
			}
		}
	}
	return nil
}
