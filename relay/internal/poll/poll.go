// Package poll is a minimal epoll-based readiness notifier, so idle
// connections need no parked goroutine: a connection is registered
// one-shot, and when its socket becomes readable its callback runs once in
// a new goroutine; the owner re-arms it after reading.
package poll

import "errors"

// Errors.
var (
	ErrClosed      = errors.New("poll: closed")
	ErrUnsupported = errors.New("poll: not supported on this platform")
)
