package relay

import (
	"sync"
	"time"
)

// acceptLimiter is a token bucket over new connections: rate per second
// with a burst. It protects admission (TLS handshakes, token checks) from
// connection floods; refusals are counted (reason accept_rate).
type acceptLimiter struct {
	mu     sync.Mutex // guards the fields below
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newAcceptLimiter(rate, burst int) *acceptLimiter {
	return &acceptLimiter{rate: float64(rate), burst: float64(burst), tokens: float64(burst)}
}

// allow takes one token if there is one.
func (l *acceptLimiter) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// admitConn reports whether a new transport connection may proceed: under
// the connection cap and the accept rate.
func (s *Server) admitConn() bool {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	if n >= s.cfg.MaxConns {
		s.met.drop(dropMaxConns)
		return false
	}
	if !s.accepts.allow(time.Now()) {
		s.met.drop(dropAcceptRate)
		return false
	}
	return true
}
