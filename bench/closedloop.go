package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ClosedLoop runs Workers loops that each start the next operation as soon
// as the previous one ends: the maximum throughput at that concurrency,
// and the latency of each operation (service time).
type ClosedLoop struct {
	// Workers is the number of concurrent loops. Default 1.
	Workers int
	// Duration is the measured window. Required.
	Duration time.Duration
	// Warmup runs before the window; its operations are not recorded.
	// Default 0.
	Warmup time.Duration
	// MaxOps caps operations across workers. Default 10,000,000.
	MaxOps int
	// Clock, default a RealClock.
	Clock Clock
}

// Run calls op(ctx, worker) in Workers loops until the window ends. An op
// error ends that worker only; Errors counts them. Run returns ctx's error
// if it is cancelled.
func (c ClosedLoop) Run(ctx context.Context, op func(ctx context.Context, worker int) error) (*LoadResult, error) {
	if c.Duration <= 0 {
		return nil, fmt.Errorf("%w: closed loop needs Duration > 0", ErrConfig)
	}
	if c.Workers <= 0 {
		c.Workers = 1
	}
	if c.MaxOps <= 0 {
		c.MaxOps = 10_000_000
	}
	if c.Clock == nil {
		c.Clock = NewRealClock()
	}
	begin := c.Clock.Now()
	from := begin + c.Warmup
	until := from + c.Duration
	var ops, errs atomic.Int64
	hists := make([]*Histogram, c.Workers)
	var wg sync.WaitGroup
	for w := range c.Workers {
		hists[w] = NewHistogram()
		wg.Go(func() {
			h := hists[w]
			for ctx.Err() == nil {
				t0 := c.Clock.Now()
				if t0 >= until || ops.Load() >= int64(c.MaxOps) {
					return
				}
				if err := op(ctx, w); err != nil {
					errs.Add(1)
					return
				}
				t1 := c.Clock.Now()
				if t0 >= from && t1 <= until {
					ops.Add(1)
					h.Record(t1 - t0)
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := &LoadResult{Latency: NewHistogram(), Errors: int(errs.Load())}
	for _, h := range hists {
		res.Latency.Merge(h)
	}
	res.Done = int(res.Latency.Count())
	res.Sent = res.Done
	res.Elapsed = min(c.Clock.Now(), until) - from
	if res.Elapsed > 0 {
		res.Throughput = float64(res.Done) / res.Elapsed.Seconds()
	}
	return res, nil
}
