// Package storage is the relay's local Pebble store: per-session logs with
// idempotency keys, session heads and small named metadata blobs. *Store
// satisfies relay.Store without importing package relay.
//
// # Durability
//
// Commit writes one Pebble batch and commits it with pebble.Sync; it returns
// nil only after the write-ahead log holding the batch has been fsync'd.
// Concurrent Commit calls (for different sessions) are not serialised by this
// package: Pebble's commit pipeline groups their WAL fsyncs. A batch is
// atomic: after a crash it is either entirely visible or not at all.
//
// Pebble shows a batch to readers as soon as it is in the memtable, before
// its fsync completes. The store does not: Head, ReadLog and LookupKey are
// bounded by the head the session had before its Commit in progress, and
// Meta waits for a Commit in progress that writes the name. Every read
// reports durable data only.
//
// A failed WAL write or sync is not retried (after a failed fsync the kernel
// may have dropped the dirty pages, so a later successful fsync proves
// nothing). Instead the store enters a failed state: every later call returns
// ErrFailed, so it never reports data Pebble applied in memory but could not
// make durable. The process should close the store and reopen it; WAL replay
// then shows exactly what reached the disk.
//
// # Key layout
//
// Session ids and idempotency keys are 1..128 arbitrary bytes (normally
// UTF-8). A session id is length-prefixed with one byte, so session "a/b" and
// a session "a" with a key "b" can never produce the same key, and no
// session's key prefix is a prefix of another session's:
//
//	sess          = len:u8 session[len]
//	l/ sess seq:u64be  -> frame             session log, ascending by seq
//	                      or C1 hash[32] frame   (entry with an audit-chain hash)
//	k/ sess key        -> seq:u64be         idempotency key -> committed seq
//	h/ sess            -> seq:u64be         session head (highest committed seq)
//	m/ name            -> blob              metadata (name: 1..1024 bytes)
//	x/ pos:u64be       -> sess first:u64be last:u64be   sync outbox (outbox.go)
//	y/outbox-acked     -> pos:u64be         last position shipped downstream
//
// Every Commit with entries writes one outbox record in the same batch, so
// the outbox is exactly as durable as the log it points into.
//
// Head is one point lookup of h/. The log of a session is the contiguous key
// range l/ sess 00..00 through l/ sess ff..ff, so ReadLog is one bounded
// iterator.
//
// Frames, keys and blobs are treated as opaque and may hold patient data:
// errors and logs name session ids and seqs only, never their contents.
package storage
