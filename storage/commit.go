package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/stapes-relay/stapes/relay/wire"
)

// Commit appends entries to the session's log, records their idempotency
// keys (entries with Key "" have none), sets the session head to the last
// entry's seq, and writes or deletes (nil blob) the meta blobs, all in one
// atomic batch. It returns nil only after the batch is synced to stable
// storage. entries may be empty (meta only); entries and meta may be reused
// by the caller once Commit returns.
//
// Entries must carry contiguous ascending seqs starting at Head+1:
// otherwise ErrSeqConflict (a seq at or below the head, or not ascending) or
// ErrSeqGap. A key already committed for the session, or repeated in the
// batch, gives ErrDuplicateKey. Nothing is written on any of these errors.
//
// ctx is checked before the write starts; once the batch is handed to Pebble
// Commit waits for the sync regardless of ctx. An error before that point
// (validation, ctx, a failed lookup) means nothing was written. An error
// from the write itself is ErrFailed and leaves the outcome unknown: the
// store then refuses all further calls until it is reopened, and on reopen
// it shows whether the batch reached the disk.
//
// Commit calls for one session must not overlap (ErrConcurrentCommit);
// calls for different sessions may, and share fsyncs.
func (s *Store) Commit(ctx context.Context, session string, entries []wire.LogEntry, meta map[string][]byte) error {
	start := time.Now()
	r, err := s.commit(ctx, session, entries, meta, true)
	s.metrics.observeCommit(start, r)
	return err
}

// CommitUnsynced is Commit without waiting for the sync: it returns once
// the batch is applied (visible to every read of this process) and the
// WAL sync that makes it durable has been started in the background. A
// crash before that sync completes may lose the batch, and with it every
// later unsynced one (never an earlier batch: the WAL is replayed in
// order). Its outbox record becomes readable (ReadOutbox) only once the
// sync is done, so nothing that a crash may take back is ever shipped.
//
// It is for a caller that holds the entries durably elsewhere: a
// replicating home whose replica has synced them (package relay). Errors
// are Commit's; a failed background sync fails the store (ErrFailed).
func (s *Store) CommitUnsynced(ctx context.Context, session string, entries []wire.LogEntry, meta map[string][]byte) error {
	start := time.Now()
	r, err := s.commit(ctx, session, entries, meta, false)
	s.metrics.observeCommit(start, r)
	return err
}

// commit does Commit's (sync) or CommitUnsynced's work and classifies its
// failure for the metrics.
func (s *Store) commit(ctx context.Context, session string, entries []wire.LogEntry, meta map[string][]byte, sync bool) (reason, error) {
	if err := checkSession(session); err != nil {
		return reasonInvalid, fmt.Errorf("storage: commit: %w", err)
	}
	wrap := func(r reason, err error) (reason, error) {
		return r, fmt.Errorf("storage: commit session %q: %w", session, err)
	}
	if err := s.begin(ctx); err != nil {
		return wrap(beginReason(err), err)
	}
	defer s.exit()
	in, head, cached, ok := s.claim(session)
	if !ok {
		return wrap(reasonConcurrent, ErrConcurrentCommit)
	}
	newHead, synced := head, false
	var outPos uint64 // outbox position taken by this commit (0: none)
	defer func() {
		s.release(session, in, newHead, synced)
		// Only now may the syncer read this commit's outbox record: the
		// session's durable head (which caps reads) includes its entries.
		if outPos != 0 {
			s.outboxDone(outPos)
		}
	}()

	for name := range meta {
		if err := checkMetaName(name); err != nil {
			return wrap(reasonInvalid, err)
		}
	}
	if !cached {
		// No Commit of this session is in progress: what Pebble shows is
		// durable.
		var err error
		if head, err = s.head(session); err != nil {
			return wrap(reasonIO, err)
		}
	}
	if r, err := s.checkEntries(session, head, entries); err != nil {
		return wrap(r, err)
	}
	if len(entries) == 0 && len(meta) == 0 {
		synced = true // head is durable and unchanged
		return "", nil
	}

	b := s.db.NewBatchWithSize(batchSize(session, entries, meta) + len(entries)*(1+hashLen) + 32)
	if len(entries) > 0 {
		pos := s.assignOutbox()
		outPos = pos
		_ = b.Set(outboxKey(pos), outboxRecord(session, entries[0].Seq, entries[len(entries)-1].Seq), nil)
	}
	for _, e := range entries {
		_ = b.Set(logKey(session, e.Seq), logValue(e.Frame, e.Hash), nil)
		if e.Key != "" {
			_ = b.Set(idemKey(session, e.Key), encodeSeq(e.Seq), nil)
		}
	}
	if len(entries) > 0 {
		_ = b.Set(headKey(session), encodeSeq(entries[len(entries)-1].Seq), nil)
	}
	for name, blob := range meta {
		if blob == nil {
			_ = b.Delete(metaKey(name), nil)
		} else {
			_ = b.Set(metaKey(name), blob, nil)
		}
	}
	if err := ctx.Err(); err != nil {
		_ = b.Close()
		return wrap(reasonCanceled, err)
	}
	s.applying(in, head, meta)
	if err := s.apply(b, sync); err != nil {
		if errors.Is(err, ErrFailed) {
			return wrap(reasonFailed, err)
		}
		return wrap(reasonIO, err)
	}
	if err := b.Close(); err != nil {
		s.log.Warn("storage: closing committed batch", "session", session, "err", err)
	}
	newHead, synced = head, true
	if len(entries) > 0 {
		newHead = entries[len(entries)-1].Seq
	}
	if !sync {
		// The background sync releases the outbox position.
		s.syncLater(outPos)
		outPos = 0
	}
	return "", nil
}

// checkEntries validates seqs and idempotency keys against the head and the
// keys already committed.
func (s *Store) checkEntries(session string, head uint64, entries []wire.LogEntry) (reason, error) {
	prev := head
	var keys map[string]struct{}
	for i, e := range entries {
		switch {
		case e.Seq <= prev:
			return reasonSeqConflict, fmt.Errorf("%w: entry %d has seq %d, head %d", ErrSeqConflict, i, e.Seq, prev)
		case e.Seq != prev+1:
			return reasonSeqGap, fmt.Errorf("%w: entry %d has seq %d, want %d", ErrSeqGap, i, e.Seq, prev+1)
		}
		prev = e.Seq
		if e.Key == "" {
			continue
		}
		if err := checkKey(e.Key); err != nil {
			return reasonInvalid, fmt.Errorf("entry seq %d: %w", e.Seq, err)
		}
		if keys == nil {
			keys = make(map[string]struct{}, len(entries))
		}
		if _, dup := keys[e.Key]; dup {
			return reasonDuplicateKey, fmt.Errorf("%w: entry seq %d repeats a key of this batch", ErrDuplicateKey, e.Seq)
		}
		keys[e.Key] = struct{}{}
		v, ok, err := s.get(idemKey(session, e.Key))
		if err != nil {
			return reasonIO, fmt.Errorf("entry seq %d: lookup key: %w", e.Seq, err)
		}
		if ok {
			old, _ := decodeSeq(v)
			return reasonDuplicateKey, fmt.Errorf("%w: entry seq %d, key committed at seq %d", ErrDuplicateKey, e.Seq, old)
		}
	}
	return "", nil
}

// apply commits b, with a WAL sync when sync is set. Pebble reports a failed WAL write or sync
// through Logger.Fatalf (see pebbleLogger) and then returns nil, so success
// also requires the store not to have failed meanwhile. A failure of another
// concurrent commit also fails this one: its outcome is then unknown, which
// Commit's contract allows.
func (s *Store) apply(b *pebble.Batch, sync bool) (err error) {
	defer func() {
		// Once its WAL writer has failed, Pebble panics in a later commit
		// (record.LogWriter error -> panic in DB.commitWrite). The store
		// stops calling Apply once failed, but commits already under way
		// can still get there: report it as the failure it is.
		if r := recover(); r != nil {
			err = s.fail.set(fmt.Errorf("pebble panicked during commit: %v", r))
		}
	}()
	opts := pebble.Sync
	if !sync {
		opts = pebble.NoSync
	}
	if err := s.db.Apply(b, opts); err != nil {
		return err
	}
	return s.fail.get()
}

func beginReason(err error) reason {
	switch {
	case errors.Is(err, ErrClosed):
		return reasonClosed
	case errors.Is(err, ErrFailed):
		return reasonFailed
	default:
		return reasonCanceled
	}
}

// batchSize estimates the batch's encoded size, to allocate it once.
func batchSize(session string, entries []wire.LogEntry, meta map[string][]byte) int {
	const perRecord = 16 // kind, varint lengths
	n := 12 + 2*(perRecord+3+len(session)+seqLen)
	for _, e := range entries {
		n += perRecord + 3 + len(session) + seqLen + len(e.Frame)
		if e.Key != "" {
			n += perRecord + 3 + len(session) + len(e.Key) + seqLen
		}
	}
	for name, blob := range meta {
		n += perRecord + 2 + len(name) + len(blob)
	}
	return n
}
