package wire

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Stream framing, used on QUIC streams (and any byte stream): each frame is
// preceded by its length as a 4-byte big-endian unsigned integer.

// WriteFrame writes one length-prefixed frame to w in a single Write.
func WriteFrame(w io.Writer, frame []byte) error {
	buf := make([]byte, 4+len(frame))
	binary.BigEndian.PutUint32(buf, uint32(len(frame)))
	copy(buf[4:], frame)
	_, err := w.Write(buf)
	return err
}

// AppendLengthPrefixed appends the 4-byte length of frame and frame to dst.
func AppendLengthPrefixed(dst, frame []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(frame)))
	return append(dst, frame...)
}

// ReadFrame reads one length-prefixed frame from r. A length above maxFrame
// (0 means DefaultMaxFrame) returns ErrTooLarge without reading the body.
// A stream that ends between frames returns io.EOF; one that ends inside a
// frame (its length or its body) returns an error wrapping ErrTruncated and
// io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, maxFrame int) ([]byte, error) {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			// EOF inside the length: the stream ended mid-frame.
			err = fmt.Errorf("%w: %w", ErrTruncated, err)
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return nil, ErrEmpty
	}
	if uint64(n) > uint64(maxFrame) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, maxFrame)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("%w: %w", ErrTruncated, err)
	}
	return buf, nil
}
