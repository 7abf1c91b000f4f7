package scenario

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/stapes-relay/stapes/bench"
)

// failoverGoal bounds the p99 of kill → both sides resumed.
const failoverGoal = 2 * time.Second

// failoverWait bounds every wait of the scenario: for a healthy cluster
// before a kill, for both sides to resume after it, for the last
// messages' receipts at the end.
const failoverWait = 30 * time.Second

func init() {
	register(&Scenario{
		Name:  "failover",
		Title: "SIGKILL of a busy session's home: time to resume on the replica, exactly once",
		Summary: "Three relayd processes of one region in a static cluster (--peers, --require-replica: every PERSISTED " +
			"entry is on two relays). A clinician streams durable messages (100/s, every fifth a config command, the rest " +
			"chat) to a patient who acks each received and applies each config, both through the client SDK with all three " +
			"relays' URLs (backoff 20–300 ms and 1 s pings, as cmd/relayd's TestFailoverUnderSIGKILL). The session's home " +
			"is SIGKILLed N times (--kills), by pid, after a random 100–500 ms on a healthy cluster (every relay ready, both " +
			"clients on one home, a PERSISTED since the last restart); the killed relay is restarted on its ports and data " +
			"after each. Per kill: kill → both sides admitted by another relay with a higher epoch (resumed), and kill → the " +
			"first PERSISTED on the new home. At the end every message must reach its final receipt and every PERSISTED " +
			"message must have been delivered to the patient exactly once, under its seq; otherwise the run is an error, not " +
			"a figure. The kills are the repeats: the scenario runs once whatever --repeat says (20 kills alone, 8 in the " +
			"default suite; --kills sets it).",
		Default: true,
		Plan: func(o Options) time.Duration {
			return 6*time.Second + time.Duration(o.Kills)*2*time.Second
		},
		Run: runFailover,
	})
}

func runFailover(ctx context.Context, e *Env, o Options, res *bench.ScenarioResult) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, 2*failoverWait+time.Duration(o.Kills)*2*failoverWait)
	defer cancel()
	done := step(e, "failover: start three relays", 3*time.Second)
	c, err := startCluster(ctx, e, "fo", 3)
	done()
	if err != nil {
		return err
	}
	defer c.Close()
	f, err := startFitting(ctx, e, c.URLs())
	if err != nil {
		return err
	}
	defer f.close()
	run := res.AddRun("failover", "relayd ×3, static cluster, --require-replica; client SDK",
		fmt.Sprintf("%d SIGKILLs of the session's home, 100 durable msg/s", o.Kills), true)
	resumes, persists, err := killHomes(ctx, e, c, f, o.Kills)
	if err == nil {
		d := step(e, "failover: last receipts", time.Second)
		err = f.finish(ctx, failoverWait)
		d()
	}
	if parent.Err() != nil {
		return parent.Err()
	}
	m := map[string]float64{"kills": float64(len(resumes))}
	maps.Copy(m, spreadOf(resumes).metrics("resume"))
	maps.Copy(m, spreadOf(persists).metrics("persisted"))
	once := f.book.verify()
	maps.Copy(m, once.metrics())
	m["not_once"] = float64(once.Missing + once.Duplicated + once.Mismatched + once.Unpersisted)
	f.mu.Lock()
	m["degraded"], m["refused"] = float64(f.degraded), float64(f.refused)
	f.mu.Unlock()
	m["clinician_rewrites"] = float64(f.clin.Stats().Rewrites)
	switch {
	case err != nil:
	case f.failure() != nil:
		err = f.failure()
	case m["degraded"] > 0:
		err = fmt.Errorf("%.0f PERSISTED flagged degraded under --require-replica", m["degraded"])
	default:
		err = once.err()
	}
	run.Add(m, err)
	failoverChecks(res)
	failoverPlot(res, resumes, persists)
	res.Notes = append(res.Notes,
		"p50 and p99 are nearest-rank over the kills (no interpolation): with fewer than 100 kills the p99 is the slowest kill.",
		"Resumed is timed when the SDK reports the WELCOME (its Events channel); the relays' own clocks play no part.",
		"The client SDK drops a delivery whose seq it has already seen, so a duplicate here means the relays committed a message twice under different seqs.")
	return err
}

// killHomes kills the session's home kills times and returns, per kill,
// the time until both sides resumed and until the next PERSISTED.
func killHomes(ctx context.Context, e *Env, c *cluster, f *fitting, kills int) (resumes, persists []time.Duration, err error) {
	var restarted time.Time
	for k := range kills {
		done := step(e, fmt.Sprintf("failover: kill %d/%d", k+1, kills), 2*time.Second)
		home, epoch, err := settle(ctx, c, f, restarted)
		if err != nil {
			done()
			return resumes, persists, fmt.Errorf("before kill %d: %w", k+1, err)
		}
		victim, ok := c.byURL(home)
		if !ok {
			done()
			return resumes, persists, fmt.Errorf("kill %d: the session's home %s is none of the cluster's %v", k+1, home, c.URLs())
		}
		killed := time.Now()
		victim.kill()
		var tc, tp, tn time.Time
		err = waitUntil(ctx, failoverWait, func() bool {
			var okc, okp, okn bool
			tc, okc = f.resumedAt(f.clin, epoch, home)
			tp, okp = f.resumedAt(f.pat, epoch, home)
			if okc {
				tn, okn = f.persistedAfter(tc)
			}
			return okc && okp && okn
		})
		if err != nil {
			done()
			return resumes, persists, fmt.Errorf("kill %d of %s (epoch %d): not resumed with a PERSISTED: %w (%s)", k+1, victim.id, epoch, err, f.describe())
		}
		if tp.After(tc) {
			tc = tp
		}
		resumes = append(resumes, tc.Sub(killed))
		persists = append(persists, tn.Sub(killed))
		if err := victim.start(ctx); err != nil {
			done()
			return resumes, persists, fmt.Errorf("restarting %s after kill %d: %w", victim.id, k+1, err)
		}
		restarted = time.Now()
		done()
	}
	return resumes, persists, nil
}

// settle waits until the cluster is healthy — every relay answers
// /readyz, both clients are on one home at one epoch, and a PERSISTED
// arrived since restarted (under --require-replica: the home has a
// replica) — and then a random 100–500 ms more, so kills land anywhere in
// the commit cycle. It returns the home and its epoch.
func settle(ctx context.Context, c *cluster, f *fitting, restarted time.Time) (home string, epoch uint64, err error) {
	healthy := func() bool {
		_, _, one := f.home()
		_, fresh := f.persistedAfter(restarted)
		return one && fresh && c.ready(ctx)
	}
	deadline := time.Now().Add(failoverWait)
	for {
		if err := waitUntil(ctx, time.Until(deadline), healthy); err != nil {
			return "", 0, fmt.Errorf("cluster not healthy: %w (%s)", err, f.describe())
		}
		select {
		case <-time.After(100*time.Millisecond + rand.N(400*time.Millisecond)):
		case <-ctx.Done():
			return "", 0, ctx.Err()
		}
		if home, epoch, ok := f.home(); ok {
			return home, epoch, nil
		}
	}
}

// describe summarises both clients' last admissions, for errors.
func (f *fitting) describe() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, side := range []struct {
		name string
		ws   []welcomeAt
	}{{"clinician", f.welcomes[f.clin]}, {"patient", f.welcomes[f.pat]}} {
		fmt.Fprintf(&b, "%s admitted %d times", side.name, len(side.ws))
		if n := len(side.ws); n > 0 {
			w := side.ws[n-1]
			fmt.Fprintf(&b, ", last at %s by %s epoch %d", w.at.Format("15:04:05.000"), w.url, w.epoch)
		}
		b.WriteString("; ")
	}
	fmt.Fprintf(&b, "%d PERSISTED", len(f.persisted))
	return b.String()
}

func failoverChecks(res *bench.ScenarioResult) {
	res.Checks = append(res.Checks,
		bench.Check{Name: "failover p99: kill → both sides resumed on another relay", Metric: "resume_p99_us", Ours: "failover",
			Goal: bench.Goal{Op: "<=", Target: usOf(failoverGoal), Unit: "µs"}},
		bench.Check{Name: "kill → both sides resumed, p50", Metric: "resume_p50_us", Ours: "failover"},
		bench.Check{Name: "kill → both sides resumed, min", Metric: "resume_min_us", Ours: "failover"},
		bench.Check{Name: "kill → both sides resumed, max", Metric: "resume_max_us", Ours: "failover"},
		bench.Check{Name: "kill → next PERSISTED, p50", Metric: "persisted_p50_us", Ours: "failover"},
		bench.Check{Name: "kill → next PERSISTED, p99", Metric: "persisted_p99_us", Ours: "failover"},
		bench.Check{Name: "PERSISTED messages not delivered exactly once", Metric: "not_once", Ours: "failover",
			Goal: bench.Goal{Op: "==", Unit: "messages"}},
	)
}

// failoverPlot draws each kill's times.
func failoverPlot(res *bench.ScenarioResult, resumes, persists []time.Duration) {
	p := &bench.PlotSpec{File: res.Name + "-kills.png", Title: res.Name + ": time from SIGKILL of the home, per kill",
		Kind: "lines", XLabel: "kill", YLabel: "ms"}
	for _, s := range []struct {
		name string
		ds   []time.Duration
	}{{"both sides resumed", resumes}, {"next PERSISTED", persists}} {
		sr := bench.Series{Name: s.name}
		for i, d := range s.ds {
			sr.X = append(sr.X, float64(i+1))
			sr.Y = append(sr.Y, float64(d)/float64(time.Millisecond))
		}
		p.Series = append(p.Series, sr)
	}
	res.Plots = append(res.Plots, p)
}
