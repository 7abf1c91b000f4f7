package client

import (
	"math/rand/v2"
	"time"
)

// backoff computes exponential delays with jitter: attempt n waits a
// uniformly random time in [d/2, d] where d = min·2ⁿ capped at max, and never
// less than min.
type backoff struct {
	min, max time.Duration
	rand     func() float64 // in [0,1); rand.Float64 unless a test sets it
}

func newBackoff(min, max time.Duration) backoff {
	return backoff{min: min, max: max, rand: rand.Float64}
}

func (b backoff) delay(attempt int) time.Duration {
	d := b.min
	for i := 0; i < attempt && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	j := d/2 + time.Duration(b.rand()*float64(d-d/2))
	return max(j, b.min)
}
