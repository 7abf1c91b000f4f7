package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// The outbox: every Commit that adds log entries also writes, in the same
// batch, one outbox record naming the session and its seq range, under the
// next outbox position. A syncer reads records after its cursor, ships the
// entries, and acknowledges a position; acknowledged records are deleted.
//
// Positions are assigned before the batch is applied, so concurrent
// commits may become visible out of position order, and a commit that
// fails leaves a hole. ReadOutbox therefore reads only up to the stable
// position: below the lowest position still being committed. Holes below
// it are permanent and skipped.

// chainPrefix marks a log value that carries an audit hash: 0xC1, the
// 32-byte hash, then the frame. No frame starts with 0xC1.
const (
	chainPrefix = 0xC1
	hashLen     = 32
)

var cursorKey = []byte("y/outbox-acked")

func outboxKey(pos uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{kindOutbox, '/'}, pos)
}

func outboxRecord(session string, first, last uint64) []byte {
	b := append([]byte{byte(len(session))}, session...)
	b = binary.BigEndian.AppendUint64(b, first)
	return binary.BigEndian.AppendUint64(b, last)
}

// decodeOutboxRecord parses an outbox value.
func decodeOutboxRecord(v []byte) (session string, first, last uint64, err error) {
	if len(v) < 1 || len(v) != 1+int(v[0])+16 || v[0] == 0 {
		return "", 0, 0, fmt.Errorf("%w: outbox record of %d bytes", ErrCorrupt, len(v))
	}
	n := int(v[0])
	session = string(v[1 : 1+n])
	first = binary.BigEndian.Uint64(v[1+n:])
	last = binary.BigEndian.Uint64(v[1+n+8:])
	if first == 0 || last < first {
		return "", 0, 0, fmt.Errorf("%w: outbox range %d..%d", ErrCorrupt, first, last)
	}
	return session, first, last, nil
}

// splitChain separates a stored log value into its hash (nil if none) and
// frame.
func splitChain(v []byte) (hash, frame []byte) {
	if len(v) > hashLen && v[0] == chainPrefix {
		return v[1 : 1+hashLen], v[1+hashLen:]
	}
	return nil, v
}

func logValue(frame, hash []byte) []byte {
	if len(hash) != hashLen {
		return frame
	}
	v := make([]byte, 0, 1+hashLen+len(frame))
	v = append(v, chainPrefix)
	v = append(v, hash...)
	return append(v, frame...)
}

// loadOutbox restores the next position and the acknowledged cursor.
func (s *Store) loadOutbox() error {
	v, ok, err := s.get(cursorKey)
	if err != nil {
		return err
	}
	if ok {
		if s.outAcked, err = decodeSeq(v); err != nil {
			return err
		}
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: outboxKey(0), UpperBound: []byte{kindOutbox, '/' + 1}})
	if err != nil {
		return err
	}
	s.outNext = s.outAcked + 1
	if it.Last() {
		k := it.Key()
		if len(k) == 10 {
			if p := binary.BigEndian.Uint64(k[2:]); p >= s.outNext {
				s.outNext = p + 1
			}
		}
	}
	return errors.Join(it.Error(), it.Close())
}

// assignOutbox reserves the next position for a commit in progress.
func (s *Store) assignOutbox() uint64 {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	p := s.outNext
	s.outNext++
	s.outInflight[p] = struct{}{}
	return p
}

// outboxDone releases a position once its commit finished, either way.
func (s *Store) outboxDone(p uint64) {
	s.outMu.Lock()
	delete(s.outInflight, p)
	s.outMu.Unlock()
}

// OutboxStable returns the highest position below which no commit is in
// progress: every record at or below it is either visible or never will be.
func (s *Store) OutboxStable() uint64 {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	stable := s.outNext - 1
	for p := range s.outInflight {
		if p-1 < stable {
			stable = p - 1
		}
	}
	return stable
}

// OutboxRecord is one outbox entry: a session's seq range committed
// together, or an event (Event non-nil, First and Last 0).
type OutboxRecord struct {
	Pos         uint64
	Session     string
	First, Last uint64
	Event       *Event
}

// ReadOutbox calls fn for records with after < pos <= OutboxStable(), in
// position order, at most limit (limit <= 0: no limit).
func (s *Store) ReadOutbox(ctx context.Context, after uint64, limit int, fn func(OutboxRecord) error) error {
	wrap := func(err error) error { return fmt.Errorf("storage: read outbox after %d: %w", after, err) }
	if err := s.begin(ctx); err != nil {
		return wrap(err)
	}
	defer s.exit()
	stable := s.OutboxStable()
	if stable <= after {
		return nil
	}
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: outboxKey(after + 1), UpperBound: outboxKey(stable + 1)})
	if err != nil {
		return wrap(err)
	}
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		if len(k) != 10 {
			_ = it.Close()
			return wrap(fmt.Errorf("%w: outbox key of %d bytes", ErrCorrupt, len(k)))
		}
		rec := OutboxRecord{Pos: binary.BigEndian.Uint64(k[2:])}
		if v := it.Value(); len(v) > 0 && v[0] == 0 {
			ev, err := decodeEventRecord(v)
			if err != nil {
				_ = it.Close()
				return wrap(err)
			}
			rec.Session, rec.Event = ev.Session, &ev
		} else if rec.Session, rec.First, rec.Last, err = decodeOutboxRecord(v); err != nil {
			_ = it.Close()
			return wrap(err)
		}
		if err := fn(rec); err != nil {
			_ = it.Close()
			return err
		}
		if n++; limit > 0 && n >= limit {
			break
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return wrap(err)
	}
	return nil
}

// AckOutbox durably records that everything up to pos was delivered
// downstream and deletes those records.
func (s *Store) AckOutbox(ctx context.Context, pos uint64) error {
	wrap := func(err error) error { return fmt.Errorf("storage: ack outbox %d: %w", pos, err) }
	if err := s.begin(ctx); err != nil {
		return wrap(err)
	}
	defer s.exit()
	s.outMu.Lock()
	if pos <= s.outAcked {
		s.outMu.Unlock()
		return nil
	}
	s.outMu.Unlock()
	b := s.db.NewBatch()
	_ = b.DeleteRange(outboxKey(0), outboxKey(pos+1), nil)
	_ = b.Set(cursorKey, encodeSeq(pos), nil)
	if err := s.apply(b, true); err != nil {
		return wrap(err)
	}
	_ = b.Close()
	s.outMu.Lock()
	if pos > s.outAcked {
		s.outAcked = pos
	}
	s.outMu.Unlock()
	return nil
}

// OutboxAcked returns the last acknowledged position.
func (s *Store) OutboxAcked() uint64 {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	return s.outAcked
}

// ReadChain is ReadLog with each entry's audit hash (nil for entries
// committed without one).
func (s *Store) ReadChain(ctx context.Context, session string, after, upto uint64, limit int, fn func(seq uint64, hash, frame []byte) error) error {
	return s.readLog(ctx, session, after, upto, limit, fn)
}
