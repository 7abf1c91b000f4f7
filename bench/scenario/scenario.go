// Package scenario holds the benchmark scenarios of `stapes bench`: each
// runs a stapes component and its baseline in the same run, on the same
// machine, under the same load, and states its goals. RunSuite runs a
// list of them into a bench.Report.
package scenario

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/stapes-relay/stapes/bench"
)

// Options are the knobs of a run; zero fields take the defaults.
type Options struct {
	// Duration of each measured load run. Default 4s.
	Duration time.Duration
	// Rate overrides the open-loop rates of the relay-hop scenarios
	// (default 1,000 and 10,000 msg/s), turn and replicated-commit.
	Rate float64
	// Repeat is how often every run is repeated. Default 3.
	Repeat int
	// Conns is the number of idle connections of idle-memory. Default 10,000.
	Conns int
	// Setups is the number of connection setups per variant and repeat in
	// quic-setup. Default 200.
	Setups int
	// Sessions are the concurrencies of durable-commit. Default 1, 16, 64.
	Sessions []int
	// SyncEntries is the number of log entries the sync scenario commits
	// to the relay's outbox before draining it. Default 50,000.
	SyncEntries int
	// Kills is how often the failover scenario SIGKILLs the session's
	// home. Default DefaultKills (`stapes bench` passes SuiteKills for
	// the default suite).
	Kills int
}

// The failover scenario's kill counts: alone, and in the default suite,
// where fewer kills keep the suite's time down (about 2 s a kill).
const (
	DefaultKills = 20
	SuiteKills   = 8
)

// WithDefaults fills unset fields.
func (o Options) WithDefaults() Options {
	if o.Duration <= 0 {
		o.Duration = 4 * time.Second
	}
	if o.Repeat <= 0 {
		o.Repeat = 3
	}
	if o.Conns <= 0 {
		o.Conns = 10_000
	}
	if o.Setups <= 0 {
		o.Setups = 200
	}
	if len(o.Sessions) == 0 {
		o.Sessions = []int{1, 16, 64}
	}
	if o.SyncEntries <= 0 {
		o.SyncEntries = 50_000
	}
	if o.Kills <= 0 {
		o.Kills = DefaultKills
	}
	return o
}

// Scenario is one benchmark.
type Scenario struct {
	Name    string
	Title   string
	Summary string
	// Default scenarios run when no --scenario is given.
	Default bool
	// Plan estimates the run time, for the progress bar.
	Plan func(o Options) time.Duration
	// Run measures into res (runs, checks, plots, notes).
	Run func(ctx context.Context, e *Env, o Options, res *bench.ScenarioResult) error
}

var registry []*Scenario

func register(s *Scenario) { registry = append(registry, s) }

// suiteOrder is the order scenarios run and are reported in.
var suiteOrder = []string{"relay-hop-ws", "relay-hop-quic", "durable-commit", "idle-memory", "quic-setup", "slow-relay", "replicated-commit", "failover", "sync"}

// All returns every scenario in suite order.
func All() []*Scenario {
	out := make([]*Scenario, 0, len(registry))
	for _, name := range suiteOrder {
		if s, ok := Lookup(name); ok {
			out = append(out, s)
		}
	}
	for _, s := range registry {
		if !slices.Contains(suiteOrder, s.Name) {
			out = append(out, s)
		}
	}
	return out
}

// Lookup finds a scenario by name.
func Lookup(name string) (*Scenario, bool) {
	for _, s := range registry {
		if s.Name == name {
			return s, true
		}
	}
	return nil, false
}

// Defaults returns the default suite.
func Defaults() []*Scenario {
	var out []*Scenario
	for _, s := range All() {
		if s.Default {
			out = append(out, s)
		}
	}
	return out
}

// PlanAll sums the planned time of list.
func PlanAll(list []*Scenario, o Options) time.Duration {
	o = o.WithDefaults()
	var d time.Duration
	for _, s := range list {
		d += s.Plan(o)
	}
	return d
}

// RunSuite runs list in order. A scenario that fails is reported with its
// error and the suite goes on; cancelling ctx stops it, returning what was
// measured so far with ctx's error.
func RunSuite(ctx context.Context, e *Env, list []*Scenario, o Options) ([]*bench.ScenarioResult, error) {
	o = o.WithDefaults()
	var out []*bench.ScenarioResult
	for _, s := range list {
		res := &bench.ScenarioResult{Name: s.Name, Title: s.Title, Summary: s.Summary}
		e.Progress.Note("%s: %s", s.Name, s.Title)
		start := time.Now()
		err := s.Run(ctx, e, o, res)
		res.Seconds = time.Since(start).Seconds()
		if err != nil {
			res.Error = err.Error()
		}
		res.Finish()
		out = append(out, res)
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		for _, c := range res.Checks {
			e.Progress.Note("  %-44s %-28s %s", c.Name, summaryValue(c), c.Verdict)
		}
		if err != nil {
			e.Progress.Note("  failed: %v", err)
		}
	}
	compareSlowRelay(out)
	return out, nil
}

func summaryValue(c bench.Check) string {
	if !c.Value.Valid() {
		return "—"
	}
	if c.Baseline != "" {
		return fmt.Sprintf("%.2f×", c.Value.Median)
	}
	return bench.FormatValue(c.Metric, c.Value.Median)
}

// step shows a step on the progress bar; call the result when done.
func step(e *Env, label string, plan time.Duration) func() {
	return e.Progress.Step(label, plan)
}

// rates returns the open-loop rates to run: Rate alone when set, else
// the scenario's defaults.
func (o Options) rates(defaults []float64) []float64 {
	if o.Rate > 0 {
		return []float64{o.Rate}
	}
	return defaults
}

// rateLabel names a rate: 1000 → "1k".
func rateLabel(r float64) string {
	if r >= 1000 && int(r)%1000 == 0 {
		return fmt.Sprintf("%dk", int(r)/1000)
	}
	return fmt.Sprintf("%g", r)
}

// measured runs one repeat of run as a progress step (label, plan) and
// adds fn's figures, or its error, to run. It returns fn's error only when
// that is the suite's cancellation, which ends the scenario (not recorded).
func measured(ctx context.Context, e *Env, run *bench.Run, label string, plan time.Duration, fn func() (map[string]float64, error)) error {
	done := step(e, label, plan)
	m, err := fn()
	done()
	if errCanceled(ctx, err) {
		return err
	}
	run.Add(m, err)
	return nil
}

// errCanceled reports whether err is only the suite's cancellation.
func errCanceled(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}

func nan() float64 { return math.NaN() }
