package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stapes-relay/stapes/bench"
	"github.com/stapes-relay/stapes/bench/baseline"
	"github.com/stapes-relay/stapes/bench/scenario"
)

func init() {
	register(verb{
		name:    "bench",
		summary: "run the side-by-side benchmarks and write a report with ratios and plots",
		usage:   "[--list] [--scenario NAME[,NAME]] [--duration D] [--rate R] [--repeat N] [--sync-entries N] [--kills N] [--out DIR]",
		flags: func(fs *flag.FlagSet) runFunc {
			c := &benchCmd{}
			fs.BoolVar(&c.list, "list", false, "list the scenarios and exit")
			fs.StringVar(&c.scenarios, "scenario", "", "comma-separated `NAMES` of scenarios to run (default: the default suite)")
			fs.DurationVar(&c.opts.Duration, "duration", 4*time.Second, "`D`: duration of each measured load run")
			fs.Float64Var(&c.opts.Rate, "rate", 0, "`R`: open-loop rate in msg/s for the relay-hop scenarios (default 1000 and 10000)")
			fs.IntVar(&c.opts.Repeat, "repeat", 3, "repeat every run `N` times; figures are min/median/max over repeats")
			fs.IntVar(&c.opts.Conns, "conns", 10000, "idle connections per server in idle-memory")
			fs.IntVar(&c.opts.Setups, "setups", 200, "connection setups per variant and repeat in quic-setup")
			fs.IntVar(&c.opts.SyncEntries, "sync-entries", 50000, "log entries in the relay's outbox before the sync scenario drains it")
			fs.IntVar(&c.opts.Kills, "kills", 0, fmt.Sprintf("SIGKILLs of the session's home in the failover scenario (default %d, %d in the default suite)", scenario.DefaultKills, scenario.SuiteKills))
			fs.StringVar(&c.sessions, "sessions", "1,16,64", "comma-separated concurrencies (sessions) of durable-commit and slow-relay")
			fs.StringVar(&c.out, "out", "", "report `DIR`ectory (default bench/results/<date>)")
			fs.StringVar(&c.relayd, "relayd", "", "relayd binary (default: next to this binary, then $PATH)")
			fs.StringVar(&c.work, "work", "", "scratch `DIR` for data directories and server logs (default: a new temporary directory, removed afterwards)")
			return c.run
		},
	})
}

type benchCmd struct {
	list      bool
	scenarios string
	sessions  string
	opts      scenario.Options
	out       string
	relayd    string
	work      string
}

func (c *benchCmd) run(ctx context.Context, e *env) error {
	if len(e.args) > 0 && e.args[0] == "_serve" {
		return serveBaseline(ctx, e)
	}
	if len(e.args) > 0 && e.args[0] == "_gossip-node" {
		return serveGossipNode(ctx, e)
	}
	if err := noArgs(e); err != nil {
		return err
	}
	if c.list {
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		for _, s := range scenario.All() {
			def := ""
			if s.Default {
				def = "(default)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, def, s.Title)
		}
		return tw.Flush()
	}
	if c.opts.Duration <= 0 || c.opts.Repeat <= 0 || c.opts.Conns <= 0 || c.opts.Setups <= 0 || c.opts.SyncEntries <= 0 || c.opts.Kills < 0 || c.opts.Rate < 0 {
		return usagef("--duration, --repeat, --conns, --setups and --sync-entries must be positive, --rate and --kills not negative")
	}
	if c.opts.Kills == 0 && c.scenarios == "" {
		c.opts.Kills = scenario.SuiteKills
	}
	for _, f := range strings.Split(c.sessions, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || n > 1000 {
			return usagef("--sessions: %q is not a count from 1 to 1000", f)
		}
		c.opts.Sessions = append(c.opts.Sessions, n)
	}
	list := scenario.Defaults()
	if c.scenarios != "" {
		list = nil
		for _, name := range strings.Split(c.scenarios, ",") {
			s, ok := scenario.Lookup(strings.TrimSpace(name))
			if !ok {
				return usagef("unknown scenario %q (see --list)", name)
			}
			list = append(list, s)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	relayd, err := findRelayd(c.relayd, self)
	if err != nil {
		return err
	}
	if _, err := bench.RaiseNoFile(); err != nil {
		fmt.Fprintf(e.stderr, "stapes: bench: %v (continuing)\n", err)
	}
	started := time.Now()
	out := c.out
	if out == "" {
		out = filepath.Join("bench", "results", started.Format("2006-01-02"))
	}
	work := c.work
	if work == "" {
		if work, err = os.MkdirTemp("", "stapes-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	}
	opts := c.opts.WithDefaults()
	plan := scenario.PlanAll(list, opts)
	prog := bench.NewProgress(e.stderr, isTerminal(e.stderr), plan)
	defer prog.Close()
	prog.Note("stapes bench: %d scenario(s), about %s; report in %s", len(list), plan.Round(time.Second), out)

	senv, err := scenario.NewEnv(work, relayd, self, prog)
	if err != nil {
		return err
	}
	defer senv.Close() // kills, by pid, every server still running
	results, runErr := scenario.RunSuite(ctx, senv, list, opts)
	senv.Close()

	rep := &bench.Report{
		Started: started, Finished: time.Now(), Command: commandLine(), Machine: bench.DescribeMachine(),
		Repeat: opts.Repeat, Scenarios: results,
		Settings: map[string]string{
			"duration per run": opts.Duration.String(),
			"idle connections": fmt.Sprint(opts.Conns),
			"setups":           fmt.Sprint(opts.Setups),
			"sync entries":     fmt.Sprint(opts.SyncEntries),
			"failover kills":   fmt.Sprint(opts.Kills),
		},
	}
	if rev := gitRevision(); rev != "" {
		rep.Settings["source"] = rev
	}
	if runErr != nil {
		rep.Settings["interrupted"] = runErr.Error()
	}
	if err := bench.WriteReport(out, rep); err != nil {
		return err
	}
	prog.Close()
	fmt.Fprintf(e.stdout, "report: %s\n", filepath.Join(out, bench.MarkdownFile))
	if runErr != nil {
		return runErr
	}
	for _, s := range results {
		if s.Error != "" {
			return fmt.Errorf("scenario %s failed: %s", s.Name, s.Error)
		}
	}
	return nil
}

// findRelayd returns the relayd binary: the flag, the one beside self,
// or the one on $PATH.
func findRelayd(flagPath, self string) (string, error) {
	if flagPath != "" {
		return flagPath, nil
	}
	sib := filepath.Join(filepath.Dir(self), "relayd")
	if fi, err := os.Stat(sib); err == nil && !fi.IsDir() {
		return sib, nil
	}
	if p, err := exec.LookPath("relayd"); err == nil {
		return p, nil
	}
	return "", errors.New("relayd not found next to stapes nor on $PATH; run 'make build' or pass --relayd")
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// gitRevision describes the checkout the binaries were presumably built
// from ("" outside a git work tree).
func gitRevision() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := "commit " + strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		rev += " with uncommitted changes in the work tree"
	}
	return rev
}

func commandLine() string {
	args := append([]string{filepath.Base(os.Args[0])}, os.Args[1:]...)
	if len(os.Args) > 0 && strings.Contains(os.Args[0], "/") {
		args[0] = os.Args[0]
	}
	return strings.Join(args, " ")
}

// serveBaseline is the hidden `stapes bench _serve MODE --cert F --key F`:
// a baseline server as its own process, so the harness measures its CPU
// and memory apart. It prints "listening ADDR" when ready.
func serveBaseline(ctx context.Context, e *env) error {
	fs := flag.NewFlagSet("_serve", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	cert := fs.String("cert", "", "certificate PEM")
	key := fs.String("key", "", "key PEM")
	if len(e.args) < 2 {
		return usagef("_serve needs a mode: %v", baseline.Modes)
	}
	if err := fs.Parse(e.args[2:]); err != nil {
		return usagef("%v", err)
	}
	if _, err := bench.RaiseNoFile(); err != nil {
		return err
	}
	var tc *tls.Config
	if *cert != "" {
		kp, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			return err
		}
		tc = &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS13}
	}
	return baseline.Serve(ctx, e.args[1], tc, func(addr string) {
		fmt.Fprintf(e.stdout, "listening %s\n", addr)
	})
}

// serveGossipNode is the hidden `stapes bench _gossip-node --profile P
// --id ID --procs N --key HEX`: the gossip scenario's hogged node in its
// own process. It prints "listening ADDR" (its control address) when
// ready.
func serveGossipNode(ctx context.Context, e *env) error {
	fs := flag.NewFlagSet("_gossip-node", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var spec scenario.GossipNode
	fs.StringVar(&spec.Profile, "profile", "ours", "ours or bare")
	fs.StringVar(&spec.ID, "id", "", "node id")
	fs.IntVar(&spec.Procs, "procs", 1, "GOMAXPROCS")
	fs.StringVar(&spec.KeyHex, "key", "", "gossip key, hex")
	if err := fs.Parse(e.args[1:]); err != nil {
		return usagef("%v", err)
	}
	return scenario.ServeGossipNode(ctx, spec, e.stdout)
}
