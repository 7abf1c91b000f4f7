package bench

import (
	"fmt"
	"math"
)

// Goal is a target for a figure: a ratio to a baseline, or an absolute
// value when the check has no baseline.
type Goal struct {
	// Op is "<=" (lower is better), ">=" (higher is better) or "=="
	// (the value must be exactly Target, e.g. 0 rows).
	Op string `json:"op"`
	// Target is the bound; 0 means no goal (the check is reported for
	// information only) unless Op is "==".
	Target float64 `json:"target"`
	// Unit of Target for an absolute goal (e.g. "µs", "KiB"); "×" for a ratio.
	Unit string `json:"unit"`
}

// Set reports whether g is a goal: a non-zero target, or an exact one.
func (g Goal) Set() bool { return g.Target != 0 || g.Op == "==" }

// Verdicts.
const (
	Met    = "met"
	NotMet = "not met"
	Info   = "info"
	NoData = "n/a"
)

// Check compares a metric of one run (ours) with the same metric of
// another (the baseline) repeat by repeat, or, without a baseline, checks
// the metric's own value.
type Check struct {
	Name     string `json:"name"`
	Metric   string `json:"metric"`
	Ours     string `json:"ours"`               // run id
	Baseline string `json:"baseline,omitempty"` // run id; "" for an absolute goal
	Goal     Goal   `json:"goal"`

	// Filled by Evaluate.
	OursValue Stat   `json:"ours_value"`
	BaseValue Stat   `json:"baseline_value"`
	Value     Stat   `json:"value"` // the ratio per repeat, or the absolute value
	Verdict   string `json:"verdict"`
	// Score is how far the median is from the goal: value/target for
	// "<=", target/value for ">="; for "==", 1 + the largest |value −
	// target| of any repeat / max(|target|, 1), since every repeat must
	// hit an exact goal. Above 1 is not met. NaN without data.
	Score float64 `json:"score"`
}

// Evaluate fills the values, verdict and score of every check of s from
// its runs' samples: ratio i is ours repeat i over baseline repeat i
// (both ran under the same conditions in the same repeat).
func (s *ScenarioResult) Evaluate() {
	for i := range s.Checks {
		c := &s.Checks[i]
		ours := s.Run(c.Ours)
		var ov, bv []float64
		if ours != nil {
			ov = ours.values(c.Metric)
		}
		c.OursValue = Summarize(ov)
		vals := ov
		if c.Baseline != "" {
			if base := s.Run(c.Baseline); base != nil {
				bv = base.values(c.Metric)
			}
			c.BaseValue = Summarize(bv)
			vals = ratios(ov, bv)
		}
		c.Value = Summarize(vals)
		c.Verdict, c.Score = judge(c.Goal, c.Value)
	}
}

func ratios(a, b []float64) []float64 {
	n := min(len(a), len(b))
	out := make([]float64, n)
	for i := range n {
		out[i] = math.NaN()
		if b[i] != 0 && !math.IsNaN(a[i]) && !math.IsNaN(b[i]) {
			out[i] = a[i] / b[i]
		}
	}
	return out
}

// judge returns the verdict and score of a value against a goal.
func judge(g Goal, v Stat) (string, float64) {
	if !v.Valid() {
		return NoData, math.NaN()
	}
	if !g.Set() {
		return Info, math.NaN()
	}
	var score float64
	switch g.Op {
	case "==":
		// Every repeat must hit the target, not just the median.
		score = 1 + max(math.Abs(v.Min-g.Target), math.Abs(v.Max-g.Target))/max(math.Abs(g.Target), 1)
		if v.Min == g.Target && v.Max == g.Target {
			score = 1
		}
	case ">=":
		score = math.Inf(1)
		if v.Median > 0 {
			score = g.Target / v.Median
		}
	default:
		score = v.Median / g.Target
	}
	if score <= 1 {
		return Met, score
	}
	return NotMet, score
}

// String renders a goal as "≤ 1.3×", "≤ 2000 µs", "≤ 100 ms" (µs from
// 10 ms up) or "= 0 rows".
func (g Goal) String() string {
	if !g.Set() {
		return "—"
	}
	op := "≤"
	switch g.Op {
	case ">=":
		op = "≥"
	case "==":
		op = "="
	}
	switch {
	case g.Unit == "×" || g.Unit == "":
		return fmt.Sprintf("%s %s×", op, trimFloat(g.Target))
	case g.Unit == "µs" && g.Target >= 1e6:
		return fmt.Sprintf("%s %s s", op, trimFloat(g.Target/1e6))
	case g.Unit == "µs" && g.Target >= 1e4:
		return fmt.Sprintf("%s %s ms", op, trimFloat(g.Target/1e3))
	}
	return fmt.Sprintf("%s %s %s", op, trimFloat(g.Target), g.Unit)
}

// Worse reports whether check a is further from its goal than b (a higher
// score); checks without a score are never worse.
func Worse(a, b Check) bool {
	if math.IsNaN(a.Score) || math.IsNaN(b.Score) {
		return false
	}
	return a.Score > b.Score
}
