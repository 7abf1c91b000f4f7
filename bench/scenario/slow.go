package scenario

import (
	"fmt"

	"github.com/stapes-relay/stapes/bench"
)

// compareSlowRelay adds to slow-relay's notes, check by check, whether it
// came out worse than durable-commit in the same run.
func compareSlowRelay(results []*bench.ScenarioResult) {
	var normal, slow *bench.ScenarioResult
	for _, r := range results {
		switch r.Name {
		case "durable-commit":
			normal = r
		case "slow-relay":
			slow = r
		}
	}
	if normal == nil || slow == nil {
		return
	}
	worse, total := 0, 0
	for _, sc := range slow.Checks {
		for _, nc := range normal.Checks {
			if nc.Name != sc.Name || !sc.Value.Valid() || !nc.Value.Valid() {
				continue
			}
			total++
			w := SlowerThan(sc, nc)
			if w {
				worse++
			}
			slow.Notes = append(slow.Notes, fmt.Sprintf("%s: %s with the slowed relay vs %s normally — %s",
				sc.Name, describe(sc), describe(nc), map[bool]string{true: "worse, as it must be", false: "NOT worse"}[w]))
		}
	}
	slow.Notes = append(slow.Notes, fmt.Sprintf("The harness saw the slowed relay as worse in %d of %d comparable figures.", worse, total))
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
