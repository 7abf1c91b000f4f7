package relay

import "sync"

// lane is a bounded outbound queue of encoded frames for one class of a
// connection. Whoever pushes wakes the lane's writer (conn.wake).
type lane struct {
	mu sync.Mutex // guards the fields below
	q  [][]byte
	// max bounds len(q); push beyond it fails.
	max int
}

func newLane(max int) *lane {
	return &lane{max: max}
}

// push queues b. It reports false when the queue is full.
func (l *lane) push(b []byte) bool {
	l.mu.Lock()
	if len(l.q) >= l.max {
		l.mu.Unlock()
		return false
	}
	l.q = append(l.q, b)
	l.mu.Unlock()
	return true
}

// empty reports whether nothing is queued.
func (l *lane) empty() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.q) == 0
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
