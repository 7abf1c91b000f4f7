package pgstore

import (
	"encoding/binary"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The sync's COPYs are encoded here, in PostgreSQL's binary COPY format,
// rather than by pgx.CopyFrom: the row types are fixed and few, and pgx's
// per-value encode-plan lookup and boxing into []any cost more than the
// encoding itself. Rows are still built lazily, as pgconn reads the stream
// while Postgres ingests what it already sent.

// copyHeader is the binary COPY signature, flags and header extension
// length.
var copyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// pgEpochMicros is 2000-01-01 UTC, timestamptz's zero, in Unix microseconds.
const pgEpochMicros = 946_684_800_000_000

// copySQL is the COPY … FROM STDIN BINARY statement into table's cols.
func copySQL(table pgx.Identifier, cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = pgx.Identifier{c}.Sanitize()
	}
	return "COPY " + table.Sanitize() + " (" + strings.Join(q, ", ") + ") FROM STDIN BINARY"
}

// copyReader is a rowSource as a binary COPY stream, encoded row by row
// as it is read.
type copyReader struct {
	src           *rowSource
	pending       []byte // encoded, not read yet from off
	off           int
	started, done bool
}

func (r *copyReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if r.off < len(r.pending) {
			c := copy(p[n:], r.pending[r.off:])
			n += c
			r.off += c
			continue
		}
		r.pending, r.off = r.pending[:0], 0
		switch {
		case !r.started:
			r.started = true
			r.pending = append(r.pending, copyHeader...)
		case r.done:
			if n == 0 {
				return 0, io.EOF
			}
			return n, nil
		case r.src.Next():
			r.pending = binary.BigEndian.AppendUint16(r.pending, uint16(len(r.src.b.cols)))
			r.pending = r.src.row(r.pending, r.src.i)
		default:
			r.done = true
			r.pending = append(r.pending, 0xff, 0xff) // the trailer: a field count of -1
		}
	}
	return n, nil
}

// Binary COPY fields: a 4-byte length, then the value in the type's
// binary send format.

func appendText(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

func appendBytea(dst, b []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}

func appendInt8(dst []byte, v int64) []byte {
	dst = binary.BigEndian.AppendUint32(dst, 8)
	return binary.BigEndian.AppendUint64(dst, uint64(v))
}

func appendInt4(dst []byte, v int32) []byte {
	dst = binary.BigEndian.AppendUint32(dst, 4)
	return binary.BigEndian.AppendUint32(dst, uint32(v))
}

func appendInt2(dst []byte, v int16) []byte {
	dst = binary.BigEndian.AppendUint32(dst, 2)
	return binary.BigEndian.AppendUint16(dst, uint16(v))
}

func appendBool(dst []byte, v bool) []byte {
	dst = binary.BigEndian.AppendUint32(dst, 1)
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

func appendTimestamptz(dst []byte, t time.Time) []byte {
	return appendInt8(dst, t.UnixMicro()-pgEpochMicros)
}
