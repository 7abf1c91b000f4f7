package bench

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// simClock is a simulated clock: sleeping advances it.
type simClock struct {
	mu  sync.Mutex
	now time.Duration
}

func (c *simClock) Now() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *simClock) SleepUntil(ctx context.Context, t time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t > c.now {
		c.now = t
	}
	return ctx.Err()
}

func (c *simClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now += d
	c.mu.Unlock()
}

func TestOpenLoopIntendedTimes(t *testing.T) {
	clk := &simClock{}
	tr, err := OpenLoop{Rate: 1000, Duration: 2 * time.Second, Clock: clk}.Start()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tr.Count(), 2000; got != want {
		t.Fatalf("count: got %d, want %d", got, want)
	}
	var sentAt []time.Duration
	res, err := tr.Run(context.Background(), func(ctx context.Context, id uint64) error {
		sentAt = append(sentAt, clk.Now())
		tr.Complete(id)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	start := sentAt[0]
	for i, at := range sentAt {
		if want := start + time.Duration(i)*time.Millisecond; at != want {
			t.Fatalf("op %d sent at %v, want %v (start + i/rate)", i, at, want)
		}
	}
	if res.Done != 2000 || res.Lost != 0 {
		t.Errorf("done/lost: got %d/%d, want 2000/0", res.Done, res.Lost)
	}
	if got := res.Latency.Quantile(1); got != 0 {
		t.Errorf("instant answers: max latency %v, want 0", got)
	}
	if got := res.Throughput; got < 999 || got > 1001 {
		t.Errorf("throughput %v, want 1000/s", got)
	}
}

// A stall of the system under test that blocks the sender must show up in
// the percentiles: every op whose intended time fell inside the stall
// waited for it.
func TestOpenLoopCoordinatedOmissionCorrection(t *testing.T) {
	clk := &simClock{}
	tr, err := OpenLoop{Rate: 1000, Duration: time.Second, Clock: clk}.Start()
	if err != nil {
		t.Fatal(err)
	}
	res, err := tr.Run(context.Background(), func(ctx context.Context, id uint64) error {
		clk.Advance(20 * time.Microsecond) // normal service time
		if id == 500 {
			clk.Advance(100 * time.Millisecond) // one stall, blocking the sender
		}
		tr.Complete(id)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// ~100 of 1000 ops were due during the 100 ms stall.
	if got := res.Latency.Quantile(0.99); got < 80*time.Millisecond {
		t.Errorf("p99 from intended time: %v, want >= 80ms (the stall must be visible)", got)
	}
	if got := res.Latency.Quantile(0.90); got < 20*time.Microsecond {
		t.Errorf("p90 from intended time: %v, want at least the service time", got)
	}
	if got := res.Latency.Quantile(0.5); got > time.Millisecond {
		t.Errorf("p50: %v, want the normal service time", got)
	}
	// Measured from the actual send time, only one op is slow: that is
	// exactly what coordinated omission hides.
	if got := res.Service.Quantile(0.99); got > time.Millisecond {
		t.Errorf("service p99: %v, want ~20µs (the uncorrected view hides the stall)", got)
	}
	if got := res.Lag.Quantile(0.99); got < 50*time.Millisecond {
		t.Errorf("sender lag p99: %v, want the stall", got)
	}
}

func TestOpenLoopLostAnswersAreCensored(t *testing.T) {
	clk := &simClock{}
	tr, err := OpenLoop{Rate: 100, Duration: time.Second, Drain: 500 * time.Millisecond, Clock: clk}.Start()
	if err != nil {
		t.Fatal(err)
	}
	res, err := tr.Run(context.Background(), func(ctx context.Context, id uint64) error {
		if id%10 != 0 { // every tenth answer never comes
			tr.Complete(id)
		}
		tr.Complete(id + 10_000) // unknown ids are ignored
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Lost != 10 || res.Done != 90 {
		t.Errorf("lost/done: got %d/%d, want 10/90", res.Lost, res.Done)
	}
	if got := res.Latency.Max(); got < 500*time.Millisecond {
		t.Errorf("lost answers weigh %v, want at least the drain time", got)
	}
	if got := res.Latency.Count(); got != 100 {
		t.Errorf("recorded %d, want every sent op (100)", got)
	}
}

func TestOpenLoopSendErrorStops(t *testing.T) {
	clk := &simClock{}
	tr, _ := OpenLoop{Rate: 100, Duration: time.Second, Clock: clk}.Start()
	boom := errors.New("boom")
	res, err := tr.Run(context.Background(), func(ctx context.Context, id uint64) error {
		if id == 5 {
			return boom
		}
		tr.Complete(id)
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err: got %v, want boom", err)
	}
	if res.Sent != 6 || res.Errors != 1 {
		t.Errorf("sent/errors: got %d/%d, want 6/1", res.Sent, res.Errors)
	}
}

func TestOpenLoopRejectsBadConfig(t *testing.T) {
	for _, o := range []OpenLoop{{Rate: 0, Duration: time.Second}, {Rate: 10}} {
		if _, err := o.Start(); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: got %v, want ErrConfig", o, err)
		}
	}
}

func TestClosedLoopCountsWindowOnly(t *testing.T) {
	clk := &simClock{}
	res, err := ClosedLoop{Workers: 1, Duration: time.Second, Warmup: 100 * time.Millisecond, Clock: clk}.Run(context.Background(),
		func(ctx context.Context, w int) error {
			clk.Advance(time.Millisecond)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if res.Done < 995 || res.Done > 1000 {
		t.Errorf("ops in a 1 s window at 1 ms each: got %d, want ~1000", res.Done)
	}
	if got := res.Latency.Quantile(0.5); got != time.Millisecond {
		t.Errorf("p50: got %v, want 1ms", got)
	}
	if res.Throughput < 990 || res.Throughput > 1001 {
		t.Errorf("throughput: got %v, want ~1000/s", res.Throughput)
	}
}
