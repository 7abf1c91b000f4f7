package gossip

import (
	"errors"
	"fmt"
)

// Errors.
var (
	ErrConfig       = errors.New("gossip: invalid config")
	ErrClosed       = errors.New("gossip: cluster closed")
	ErrMetaTooLarge = errors.New("gossip: node metadata too large")
	ErrMetaFormat   = errors.New("gossip: malformed node metadata")
	ErrMetaVersion  = errors.New("gossip: unknown node metadata version")
	ErrJoin         = errors.New("gossip: no seed could be joined")
	// ErrNotConverged: settling after a join gave up before the member
	// list was stable (JoinUntilStable); the node is joined all the same.
	ErrNotConverged = errors.New("gossip: member list not stable after settling")
)

// MetaSizeError reports metadata whose encoding exceeds [MaxMetaSize]. It
// matches [ErrMetaTooLarge] with errors.Is.
type MetaSizeError struct {
	Size int // encoded size in bytes
}

func (e *MetaSizeError) Error() string {
	return fmt.Sprintf("gossip: node metadata is %d bytes, limit %d", e.Size, MaxMetaSize)
}

// Is reports whether target is ErrMetaTooLarge.
func (e *MetaSizeError) Is(target error) bool { return target == ErrMetaTooLarge }
