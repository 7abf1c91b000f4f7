package baseline

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Pebble is a raw Pebble database for the synced-commit baseline: each
// commit is one batch with one Set, committed with pebble.Sync. Concurrent
// committers share WAL syncs (Pebble's group commit), as the relay's
// sessions do.
type Pebble struct {
	db *pebble.DB
}

// OpenPebble opens (creating) a database in dir with the block cache and
// memtable sizes the relay's store uses (32 MiB, 16 MiB).
func OpenPebble(dir string) (*Pebble, error) {
	cache := pebble.NewCache(32 << 20)
	defer cache.Unref()
	db, err := pebble.Open(dir, &pebble.Options{Cache: cache, MemTableSize: 16 << 20, FormatMajorVersion: pebble.FormatNewest,
		Logger: quietLogger{pebble.DefaultLogger}})
	if err != nil {
		return nil, fmt.Errorf("baseline: pebble open: %w", err)
	}
	return &Pebble{db: db}, nil
}

// Commit writes value under (writer, seq) in its own synced batch.
func (p *Pebble) Commit(writer int, seq uint64, value []byte) error {
	var key [16]byte
	binary.BigEndian.PutUint64(key[:8], uint64(writer))
	binary.BigEndian.PutUint64(key[8:], seq)
	b := p.db.NewBatch()
	_ = b.Set(key[:], value, nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("baseline: pebble commit: %w", err)
	}
	return b.Close()
}

// Close closes the database.
func (p *Pebble) Close() error { return p.db.Close() }

// quietLogger drops Pebble's informational lines (they would break the
// progress bar) and keeps its errors.
type quietLogger struct{ pebble.Logger }

func (quietLogger) Infof(string, ...any) {}
