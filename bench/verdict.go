package bench

import (
	"fmt"
	"math"
)

// Goal is a target for a figure: a ratio to a baseline, or an absolute
// value when the check has no baseline.
type Goal struct {
	// Op is "<=" (lower is better) or ">=" (higher is better).
	Op string `json:"op"`
	// Target is the bound; 0 means no goal: the check is reported for
	// information only.
	Target float64 `json:"target"`
	// Unit of Target for an absolute goal (e.g. "µs", "KiB"); "×" for a ratio.
	Unit string `json:"unit"`
}

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
	// "<=", target/value for ">="; above 1 is not met. NaN without data.
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
	if g.Target == 0 {
		return Info, math.NaN()
	}
	var score float64
	switch g.Op {
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

// String renders a goal as "≤ 1.3×" or "≤ 2000 µs".
func (g Goal) String() string {
	if g.Target == 0 {
		return "—"
	}
	op := "≤"
	if g.Op == ">=" {
		op = "≥"
	}
	if g.Unit == "×" || g.Unit == "" {
		return fmt.Sprintf("%s %s×", op, trimFloat(g.Target))
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
