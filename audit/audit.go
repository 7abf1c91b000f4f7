// Package audit is the per-session hash chain over session log entries.
// Every entry's hash covers the previous entry's hash, the session id, its
// seq and its frame, so changing, dropping or reordering any stored entry
// breaks the chain from that point on. Relays compute the chain as they
// commit; the control plane verifies it on ingest. Standard library only.
package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
)

// Size is the length of a chain hash.
const Size = sha256.Size

// ErrBroken reports a chain that does not verify.
var ErrBroken = errors.New("audit: hash chain broken")

// Genesis is the "previous hash" of a session's first entry.
var Genesis = make([]byte, Size)

// Hash returns the chain hash of the entry seq of session whose frame is
// frame, following prev (Genesis for seq 1).
func Hash(prev []byte, session string, seq uint64, frame []byte) []byte {
	h := sha256.New()
	h.Write(prev)
	var n [9]byte
	n[0] = byte(len(session))
	h.Write(n[:1])
	h.Write([]byte(session))
	binary.BigEndian.PutUint64(n[1:], seq)
	h.Write(n[1:])
	h.Write(frame)
	return h.Sum(nil)
}

// Entry is one stored entry with its recorded hash.
type Entry struct {
	Seq   uint64
	Hash  []byte
	Frame []byte
}

// BreakError says where a chain broke. It names seqs only.
type BreakError struct {
	Session string
	Seq     uint64
	Reason  string
}

func (e *BreakError) Error() string {
	return fmt.Sprintf("audit: session %s: chain broken at seq %d: %s", e.Session, e.Seq, e.Reason)
}

func (e *BreakError) Unwrap() error { return ErrBroken }

// Verify checks entries (ascending, contiguous seqs) against the chain
// starting after prev (the hash of entry entries[0].Seq-1, or Genesis).
// It returns the hash of the last entry, or a *BreakError.
func Verify(session string, prev []byte, entries []Entry) ([]byte, error) {
	for i, e := range entries {
		if i > 0 && e.Seq != entries[i-1].Seq+1 {
			return nil, &BreakError{session, e.Seq, fmt.Sprintf("seq follows %d", entries[i-1].Seq)}
		}
		want := Hash(prev, session, e.Seq, e.Frame)
		if len(e.Hash) != Size || string(want) != string(e.Hash) {
			return nil, &BreakError{session, e.Seq, "recorded hash does not match the entry"}
		}
		prev = e.Hash
	}
	return prev, nil
}

// Checker checks single entries against their predecessor's hash, as
// Verify does, reusing one SHA-256 state and buffer so that a check does
// not allocate. The zero value is ready; not for concurrent use.
type Checker struct {
	h   hash.Hash
	buf []byte
	sum [Size]byte
}

// Check reports whether hash is the chain hash of the entry seq of session
// whose frame is frame, following prev.
func (c *Checker) Check(prev []byte, session string, seq uint64, frame, hash []byte) bool {
	if len(hash) != Size {
		return false
	}
	if c.h == nil {
		c.h = sha256.New()
	}
	c.h.Reset()
	c.h.Write(prev)
	c.buf = append(c.buf[:0], byte(len(session)))
	c.buf = append(c.buf, session...)
	c.buf = binary.BigEndian.AppendUint64(c.buf, seq)
	c.h.Write(c.buf)
	c.h.Write(frame)
	return string(c.h.Sum(c.sum[:0])) == string(hash)
}
