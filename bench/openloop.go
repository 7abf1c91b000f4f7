package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// OpenLoop sends at a fixed rate whatever the system under test does: the
// send time of every operation is fixed in advance (start + i/Rate), and
// its latency is measured from that intended time, not from when it was
// actually sent. A stall that holds up the sender therefore shows up in
// the latency of every operation it delayed (no coordinated omission).
type OpenLoop struct {
	// Rate is operations per second. Required.
	Rate float64
	// Duration is how long to send; the count is Rate·Duration. Required.
	Duration time.Duration
	// MaxOps caps the count. Default 10,000,000.
	MaxOps int
	// Drain is how long to wait after the last intended send for
	// outstanding completions; what is still missing then is lost, and
	// recorded with the latency it had reached. Default 2s.
	Drain time.Duration
	// Clock, default a RealClock.
	Clock Clock
}

// Tracker runs one open-loop load. Receivers call Complete from any
// goroutine as answers arrive.
type Tracker struct {
	clock    Clock
	n        int
	interval float64 // nanoseconds between intended sends
	drain    time.Duration
	start    atomic.Int64 // clock offset of op 0's intended time
	done     []atomic.Bool
	sent     atomic.Int64
	finished atomic.Int64

	mu      sync.Mutex // guards the histograms
	latency *Histogram // from the intended send time
	service *Histogram // from the actual send time (hides stalls; for contrast)
	sentAt  []atomic.Int64
	lag     *Histogram // actual - intended send time
}

// LoadResult is what a load run measured.
type LoadResult struct {
	Latency *Histogram // open loop: from intended send time; closed loop: per op
	Service *Histogram // open loop only: from actual send time
	Lag     *Histogram // open loop only: how late the sender was
	Sent    int
	Done    int // completed in time
	Lost    int // sent, not completed within Drain
	Errors  int
	Elapsed time.Duration // measured window
	// Throughput is completed operations per second of Elapsed.
	Throughput float64
}

// Metrics returns the report metrics of r: latency percentiles (µs),
// throughput, counts and, for open loops, the sender lag p99.
func (r *LoadResult) Metrics() map[string]float64 {
	m := r.Latency.Percentiles().Metrics("")
	m["throughput_per_s"] = r.Throughput
	m["ops"] = float64(r.Done)
	m["lost"] = float64(r.Lost)
	m["errors"] = float64(r.Errors)
	if r.Lag != nil {
		m["lag_p99_us"] = float64(r.Lag.Quantile(0.99)) / 1e3
	}
	if r.Service != nil {
		m["service_p99_us"] = float64(r.Service.Quantile(0.99)) / 1e3
	}
	return m
}

// Start validates o and returns a Tracker ready to Run.
func (o OpenLoop) Start() (*Tracker, error) {
	if o.Rate <= 0 || o.Duration <= 0 {
		return nil, fmt.Errorf("%w: open loop needs Rate > 0 and Duration > 0", ErrConfig)
	}
	if o.MaxOps <= 0 {
		o.MaxOps = 10_000_000
	}
	if o.Drain <= 0 {
		o.Drain = 2 * time.Second
	}
	if o.Clock == nil {
		o.Clock = NewRealClock()
	}
	n := int(o.Rate * o.Duration.Seconds())
	n = min(max(n, 1), o.MaxOps)
	return &Tracker{
		clock: o.Clock, n: n, interval: 1e9 / o.Rate, drain: o.Drain,
		done: make([]atomic.Bool, n), sentAt: make([]atomic.Int64, n),
		latency: NewHistogram(), service: NewHistogram(), lag: NewHistogram(),
	}, nil
}

// Count is the number of operations the load will send.
func (t *Tracker) Count() int { return t.n }

// intended is op id's intended send time as a clock offset.
func (t *Tracker) intended(id int) time.Duration {
	return time.Duration(t.start.Load()) + time.Duration(float64(id)*t.interval)
}

// Complete records the answer to op id. Unknown ids and repeats are
// ignored, so receivers may pass whatever came back.
func (t *Tracker) Complete(id uint64) {
	now := t.clock.Now()
	if id >= uint64(t.n) || !t.done[id].CompareAndSwap(false, true) {
		return
	}
	t.finished.Add(1)
	lat := now - t.intended(int(id))
	svc := now - time.Duration(t.sentAt[id].Load())
	t.mu.Lock()
	t.latency.Record(lat)
	t.service.Record(svc)
	t.mu.Unlock()
}

// Run sends every operation at its intended time, calling send(ctx, id)
// from one goroutine, then waits up to Drain for outstanding completions.
// A send error stops the load; the ops not sent are not counted. Run
// returns ctx's error if it is cancelled.
func (t *Tracker) Run(ctx context.Context, send func(ctx context.Context, id uint64) error) (*LoadResult, error) {
	t.start.Store(int64(t.clock.Now() + time.Millisecond))
	res := &LoadResult{}
	var sendErr error
	for i := 0; i < t.n; i++ {
		at := t.intended(i)
		if err := t.clock.SleepUntil(ctx, at); err != nil {
			return nil, err
		}
		now := t.clock.Now()
		t.sentAt[i].Store(int64(now))
		t.mu.Lock()
		t.lag.Record(now - at)
		t.mu.Unlock()
		t.sent.Add(1)
		if err := send(ctx, uint64(i)); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			sendErr = err
			res.Errors++
			break
		}
	}
	sent := int(t.sent.Load())
	end := t.intended(t.n-1) + t.drain
	for int(t.finished.Load()) < sent && t.clock.Now() < end {
		if err := t.clock.SleepUntil(ctx, t.clock.Now()+time.Millisecond); err != nil {
			return nil, err
		}
	}
	// Censor what never came back at the latency it had reached, so a
	// lost answer weighs at least as much as the slowest one.
	now := t.clock.Now()
	for i := 0; i < sent; i++ {
		if t.done[i].CompareAndSwap(false, true) {
			res.Lost++
			t.mu.Lock()
			t.latency.Record(now - t.intended(i))
			t.mu.Unlock()
		}
	}
	t.mu.Lock()
	res.Latency, res.Service, res.Lag = t.latency, t.service, t.lag
	t.mu.Unlock()
	res.Sent = sent
	res.Done = sent - res.Lost
	res.Elapsed = time.Duration(float64(max(sent, 1)) * t.interval)
	res.Throughput = float64(res.Done) / res.Elapsed.Seconds()
	if sendErr != nil {
		return res, fmt.Errorf("bench: open loop send %d: %w", sent-1, sendErr)
	}
	return res, nil
}
