package relay

import "sync"

// lane is a bounded outbound queue of encoded frames for one class of a
// connection. Its writer is woken through kick.
type lane struct {
	kick chan struct{} // shared with the other lanes of the same writer

	mu sync.Mutex // guards the fields below
	q  [][]byte
	// max bounds len(q); push beyond it fails.
	max int
}

func newLane(max int, kick chan struct{}) *lane {
	return &lane{max: max, kick: kick}
}

// push queues b and wakes the writer. It reports false when the queue is
// full.
func (l *lane) push(b []byte) bool {
	l.mu.Lock()
	if len(l.q) >= l.max {
		l.mu.Unlock()
		return false
	}
	l.q = append(l.q, b)
	l.mu.Unlock()
	wake(l.kick)
	return true
}

// take removes and returns everything queued.
func (l *lane) take() [][]byte {
	l.mu.Lock()
	q := l.q
	l.q = nil
	l.mu.Unlock()
	return q
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
