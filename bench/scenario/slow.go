package scenario

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/stapes-relay/stapes/bench"
)

// normalPrefix names the normal relay's twin of a slow-relay check.
const normalPrefix = "normal relay: "

// slowChecks adds, for every check of the slowed relay ("relay-N"), its
// twin for the normal relay ("normal-N") against the same baselines, and
// the direct slowed/normal ratios.
func slowChecks(res *bench.ScenarioResult, sessions []int) {
	n := len(res.Checks)
	for _, c := range res.Checks[:n] {
		twin := c
		twin.Name = normalPrefix + c.Name
		twin.Ours = "normal-" + strings.TrimPrefix(c.Ours, "relay-")
		res.Checks = append(res.Checks, twin)
	}
	for _, s := range sessions {
		ns := strconv.Itoa(s)
		res.Checks = append(res.Checks,
			bench.Check{Name: "slowed vs normal relay, p50, " + ns + " session(s)", Metric: "p50_us", Ours: "relay-" + ns, Baseline: "normal-" + ns},
			bench.Check{Name: "slowed vs normal relay, commits/s, " + ns + " session(s)", Metric: "throughput_per_s", Ours: "relay-" + ns, Baseline: "normal-" + ns})
	}
}

// compareSlowRelay adds to slow-relay's notes, check by check, whether the
// slowed relay came out worse than the normal one in the same repeats, and
// returns how many of how many figures did.
func compareSlowRelay(results []*bench.ScenarioResult) (worse, total int) {
	for _, slow := range results {
		if slow.Name != "slow-relay" {
			continue
		}
		for _, sc := range slow.Checks {
			nc, ok := findCheck(slow, normalPrefix+sc.Name)
			if !ok || !sc.Value.Valid() || !nc.Value.Valid() {
				continue
			}
			total++
			w := SlowerThan(sc, nc)
			if w {
				worse++
			}
			verdict := ""
			if sc.Goal.Target != 0 {
				verdict = fmt.Sprintf(" (verdict %s, score %.2f vs %s, %.2f)", sc.Verdict, sc.Score, nc.Verdict, nc.Score)
			}
			slow.Notes = append(slow.Notes, fmt.Sprintf("%s: slowed %s vs normal %s%s — %s", sc.Name, describe(sc), describe(nc),
				verdict, map[bool]string{true: "worse, as it must be", false: "NOT worse"}[w]))
		}
		slow.Notes = append(slow.Notes, fmt.Sprintf("The harness saw the slowed relay as worse in %d of %d figures.", worse, total))
	}
	return worse, total
}

func findCheck(s *bench.ScenarioResult, name string) (bench.Check, bool) {
	for _, c := range s.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return bench.Check{}, false
}

// SlowerThan reports whether check a (slowed relay) is worse than b (the
// same check against the normal relay): a higher score where the check
// has a goal; otherwise a higher latency or lower throughput ratio.
func SlowerThan(a, b bench.Check) bool {
	if a.Goal.Target != 0 {
		return bench.Worse(a, b)
	}
	if a.Metric == "throughput_per_s" {
		return a.Value.Median < b.Value.Median
	}
	return a.Value.Median > b.Value.Median
}

func describe(c bench.Check) string {
	if c.Baseline != "" {
		return fmt.Sprintf("%.2f×", c.Value.Median)
	}
	return bench.FormatValue(c.Metric, c.Value.Median)
}
