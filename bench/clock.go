package bench

import (
	"context"
	"time"
)

// Clock is the time source of the load runners: a monotonic offset from
// the clock's own epoch. Tests use a simulated clock.
type Clock interface {
	Now() time.Duration
	// SleepUntil returns once Now() >= t, or with ctx's error.
	SleepUntil(ctx context.Context, t time.Duration) error
}

// RealClock is the process's monotonic clock.
type RealClock struct{ epoch time.Time }

// NewRealClock returns a clock whose epoch is now.
func NewRealClock() *RealClock { return &RealClock{epoch: time.Now()} }

// Now returns the time since the epoch.
func (c *RealClock) Now() time.Duration { return time.Since(c.epoch) }

// SleepUntil sleeps until t. Go's timers are late by tens of
// microseconds; a late send is measured as latency (from the intended
// time), never hidden, and the lateness is reported on its own (Lag).
func (c *RealClock) SleepUntil(ctx context.Context, t time.Duration) error {
	d := t - c.Now()
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
