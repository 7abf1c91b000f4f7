package storage

import "errors"

// Sentinel errors. Every error returned by the store wraps one of these, a
// context error, an error returned by a ReadLog callback, or an I/O error
// from Pebble, and names the operation and session (never frame, key or blob
// contents).
var (
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("storage: closed")
	// ErrFailed: an earlier write could not be made durable (or Pebble hit
	// an unrecoverable error); the store refuses every call until it is
	// closed and reopened.
	ErrFailed = errors.New("storage: store failed, reopen required")
	// ErrSeqGap: a Commit's entries do not follow the session head
	// contiguously (a seq was skipped).
	ErrSeqGap = errors.New("storage: sequence gap")
	// ErrSeqConflict: a Commit's entry reuses a seq at or below the session
	// head, or seqs in the batch are not ascending.
	ErrSeqConflict = errors.New("storage: sequence conflict")
	// ErrDuplicateKey: a Commit's idempotency key is already committed for
	// the session, or appears twice in the batch.
	ErrDuplicateKey = errors.New("storage: duplicate idempotency key")
	// ErrConcurrentCommit: Commit was called for a session while another
	// Commit for the same session was in progress (a caller bug; nothing was
	// written).
	ErrConcurrentCommit = errors.New("storage: concurrent commit for one session")
	// ErrInvalidSession: a session id is empty or longer than MaxSessionLen.
	ErrInvalidSession = errors.New("storage: invalid session id")
	// ErrInvalidKey: an idempotency key is longer than MaxKeyLen (or empty
	// where a key is required).
	ErrInvalidKey = errors.New("storage: invalid idempotency key")
	// ErrInvalidMetaName: a metadata name is empty or longer than
	// MaxMetaNameLen.
	ErrInvalidMetaName = errors.New("storage: invalid metadata name")
	// ErrInvalidOptions: Open was given an unusable directory or Options.
	ErrInvalidOptions = errors.New("storage: invalid options")
	// ErrCorrupt: a stored key or value does not decode.
	ErrCorrupt = errors.New("storage: corrupt record")
)
