// Package storagetest has helpers for tests of code on top of package
// storage.
package storagetest

import (
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// WALGate holds the syncs of Pebble write-ahead logs while closed, so a
// test decides when unsynced writes (storage.Store.CommitUnsynced) reach
// the disk. Open releases the held syncs.
type WALGate struct {
	mu   sync.Mutex
	held chan struct{} // nil: open
}

// Wrap returns fs with its WAL syncs going through the gate.
func (g *WALGate) Wrap(fs vfs.FS) vfs.FS {
	return errorfs.Wrap(fs, errorfs.InjectorFunc(g.inject))
}

// Close makes later WAL syncs wait until Open.
func (g *WALGate) Close() {
	g.mu.Lock()
	if g.held == nil {
		g.held = make(chan struct{})
	}
	g.mu.Unlock()
}

// Open lets WAL syncs through, the held ones first.
func (g *WALGate) Open() {
	g.mu.Lock()
	if g.held != nil {
		close(g.held)
		g.held = nil
	}
	g.mu.Unlock()
}

func (g *WALGate) inject(op errorfs.Op) error {
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
	default:
		return nil
	}
	if !strings.HasSuffix(op.Path, ".log") {
		return nil
	}
	g.mu.Lock()
	held := g.held
	g.mu.Unlock()
	if held != nil {
		<-held
	}
	return nil
}
