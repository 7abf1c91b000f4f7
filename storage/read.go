package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Reads report durable data only: see inflight.go.

// Head returns the highest durably committed seq of the session (0 if
// none).
func (s *Store) Head(ctx context.Context, session string) (uint64, error) {
	if err := checkSession(session); err != nil {
		return 0, fmt.Errorf("storage: head: %w", err)
	}
	wrap := func(err error) error {
		return fmt.Errorf("storage: head session %q: %w", session, err)
	}
	if err := s.begin(ctx); err != nil {
		return 0, wrap(err)
	}
	defer s.exit()
	head, ok := s.cachedHead(session)
	if !ok {
		var err error
		if head, err = s.head(session); err != nil {
			return 0, wrap(err)
		}
		if bound, limited := s.durableBound(session); limited {
			head = bound
		}
	}
	if err := s.fail.get(); err != nil {
		return 0, wrap(err)
	}
	return head, nil
}

// head reads the session's head record from Pebble.
func (s *Store) head(session string) (uint64, error) {
	v, ok, err := s.get(headKey(session))
	if err != nil || !ok {
		return 0, err
	}
	return decodeSeq(v)
}

// readCheckEvery is how many log entries ReadLog reads between ctx checks.
const readCheckEvery = 64

// ReadLog calls fn for each durably committed entry of the session with
// after < seq <= upto, in ascending seq order, at most limit entries
// (limit <= 0: no limit). frame is only valid during the call. An error
// from fn stops the read and is returned unwrapped. fn must not call Close.
func (s *Store) ReadLog(ctx context.Context, session string, after, upto uint64, limit int, fn func(seq uint64, frame []byte) error) error {
	return s.readLog(ctx, session, after, upto, limit, func(seq uint64, _, frame []byte) error { return fn(seq, frame) })
}

func (s *Store) readLog(ctx context.Context, session string, after, upto uint64, limit int, fn func(seq uint64, hash, frame []byte) error) error {
	if err := checkSession(session); err != nil {
		return fmt.Errorf("storage: read log: %w", err)
	}
	wrap := func(err error) error {
		return fmt.Errorf("storage: read log session %q after %d: %w", session, after, err)
	}
	if err := s.begin(ctx); err != nil {
		return wrap(err)
	}
	defer s.exit()
	if upto <= after {
		return nil
	}
	prefix := sessionPrefix(kindLog, session, 0)
	// after < upto, so after+1 does not overflow. The upper bound is the
	// key of upto followed by a zero byte: the first key above it.
	lower := logKey(session, after+1)
	upper := append(logKey(session, upto), 0)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return wrap(err)
	}
	// The iterator is a consistent view from here on; bound it.
	if bound, limited := s.durableBound(session); limited && bound < upto {
		upto = bound
	}
	if err := s.fail.get(); err != nil {
		_ = it.Close()
		return wrap(err)
	}
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		if n%readCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				_ = it.Close()
				return wrap(err)
			}
		}
		seq, err := logSeq(prefix, it.Key())
		if err != nil {
			_ = it.Close()
			return wrap(err)
		}
		if seq > upto {
			break
		}
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return wrap(fmt.Errorf("seq %d: %w", seq, err))
		}
		hash, frame := splitChain(v)
		if err := fn(seq, hash, frame); err != nil {
			_ = it.Close()
			return err
		}
		n++
		if limit > 0 && n >= limit {
			break
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return wrap(err)
	}
	return nil
}

// LookupKey returns the seq durably committed under an idempotency key of
// the session; ok is false if there is none.
func (s *Store) LookupKey(ctx context.Context, session, key string) (seq uint64, ok bool, err error) {
	if err := checkSession(session); err != nil {
		return 0, false, fmt.Errorf("storage: lookup key: %w", err)
	}
	wrap := func(err error) error {
		return fmt.Errorf("storage: lookup key session %q: %w", session, err)
	}
	if err := checkKey(key); err != nil {
		return 0, false, wrap(err)
	}
	if err := s.begin(ctx); err != nil {
		return 0, false, wrap(err)
	}
	defer s.exit()
	v, ok, err := s.get(idemKey(session, key))
	if err != nil {
		return 0, false, wrap(err)
	}
	if ok {
		if seq, err = decodeSeq(v); err != nil {
			return 0, false, wrap(err)
		}
		if bound, limited := s.durableBound(session); limited && seq > bound {
			ok, seq = false, 0 // its Commit has not returned yet
		}
	}
	if err := s.fail.get(); err != nil {
		return 0, false, wrap(err)
	}
	return seq, ok, nil
}

// Meta returns a copy of the named metadata blob as durably committed; ok
// is false if it is not set. A blob stored empty is returned as a non-nil
// empty slice. If a Commit writing the name is in progress, Meta waits for
// it (or for ctx).
func (s *Store) Meta(ctx context.Context, name string) (blob []byte, ok bool, err error) {
	if err := checkMetaName(name); err != nil {
		return nil, false, fmt.Errorf("storage: meta: %w", err)
	}
	if err := s.begin(ctx); err != nil {
		return nil, false, fmt.Errorf("storage: meta: %w", err)
	}
	defer s.exit()
	for {
		blob, ok, err = s.get(metaKey(name))
		if err != nil {
			return nil, false, fmt.Errorf("storage: meta: %w", err)
		}
		writers := s.metaWriters(name)
		if len(writers) == 0 {
			break
		}
		for _, done := range writers {
			select {
			case <-done:
			case <-ctx.Done():
				return nil, false, fmt.Errorf("storage: meta: %w", ctx.Err())
			}
		}
	}
	if err := s.fail.get(); err != nil {
		return nil, false, fmt.Errorf("storage: meta: %w", err)
	}
	return blob, ok, nil
}
