package scenario

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stapes-relay/stapes/bench"
	"github.com/stapes-relay/stapes/bench/relayconn"
	"github.com/stapes-relay/stapes/relay/wire"
)

// replicatedRates are replicated-commit's offered loads (durable msg/s,
// one session).
var replicatedRates = []float64{200, 2000}

// replicatedGoal bounds the replicated commit p99 as a multiple of the
// single relay's in the same repeat.
const replicatedGoal = 2

func init() {
	register(&Scenario{
		Name:  "replicated-commit",
		Title: "durable SEND → PERSISTED: a replicating relay pair vs one relayd",
		Summary: "One session (one WebSocket connection, TLS) sends durable 256-byte chat messages open loop at fixed rates; " +
			"latency is from each message's intended send time to its PERSISTED. Ours: two relayd processes of one region " +
			"in a static cluster (--peers, shared --peer-secret-file, --require-replica), the session homed on the first, " +
			"which commits a batch only after the second has fsync'd it (QUIC peer link) and then applies its own copy, " +
			"synced in the background (default), or fsync'd before PERSISTED too (a second pair with --sync-home, info). " +
			"Baseline in the same repeats: one relayd without a cluster, started with the same flags otherwise. Every PERSISTED of a pair must " +
			"be unflagged (a degraded one means it was not replicated) and the replica must have stored at least as many " +
			"entries as were PERSISTED; otherwise the run is an error, not a figure.",
		Default: true,
		Plan: func(o Options) time.Duration {
			return time.Duration(o.Repeat*3*len(o.rates(replicatedRates)))*(o.Duration+2*time.Second) + 6*time.Second
		},
		Run: runReplicated,
	})
}

// commitSystem is one system replicated-commit measures.
type commitSystem struct {
	id, name string
	ours     bool
	addr     string       // where the session's connection goes (its home)
	procs    []bench.Proc // sampled for CPU
	replica  *clusterNode // the pair's replica; nil for the single relay
}

func runReplicated(ctx context.Context, e *Env, o Options, res *bench.ScenarioResult) error {
	done := step(e, res.Name+": start one relayd and a pair", 3*time.Second)
	single, err := e.StartRelay(ctx, RelaySpec{Name: res.Name + "-single"})
	if err != nil {
		done()
		return err
	}
	defer single.Close()
	pair, err := startCluster(ctx, e, "rc", 2)
	if err != nil {
		done()
		return err
	}
	defer pair.Close()
	both, err := startCluster(ctx, e, "rs", 2, "--sync-home")
	done()
	if err != nil {
		return err
	}
	defer both.Close()
	systems := []commitSystem{
		{id: "single", name: "relayd, one node", addr: single.Addr(), procs: single.Procs()},
		pairSystem("replicated", "relayd pair, --require-replica", true, pair),
		pairSystem("synchome", "relayd pair, --require-replica --sync-home", false, both),
	}
	rates := o.rates(replicatedRates)
	for rep := range o.Repeat {
		for _, rate := range rates {
			// Alternate which system goes first, so a drift of the machine
			// (compactions, other load) does not always favour one.
			order := append([]commitSystem(nil), systems...)
			if rep%2 == 1 {
				slices.Reverse(order)
			}
			for _, sys := range order {
				id := sys.id + "-" + rateLabel(rate)
				run := res.AddRun(id, sys.name, fmt.Sprintf("open loop %s durable msg/s, 1 session, 256 B", rateLabel(rate)), sys.ours)
				if err := measured(ctx, e, run, fmt.Sprintf("%s %s r%d/%d", res.Name, id, rep+1, o.Repeat), o.Duration+2*time.Second,
					func() (map[string]float64, error) { return measureCommit(ctx, e, sys, rate, o.Duration) }); err != nil {
					return err
				}
			}
		}
	}
	replicatedChecks(res, rates)
	replicatedPlots(res, rates, systems)
	res.Notes = append(res.Notes,
		"Open loop: a PERSISTED that is late delays none of the following SENDs, so a slow commit shows in the tail instead of lowering the rate.",
		"CPU 'server' is the session's home relay (the single relay, or the pair's first), 'replica' the pair's second, 'harness' the load generator; all share the 2 cores.",
		"A fresh session per run; 300 ms of warm-up at the same rate (which also opens the peer link) precede each measured run.")
	return firstRunError(res)
}

// pairSystem is a relay pair of c, the session homed on its first node.
func pairSystem(id, name string, ours bool, c *cluster) commitSystem {
	home, replica := c.nodes[0], c.nodes[1]
	return commitSystem{id: id, name: name, ours: ours, addr: home.addr,
		procs: []bench.Proc{home.proc("server"), replica.proc("replica")}, replica: replica}
}

// commitLoad receives one connection's PERSISTED and ERROR frames.
type commitLoad struct {
	epoch     atomic.Uint32
	cur       atomic.Pointer[bench.Tracker]
	persisted atomic.Int64 // PERSISTED frames, warm-up included
	degraded  atomic.Int64 // of which flagged degraded
	mu        sync.Mutex   // guards the fields below
	errs      int
	firstErr  string
}

func (l *commitLoad) onFrame(f *wire.Frame) {
	switch f.Type {
	case wire.TypePersisted:
		l.persisted.Add(1)
		if f.Flags&wire.FlagDegraded != 0 {
			l.degraded.Add(1)
		}
		ep, id, ok := parseCommitID(f.ClientID)
		if !ok || ep != l.epoch.Load() {
			return
		}
		if t := l.cur.Load(); t != nil {
			t.Complete(id)
		}
	case wire.TypeError:
		l.mu.Lock()
		l.errs++
		if l.firstErr == "" {
			l.firstErr = fmt.Sprintf("%v: %s", f.Code, f.Message)
		}
		l.mu.Unlock()
	}
}

// commitID names message id of load epoch ep: unique within the session,
// as the relay's idempotency needs.
func commitID(ep uint32, id uint64) string {
	return strconv.FormatUint(uint64(ep), 10) + "." + strconv.FormatUint(id, 10)
}

func parseCommitID(s string) (ep uint32, id uint64, ok bool) {
	a, b, ok := strings.Cut(s, ".")
	if !ok {
		return 0, 0, false
	}
	e, err1 := strconv.ParseUint(a, 10, 32)
	n, err2 := strconv.ParseUint(b, 10, 64)
	return uint32(e), n, err1 == nil && err2 == nil
}

// measureCommit opens a fresh session on sys, warms it up, and runs the
// measured open loop of durable SENDs.
func measureCommit(ctx context.Context, e *Env, sys commitSystem, rate float64, d time.Duration) (map[string]float64, error) {
	tok, err := e.Token(e.Session("rc-"+sys.id), "clinician", "clinician")
	if err != nil {
		return nil, err
	}
	var before float64
	if sys.replica != nil {
		if before, err = sys.replica.metric(ctx, replicatedEntriesMetric); err != nil {
			return nil, err
		}
	}
	l := &commitLoad{}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := relayconn.Dial(dctx, relayconn.Options{Transport: "ws", Addr: sys.addr, TLS: e.ClientTLS(), Token: tok, OnFrame: l.onFrame})
	cancel()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	body := make([]byte, 256)
	run := func(dur, drain time.Duration) (*bench.LoadResult, *bench.Usage, error) {
		tr, err := bench.OpenLoop{Rate: rate, Duration: dur, Drain: drain}.Start()
		if err != nil {
			return nil, nil, err
		}
		ep := l.epoch.Add(1)
		l.cur.Store(tr)
		u := bench.StartUsage(append(sys.procs, bench.Self())...)
		r, err := tr.Run(ctx, func(ctx context.Context, id uint64) error {
			return c.Send(ctx, &wire.Frame{Type: wire.TypeSend, Kind: wire.KindChat, Flags: wire.FlagDurable,
				ClientID: commitID(ep, id), Payload: body})
		})
		return r, u, err
	}
	if _, _, err := run(300*time.Millisecond, time.Second); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	r, u, err := run(d, 2*time.Second)
	if err != nil {
		return nil, err
	}
	m := r.Metrics()
	maps.Copy(m, u.Metrics(r.Done))
	m["degraded"] = float64(l.degraded.Load())
	l.mu.Lock()
	m["relay_errors"] = float64(l.errs)
	firstErr := l.firstErr
	l.mu.Unlock()
	if firstErr != "" {
		return m, fmt.Errorf("relay answered %d SEND(s) with ERROR, the first %s", int(m["relay_errors"]), firstErr)
	}
	if sys.replica == nil {
		return m, nil
	}
	if n := l.degraded.Load(); n > 0 {
		return m, fmt.Errorf("%d of %d PERSISTED flagged degraded: the pair acknowledged them without a replica", n, l.persisted.Load())
	}
	after, err := sys.replica.metric(ctx, replicatedEntriesMetric)
	if err != nil {
		return m, err
	}
	m["replica_entries"] = after - before
	if got, want := after-before, float64(l.persisted.Load()); got < want {
		return m, fmt.Errorf("the replica stored %.0f entries for %.0f PERSISTED: the pair did not replicate", got, want)
	}
	return m, nil
}

// replicatedEntriesMetric counts the entries a relay stored as a replica.
const replicatedEntriesMetric = "stapes_relay_replicated_entries_total"

func replicatedChecks(res *bench.ScenarioResult, rates []float64) {
	for _, r := range rates {
		l := rateLabel(r)
		at := " @" + l + "/s"
		ours, base := "replicated-"+l, "single-"+l
		res.Checks = append(res.Checks,
			bench.Check{Name: "replicated commit p99 vs single relayd" + at, Metric: "p99_us", Ours: ours, Baseline: base,
				Goal: bench.Goal{Op: "<=", Target: replicatedGoal, Unit: "×"}},
			bench.Check{Name: "replicated commit p50 vs single relayd" + at, Metric: "p50_us", Ours: ours, Baseline: base},
			bench.Check{Name: "replicated PERSISTED p99" + at, Metric: "p99_us", Ours: ours},
			bench.Check{Name: "single relayd PERSISTED p99" + at, Metric: "p99_us", Ours: base},
			bench.Check{Name: "commits/s vs single relayd" + at, Metric: "throughput_per_s", Ours: ours, Baseline: base},
			bench.Check{Name: "home relay CPU per message vs single relayd" + at, Metric: "cpu_server_us_per_op", Ours: ours, Baseline: base},
			bench.Check{Name: "--sync-home pair commit p99 vs single relayd" + at, Metric: "p99_us", Ours: "synchome-" + l, Baseline: base},
			bench.Check{Name: "--sync-home pair commit p50 vs single relayd" + at, Metric: "p50_us", Ours: "synchome-" + l, Baseline: base},
		)
	}
}

func replicatedPlots(res *bench.ScenarioResult, rates []float64, systems []commitSystem) {
	var named [][2]string
	for _, sys := range systems {
		named = append(named, [2]string{sys.id, sys.name})
	}
	latencyPlots(res, rates, "SEND -> PERSISTED", named)
}

// firstRunError returns the first error recorded in any run of res, so a
// run that failed a correctness condition fails its scenario too.
func firstRunError(res *bench.ScenarioResult) error {
	for _, r := range res.Runs {
		for i, s := range r.Samples {
			if s.Error != "" {
				return fmt.Errorf("%s, repeat %d: %s", r.ID, i+1, s.Error)
			}
		}
	}
	return nil
}
