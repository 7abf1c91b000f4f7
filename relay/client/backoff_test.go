package client

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, 5 * time.Second
	tests := []struct {
		name    string
		attempt int
		rand    float64
		want    time.Duration
	}{
		{"first attempt, low jitter, clamped to min", 0, 0, lo},
		{"first attempt, high jitter", 0, 0.999999, lo},
		{"second attempt, low jitter", 1, 0, 100 * time.Millisecond},
		{"second attempt, mid jitter", 1, 0.5, 150 * time.Millisecond},
		{"fourth attempt, low jitter", 3, 0, 400 * time.Millisecond},
		{"capped at max, low jitter", 10, 0, hi / 2},
		{"capped at max, full jitter", 40, 1, hi},
		{"huge attempt does not overflow", 1 << 20, 0.5, 3750 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := backoff{min: lo, max: hi, rand: func() float64 { return tt.rand }}
			if got := b.delay(tt.attempt); got != tt.want {
				t.Errorf("delay(%d) with rand %v = %v, want %v", tt.attempt, tt.rand, got, tt.want)
			}
		})
	}
}

func TestBackoffBounds(t *testing.T) {
	b := newBackoff(100*time.Millisecond, 5*time.Second)
	for attempt := range 64 {
		for range 50 {
			d := b.delay(attempt)
			if d < b.min || d > b.max {
				t.Fatalf("delay(%d) = %v, want within [%v, %v]", attempt, d, b.min, b.max)
			}
		}
	}
}
