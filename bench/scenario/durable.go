package scenario

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strconv"
	"time"

	"github.com/stapes-relay/stapes/bench"
	"github.com/stapes-relay/stapes/bench/baseline"
	"github.com/stapes-relay/stapes/bench/relayconn"
	"github.com/stapes-relay/stapes/relay/wire"
)

// SlowDelay is the commit delay of the slow-relay self-test.
const SlowDelay = 2 * time.Millisecond

func init() {
	register(&Scenario{
		Name:  "durable-commit",
		Title: "durable SEND → PERSISTED vs raw Pebble and fdatasync",
		Summary: "N sessions (one WebSocket connection each, TLS) send durable 256-byte messages in a closed loop: the next " +
			"SEND leaves when PERSISTED for the previous one arrives, i.e. after relayd's group commit to Pebble with " +
			"fsync. Baselines in the same run, same disk: N writers committing one-Set batches to a raw Pebble database " +
			"with pebble.Sync (Pebble's own group commit), and N writers appending 256-byte records to a file made " +
			"durable with fdatasync (one writer: write+fdatasync each; more: a minimal group commit).",
		Default: true,
		Plan:    durablePlan,
		Run: func(ctx context.Context, e *Env, o Options, res *bench.ScenarioResult) error {
			return runDurable(ctx, e, o, res, 0)
		},
	})
	register(&Scenario{
		Name:  "slow-relay",
		Title: "self-test: a relay slowed by --debug-commit-delay " + SlowDelay.String() + " must come out worse",
		Summary: "durable-commit at 1 session against two relayd processes side by side in the same repeats: a normal " +
			"one and one started with --debug-commit-delay " + SlowDelay.String() + " (a sleep before every group " +
			"commit), with the same raw Pebble and fdatasync baselines. Every figure and verdict is computed for both " +
			"(the normal relay's carry the prefix 'normal relay:'); those of the slowed relay must be worse. One " +
			"session, because with many concurrent sessions a commit delay overlaps with group-commit batching and " +
			"can even raise throughput, which would make a poor self-test.",
		Default: true,
		Plan: func(o Options) time.Duration {
			return time.Duration(o.Repeat*4*len(slowSessions))*(o.Duration+time.Second) + 3*time.Second
		},
		Run: func(ctx context.Context, e *Env, o Options, res *bench.ScenarioResult) error {
			o.Sessions = slowSessions
			return runDurable(ctx, e, o, res, SlowDelay)
		},
	})
}

// slowSessions are the concurrencies of slow-relay.
var slowSessions = []int{1}

func durablePlan(o Options) time.Duration {
	return time.Duration(o.Repeat*3*len(o.Sessions))*(o.Duration+time.Second) + 2*time.Second
}

const durableWarmup = 500 * time.Millisecond

// runDurable measures durable commits; with a delay it also runs a normal
// relay side by side (runs "normal-N") for the slow-relay comparison.
func runDurable(ctx context.Context, e *Env, o Options, res *bench.ScenarioResult, delay time.Duration) error {
	relay, err := e.StartRelay(ctx, RelaySpec{Name: res.Name, Delay: delay})
	if err != nil {
		return err
	}
	defer relay.Close()
	var normal Target
	if delay > 0 {
		if normal, err = e.StartRelay(ctx, RelaySpec{Name: res.Name + "-normal"}); err != nil {
			return err
		}
		defer normal.Close()
	}
	pb, err := baseline.OpenPebble(filepath.Join(e.Dir, e.Session("pebble")))
	if err != nil {
		return err
	}
	defer pb.Close()
	fl, err := baseline.OpenFileLog(filepath.Join(e.Dir, e.Session("fdatasync")+".log"))
	if err != nil {
		return err
	}
	defer fl.Close()
	value := make([]byte, 256)
	for rep := range o.Repeat {
		for _, n := range o.Sessions {
			ns := strconv.Itoa(n)
			loop := bench.ClosedLoop{Workers: n, Duration: o.Duration, Warmup: durableWarmup}
			type durableRun struct {
				id, system string
				ours       bool
				procs      []bench.Proc
				measure    func() (*bench.LoadResult, *bench.Usage, error)
			}
			var runs []durableRun
			if normal != nil {
				runs = append(runs, durableRun{"normal-" + ns, "relayd, normal (PERSISTED over WS)", true, normal.Procs(), func() (*bench.LoadResult, *bench.Usage, error) {
					return durableRelay(ctx, e, normal, n, loop)
				}})
			}
			system := "relayd (PERSISTED over WS)"
			if delay > 0 {
				system = "relayd, --debug-commit-delay " + delay.String()
			}
			runs = append(runs, []durableRun{
				{"relay-" + ns, system, true, relay.Procs(), func() (*bench.LoadResult, *bench.Usage, error) {
					return durableRelay(ctx, e, relay, n, loop)
				}},
				{"pebble-" + ns, "raw Pebble, synced batch", false, nil, func() (*bench.LoadResult, *bench.Usage, error) {
					seqs := make([]uint64, n)
					u := bench.StartUsage(bench.Self())
					r, err := loop.Run(ctx, func(ctx context.Context, w int) error {
						seqs[w]++
						return pb.Commit(w, seqs[w], value)
					})
					return r, u, err
				}},
				{"fdatasync-" + ns, "raw append + fdatasync", false, nil, func() (*bench.LoadResult, *bench.Usage, error) {
					u := bench.StartUsage(bench.Self())
					r, err := loop.Run(ctx, func(ctx context.Context, w int) error {
						if n == 1 {
							return fl.AppendSync(value)
						}
						return fl.Append(value)
					})
					return r, u, err
				}},
			}...)
			for _, rn := range runs {
				run := res.AddRun(rn.id, rn.system, "closed loop, "+ns+" writer(s), 256 B", rn.ours)
				done := step(e, fmt.Sprintf("%s %s r%d/%d", res.Name, rn.id, rep+1, o.Repeat), o.Duration+time.Second)
				r, u, err := rn.measure()
				done()
				if errCanceled(ctx, err) {
					return err
				}
				var m map[string]float64
				if r != nil {
					m = r.Metrics()
					maps.Copy(m, u.Metrics(r.Done))
				}
				run.Add(m, err)
			}
		}
	}
	durableChecks(res, o.Sessions)
	if normal != nil {
		slowChecks(res, o.Sessions)
	}
	durablePlots(res, o.Sessions)
	res.Notes = append(res.Notes,
		"Closed loop: each writer has one commit in flight, so throughput is the commit rate that concurrency sustains and latency is each commit's service time.",
		"Raw Pebble runs in the harness process (CPU 'harness'); relayd's CPU is 'server'.")

	return nil
}

// durableRelay opens n sessions and runs the closed loop of durable SENDs.
func durableRelay(ctx context.Context, e *Env, relay Target, n int, loop bench.ClosedLoop) (*bench.LoadResult, *bench.Usage, error) {
	type writer struct {
		c    *relayconn.Conn
		acks chan *wire.Frame
		seq  int
	}
	ws := make([]*writer, n)
	defer func() {
		for _, w := range ws {
			if w != nil {
				w.c.Close()
			}
		}
	}()
	for i := range n {
		tok, err := e.Token(e.Session("dur"), "w"+strconv.Itoa(i), "clinician")
		if err != nil {
			return nil, nil, err
		}
		w := &writer{acks: make(chan *wire.Frame, 4)}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		w.c, err = relayconn.Dial(dctx, relayconn.Options{Transport: "ws", Addr: relay.Addr(), TLS: e.ClientTLS(), Token: tok,
			OnFrame: func(f *wire.Frame) {
				if f.Type == wire.TypePersisted || f.Type == wire.TypeError {
					select {
					case w.acks <- f:
					default:
					}
				}
			}})
		cancel()
		if err != nil {
			return nil, nil, err
		}
		ws[i] = w
	}
	body := make([]byte, 256)
	u := bench.StartUsage(append(relay.Procs(), bench.Self())...)
	r, err := loop.Run(ctx, func(ctx context.Context, i int) error {
		w := ws[i]
		w.seq++
		id := "m" + strconv.Itoa(w.seq)
		if err := w.c.Send(ctx, &wire.Frame{Type: wire.TypeSend, Kind: wire.KindChat, Flags: wire.FlagDurable, ClientID: id, Payload: body}); err != nil {
			return err
		}
		t := time.NewTimer(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case f := <-w.acks:
				if f.Type == wire.TypeError {
					return fmt.Errorf("relay ERROR %v: %s", f.Code, f.Message)
				}
				if f.ClientID == id {
					return nil
				}
			case <-t.C:
				return errors.New("no PERSISTED within 10s")
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
	return r, u, err
}

func durableChecks(res *bench.ScenarioResult, sessions []int) {
	for _, n := range sessions {
		ns := strconv.Itoa(n)
		label := ns + " sessions: "
		if n == 1 {
			label = "1 session: "
		}
		switch n {
		case 1:
			res.Checks = append(res.Checks, bench.Check{Name: label + "PERSISTED p99", Metric: "p99_us", Ours: "relay-1",
				Goal: bench.Goal{Op: "<=", Target: 2500, Unit: "µs"}})
		case 16:
			res.Checks = append(res.Checks, bench.Check{Name: label + "p99 vs raw Pebble group commit", Metric: "p99_us",
				Ours: "relay-16", Baseline: "pebble-16", Goal: bench.Goal{Op: "<=", Target: 1.5, Unit: "×"}})
		case 64:
			res.Checks = append(res.Checks,
				bench.Check{Name: label + "commits/s vs raw Pebble synced", Metric: "throughput_per_s", Ours: "relay-64",
					Baseline: "pebble-64", Goal: bench.Goal{Op: ">=", Target: 0.9, Unit: "×"}},
				bench.Check{Name: label + "PERSISTED p99", Metric: "p99_us", Ours: "relay-64",
					Goal: bench.Goal{Op: "<=", Target: 5000, Unit: "µs"}})
		}
		if n != 16 {
			res.Checks = append(res.Checks, bench.Check{Name: label + "p99 vs raw Pebble", Metric: "p99_us", Ours: "relay-" + ns, Baseline: "pebble-" + ns})
		}
		if n != 64 {
			res.Checks = append(res.Checks, bench.Check{Name: label + "commits/s vs raw Pebble", Metric: "throughput_per_s", Ours: "relay-" + ns, Baseline: "pebble-" + ns})
		}
		res.Checks = append(res.Checks, bench.Check{Name: label + "p50 vs append+fdatasync", Metric: "p50_us", Ours: "relay-" + ns, Baseline: "fdatasync-" + ns})
	}
}

func durablePlots(res *bench.ScenarioResult, sessions []int) {
	systems := []struct{ id, name string }{
		{"relay", "relayd (PERSISTED)"}, {"pebble", "raw Pebble synced"}, {"fdatasync", "append+fdatasync"},
	}
	if res.Run("normal-"+strconv.Itoa(sessions[0])) != nil {
		systems[0].name = "relayd slowed"
		systems = append(systems, struct{ id, name string }{"normal", "relayd normal"})
	}
	tp := &bench.PlotSpec{File: res.Name + "-throughput.png", Title: res.Name + ": durable commits per second by concurrency",
		Kind: "lines-logx", XLabel: "concurrent writers (sessions)", YLabel: "commits/s"}
	p99 := &bench.PlotSpec{File: res.Name + "-p99.png", Title: res.Name + ": commit latency p50 and p99 by concurrency",
		Kind: "lines-logx", XLabel: "concurrent writers (sessions)", YLabel: "latency, us (log)", LogY: true}
	for i, sys := range systems {
		t := bench.Series{Name: sys.name}
		l99 := bench.Series{Name: sys.name + " p99", Color: i + 1}
		l50 := bench.Series{Name: sys.name + " p50", Color: i + 1, Dashed: true}
		for _, n := range sessions {
			run := res.Run(sys.id + "-" + strconv.Itoa(n))
			if run == nil {
				continue
			}
			t.X = append(t.X, float64(n))
			t.Y = append(t.Y, run.Stat("throughput_per_s").Median)
			l99.X = append(l99.X, float64(n))
			l99.Y = append(l99.Y, run.Stat("p99_us").Median)
			l50.X = append(l50.X, float64(n))
			l50.Y = append(l50.Y, run.Stat("p50_us").Median)
		}
		tp.Series = append(tp.Series, t)
		p99.Series = append(p99.Series, l99, l50)
	}
	res.Plots = append(res.Plots, tp, p99)
}
