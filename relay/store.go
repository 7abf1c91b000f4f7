package relay

import (
	"context"

	"github.com/stapes-relay/stapes/relay/wire"
)

// Store is the durable state a relay needs: per-session logs with
// idempotency keys, and small named metadata blobs (device config state,
// session metadata). storage.Store implements it.
//
// Concurrency: every method may be called from many goroutines at once.
// Commit calls for the same session are never concurrent (the session's
// committer serialises them); calls for different sessions are, and the
// store should group their syncs.
type Store interface {
	// Commit writes entries (ascending, contiguous seqs following the
	// session's current head), their idempotency keys, and the given
	// metadata blobs atomically, and returns only after they are synced
	// to stable storage. A nil blob deletes the name.
	Commit(ctx context.Context, session string, entries []wire.LogEntry, meta map[string][]byte) error
	// Head returns the highest committed seq of the session (0 if none).
	Head(ctx context.Context, session string) (uint64, error)
	// ReadLog calls fn for each committed entry with after < seq <= upto,
	// in ascending order, at most limit entries (limit <= 0: no limit).
	// The frame passed to fn is only valid during the call.
	ReadLog(ctx context.Context, session string, after, upto uint64, limit int, fn func(seq uint64, frame []byte) error) error
	// ReadChain is ReadLog with each entry's audit-chain hash (nil for
	// entries committed without one).
	ReadChain(ctx context.Context, session string, after, upto uint64, limit int, fn func(seq uint64, hash, frame []byte) error) error
	// LookupKey returns the seq committed under an idempotency key.
	LookupKey(ctx context.Context, session, key string) (seq uint64, ok bool, err error)
	// Meta returns a metadata blob (a copy).
	Meta(ctx context.Context, name string) (blob []byte, ok bool, err error)
}

// unsyncedStore is a Store that can commit without waiting for the sync
// (storage.Store.CommitUnsynced): the batch is applied at once and made
// durable in the background. Used by a replicating home whose replica has
// already synced the batch (Config.SyncHome).
type unsyncedStore interface {
	CommitUnsynced(ctx context.Context, session string, entries []wire.LogEntry, meta map[string][]byte) error
}
