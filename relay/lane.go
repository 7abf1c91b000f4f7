package relay

import "sync"

// lane is a bounded outbound queue of encoded frames for one class of a
// connection. Whoever pushes wakes the lane's writer (conn.wake).
type lane struct {
	mu sync.Mutex // guards the fields below
	q  [][]byte
	// max bounds len(q); push beyond it fails.
	max int
	// space is signalled when take empties the queue (pushWait).
	space chan struct{}
}

func newLane(max int) *lane {
	return &lane{max: max, space: make(chan struct{}, 1)}
}

// pushWait queues b, waiting while the queue is full, until done closes.
// It reports whether b was queued. One goroutine at a time may wait.
func (l *lane) pushWait(b []byte, done <-chan struct{}) bool {
	for !l.push(b) {
		select {
		case <-l.space:
		case <-done:
			return false
		}
	}
	return true
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
	if len(q) > 0 {
		wake(l.space)
	}
	return q
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
