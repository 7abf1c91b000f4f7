package scenario

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"sync/atomic"
	"time"

	"github.com/stapes-relay/stapes/bench"
)

func init() {
	for _, tr := range []string{"ws", "quic"} {
		name := "relay-hop-" + tr
		transport := map[string]string{"ws": "WebSocket (TLS over TCP)", "quic": "QUIC"}[tr]
		register(&Scenario{
			Name:  name,
			Title: "relay hop round trip over " + transport,
			Summary: "A → relayd → B → relayd → A over two authenticated sessions of one fitting session (B sends every " +
				"DELIVER back as a SEND), 256-byte payloads, open-loop load at fixed rates with latency measured from each " +
				"message's intended send time. Ephemeral messages measure relaying; the durable variant adds two group " +
				"commits per round trip. Baselines over the same transport, TLS and framing: a minimal two-hop forwarder " +
				"that io.Copy's each message between A's and B's connections, and a direct echo (one hop).",
			Default: true,
			Plan: func(o Options) time.Duration {
				rates := hopRates(o)
				runs := 3*len(rates) + 1
				return time.Duration(o.Repeat*runs)*(o.Duration+time.Second) + 3*time.Second
			},
			Run: func(ctx context.Context, e *Env, o Options, res *bench.ScenarioResult) error {
				return runHop(ctx, e, o, res, tr)
			},
		})
	}
}

func hopRates(o Options) []float64 { return o.rates([]float64{1000, 10000}) }

// hopSystem is one of the systems a hop round trip runs through.
type hopSystem struct {
	id, name string
	ours     bool
	dial     func(ctx context.Context, onReturn func([]byte)) (pair, error)
	procs    []bench.Proc
}

func runHop(ctx context.Context, e *Env, o Options, res *bench.ScenarioResult, transport string) error {
	relay, err := e.StartRelay(ctx, RelaySpec{Name: "hop-" + transport})
	if err != nil {
		return err
	}
	defer relay.Close()
	base, err := e.StartBaseline(ctx, "forward")
	if err != nil {
		return err
	}
	defer base.Stop()
	baseProcs := []bench.Proc{base.Proc()}
	systems := []hopSystem{
		{id: "relay", name: "relayd, ephemeral", ours: true, procs: relay.Procs(),
			dial: func(ctx context.Context, on func([]byte)) (pair, error) {
				return dialRelayPair(ctx, e, transport, relay.Addr(), false, on)
			}},
		{id: "forwarder", name: "io.Copy forwarder (2 hops)", procs: baseProcs,
			dial: func(ctx context.Context, on func([]byte)) (pair, error) {
				if transport == "ws" {
					return dialWSPair(ctx, e, base.Addr, false, on)
				}
				return dialQUICPair(ctx, e, base.Addr, false, on)
			}},
		{id: "echo", name: "direct echo (1 hop)", procs: baseProcs,
			dial: func(ctx context.Context, on func([]byte)) (pair, error) {
				if transport == "ws" {
					return dialWSPair(ctx, e, base.Addr, true, on)
				}
				return dialQUICPair(ctx, e, base.Addr, true, on)
			}},
		{id: "relay-durable", name: "relayd, durable", ours: true, procs: relay.Procs(),
			dial: func(ctx context.Context, on func([]byte)) (pair, error) {
				return dialRelayPair(ctx, e, transport, relay.Addr(), true, on)
			}},
	}
	rates := hopRates(o)
	for rep := range o.Repeat {
		for ri, rate := range rates {
			for _, sys := range systems {
				if sys.id == "relay-durable" && ri != 0 {
					continue // the durable variant runs at the background rate only
				}
				id := sys.id + "-" + rateLabel(rate)
				run := res.AddRun(id, sys.name, fmt.Sprintf("open loop %s msg/s, 256 B", rateLabel(rate)), sys.ours)
				if err := measured(ctx, e, run, fmt.Sprintf("%s %s r%d/%d", res.Name, id, rep+1, o.Repeat), o.Duration+time.Second,
					func() (map[string]float64, error) { return measureHop(ctx, sys, rate, o.Duration) }); err != nil {
					return err
				}
			}
		}
	}
	hopChecks(res, rates)
	hopPlots(res, rates, systems)
	res.Notes = append(res.Notes,
		"Latency is measured from the intended send time of each message (open loop), so a stall of the relay or of the harness shows up; 'sender lag p99' is how late the harness itself sent (its own jitter, included in every figure alike).",
		"The forwarder and the echo run in one separate process (`stapes bench _serve forward`), started like relayd, with the same certificate; CPU 'server' is that process, 'harness' the load generator.",
		"Messages that did not come back within 2 s after the load ended count as lost and are recorded at the latency they had reached.")
	return nil
}

// measureHop runs a short warm-up and then the measured open loop on a
// fresh pair of connections.
func measureHop(ctx context.Context, sys hopSystem, rate float64, d time.Duration) (map[string]float64, error) {
	var epoch atomic.Uint32
	var cur atomic.Pointer[bench.Tracker]
	onReturn := func(p []byte) {
		if len(p) < 12 || binary.BigEndian.Uint32(p[8:]) != epoch.Load() {
			return
		}
		if t := cur.Load(); t != nil {
			t.Complete(binary.BigEndian.Uint64(p))
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	p, err := sys.dial(dctx, onReturn)
	cancel()
	if err != nil {
		return nil, err
	}
	defer p.close()
	run := func(dur, drain time.Duration) (*bench.LoadResult, *bench.Usage, error) {
		tr, err := bench.OpenLoop{Rate: rate, Duration: dur, Drain: drain}.Start()
		if err != nil {
			return nil, nil, err
		}
		ep := epoch.Add(1)
		cur.Store(tr)
		u := bench.StartUsage(append(sys.procs, bench.Self())...)
		r, err := tr.Run(ctx, func(ctx context.Context, id uint64) error {
			return p.send(ctx, payload(id, ep))
		})
		return r, u, err
	}
	if _, _, err := run(300*time.Millisecond, 300*time.Millisecond); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	r, u, err := run(d, 2*time.Second)
	if err != nil {
		return nil, err
	}
	m := r.Metrics()
	maps.Copy(m, u.Metrics(r.Done))
	return m, nil
}

func hopChecks(res *bench.ScenarioResult, rates []float64) {
	lo := rateLabel(rates[0])
	at := " @" + lo + "/s"
	res.Checks = append(res.Checks,
		bench.Check{Name: "p50 vs io.Copy forwarder" + at, Metric: "p50_us", Ours: "relay-" + lo, Baseline: "forwarder-" + lo, Goal: bench.Goal{Op: "<=", Target: 1.3, Unit: "×"}},
		bench.Check{Name: "p99 vs io.Copy forwarder" + at, Metric: "p99_us", Ours: "relay-" + lo, Baseline: "forwarder-" + lo, Goal: bench.Goal{Op: "<=", Target: 1.5, Unit: "×"}},
		bench.Check{Name: "p50 vs direct echo" + at, Metric: "p50_us", Ours: "relay-" + lo, Baseline: "echo-" + lo},
		bench.Check{Name: "p99 vs direct echo" + at, Metric: "p99_us", Ours: "relay-" + lo, Baseline: "echo-" + lo},
		bench.Check{Name: "CPU per message vs forwarder" + at, Metric: "cpu_server_us_per_op", Ours: "relay-" + lo, Baseline: "forwarder-" + lo},
		bench.Check{Name: "durable p50 vs io.Copy forwarder" + at, Metric: "p50_us", Ours: "relay-durable-" + lo, Baseline: "forwarder-" + lo},
		bench.Check{Name: "durable p99" + at, Metric: "p99_us", Ours: "relay-durable-" + lo},
	)
	for _, r := range rates[1:] {
		l := rateLabel(r)
		if r == 10000 {
			res.Checks = append(res.Checks, bench.Check{Name: "p99 @10k/s", Metric: "p99_us", Ours: "relay-10k",
				Goal: bench.Goal{Op: "<=", Target: 2000, Unit: "µs"}})
		}
		res.Checks = append(res.Checks,
			bench.Check{Name: "p99 vs io.Copy forwarder @" + l + "/s", Metric: "p99_us", Ours: "relay-" + l, Baseline: "forwarder-" + l},
			bench.Check{Name: "CPU per message vs forwarder @" + l + "/s", Metric: "cpu_server_us_per_op", Ours: "relay-" + l, Baseline: "forwarder-" + l})
	}
}

var pctCats = []struct{ metric, label string }{
	{"p50_us", "p50"}, {"p90_us", "p90"}, {"p99_us", "p99"}, {"p999_us", "p99.9"}, {"max_us", "max"},
}

// latencyPlots adds, per rate, a plot of each system's latency
// percentiles (median of repeats); systems are {run id prefix, name}.
func latencyPlots(res *bench.ScenarioResult, rates []float64, what string, systems [][2]string) {
	for _, rate := range rates {
		l := rateLabel(rate)
		p := &bench.PlotSpec{File: fmt.Sprintf("%s-latency-%s.png", res.Name, l),
			Title: fmt.Sprintf("%s: %s at %s msg/s (median of repeats)", res.Name, what, l),
			Kind:  "lines", YLabel: "latency, us (log)", XLabel: "percentile", LogY: true}
		for _, c := range pctCats {
			p.Categories = append(p.Categories, c.label)
		}
		for _, sys := range systems {
			if run := res.Run(sys[0] + "-" + l); run != nil {
				s := bench.Series{Name: sys[1]}
				for _, c := range pctCats {
					s.Y = append(s.Y, run.Stat(c.metric).Median)
				}
				p.Series = append(p.Series, s)
			}
		}
		res.Plots = append(res.Plots, p)
	}
}

func hopPlots(res *bench.ScenarioResult, rates []float64, systems []hopSystem) {
	var named [][2]string
	for _, sys := range systems {
		named = append(named, [2]string{sys.id, sys.name})
	}
	latencyPlots(res, rates, "round-trip latency", named)
	cpu := &bench.PlotSpec{File: res.Name + "-cpu.png", Title: res.Name + ": server CPU per round trip (median of repeats)",
		Kind: "bars", YLabel: "CPU us per round trip, server process"}
	for _, rate := range rates {
		cpu.Categories = append(cpu.Categories, rateLabel(rate)+" msg/s")
	}
	for _, sys := range systems {
		s := bench.Series{Name: sys.name}
		for _, rate := range rates {
			v := nan()
			if run := res.Run(sys.id + "-" + rateLabel(rate)); run != nil {
				v = run.Stat("cpu_server_us_per_op").Median
			}
			s.Y = append(s.Y, v)
		}
		cpu.Series = append(cpu.Series, s)
	}
	res.Plots = append(res.Plots, cpu)
}
