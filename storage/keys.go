package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Limits on caller-supplied names, in bytes.
const (
	MaxSessionLen  = 128
	MaxKeyLen      = 128
	MaxMetaNameLen = 1024
)

// Key kinds: the first byte of every key; the second is always '/'.
const (
	kindLog  byte = 'l'
	kindIdem byte = 'k'
	kindHead byte = 'h'
	kindMeta byte = 'm'
	// kindOutbox keys are 'x' '/' pos:u64be; the outbox cursor is a 'y' key.
	kindOutbox byte = 'x'
)

const seqLen = 8

func checkSession(session string) error {
	if len(session) == 0 || len(session) > MaxSessionLen {
		return fmt.Errorf("%w: length %d", ErrInvalidSession, len(session))
	}
	return nil
}

func checkKey(key string) error {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: length %d", ErrInvalidKey, len(key))
	}
	return nil
}

func checkMetaName(name string) error {
	if len(name) == 0 || len(name) > MaxMetaNameLen {
		return fmt.Errorf("%w: length %d", ErrInvalidMetaName, len(name))
	}
	return nil
}

// sessionPrefix returns kind '/' len session, with room for extra more bytes.
// session must have passed checkSession.
func sessionPrefix(kind byte, session string, extra int) []byte {
	b := make([]byte, 0, 3+len(session)+extra)
	b = append(b, kind, '/', byte(len(session)))
	return append(b, session...)
}

func logKey(session string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(sessionPrefix(kindLog, session, seqLen), seq)
}

func idemKey(session, key string) []byte {
	return append(sessionPrefix(kindIdem, session, len(key)), key...)
}

func headKey(session string) []byte {
	return sessionPrefix(kindHead, session, 0)
}

func metaKey(name string) []byte {
	b := make([]byte, 0, 2+len(name))
	b = append(b, kindMeta, '/')
	return append(b, name...)
}

func encodeSeq(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, seqLen), seq)
}

// decodeSeq decodes a seq value (the value of an h/ or k/ key).
func decodeSeq(v []byte) (uint64, error) {
	if len(v) != seqLen {
		return 0, fmt.Errorf("%w: seq value of %d bytes", ErrCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// logSeq decodes the seq of a log key of the session whose log prefix
// (sessionPrefix(kindLog, session, 0)) is prefix.
func logSeq(prefix, key []byte) (uint64, error) {
	if len(key) != len(prefix)+seqLen || !bytes.HasPrefix(key, prefix) {
		return 0, fmt.Errorf("%w: log key of %d bytes outside its session", ErrCorrupt, len(key))
	}
	return binary.BigEndian.Uint64(key[len(prefix):]), nil
}
