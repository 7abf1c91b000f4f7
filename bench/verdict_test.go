package bench

import (
	"math"
	"testing"
)

func scenarioWith(ours, base []float64, metric string, checks ...Check) *ScenarioResult {
	s := &ScenarioResult{Name: "t"}
	o := s.AddRun("ours", "relayd", "load", true)
	for _, v := range ours {
		o.Add(map[string]float64{metric: v}, nil)
	}
	b := s.AddRun("base", "forwarder", "load", false)
	for _, v := range base {
		b.Add(map[string]float64{metric: v}, nil)
	}
	s.Checks = checks
	s.Finish()
	return s
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want Stat
	}{
		{"odd", []float64{3, 1, 2}, Stat{1, 2, 3, 3}},
		{"even", []float64{4, 1, 3, 2}, Stat{1, 2.5, 4, 4}},
		{"one", []float64{7}, Stat{7, 7, 7, 1}},
		{"nan skipped", []float64{math.NaN(), 5, 1}, Stat{1, 3, 5, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Summarize(tc.in); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if Summarize(nil).Valid() {
		t.Error("empty input: want invalid stat")
	}
}

func TestChecksRatioAndVerdict(t *testing.T) {
	tests := []struct {
		name        string
		ours, base  []float64
		goal        Goal
		baseline    string
		wantMedian  float64
		wantMin     float64
		wantVerdict string
		wantScore   float64
	}{
		{"ratio met", []float64{120, 130, 110}, []float64{100, 100, 100}, Goal{"<=", 1.3, "×"}, "base", 1.2, 1.1, Met, 1.2 / 1.3},
		{"ratio not met", []float64{200, 150, 160}, []float64{100, 100, 100}, Goal{"<=", 1.5, "×"}, "base", 1.6, 1.5, NotMet, 1.6 / 1.5},
		{"per-repeat pairing", []float64{100, 200, 400}, []float64{100, 200, 400}, Goal{"<=", 1, "×"}, "base", 1, 1, Met, 1},
		{"higher is better met", []float64{95, 90, 99}, []float64{100, 100, 100}, Goal{">=", 0.9, "×"}, "base", 0.95, 0.9, Met, 0.9 / 0.95},
		{"higher is better not met", []float64{50, 60, 70}, []float64{100, 100, 100}, Goal{">=", 0.9, "×"}, "base", 0.6, 0.5, NotMet, 0.9 / 0.6},
		{"absolute met", []float64{1500, 1900, 1700}, nil, Goal{"<=", 2000, "µs"}, "", 1700, 1500, Met, 0.85},
		{"absolute not met", []float64{2500, 2100, 3000}, nil, Goal{"<=", 2000, "µs"}, "", 2500, 2100, NotMet, 1.25},
		{"exact met", []float64{0, 0, 0}, nil, Goal{"==", 0, "rows"}, "", 0, 0, Met, 1},
		{"exact not met", []float64{0, 3, 5}, nil, Goal{"==", 0, "rows"}, "", 3, 0, NotMet, 6},
		{"exact: every repeat must hit it", []float64{0, 0, 2}, nil, Goal{"==", 0, "rows"}, "", 0, 0, NotMet, 3},
		{"info only", []float64{1, 2, 3}, []float64{1, 1, 1}, Goal{}, "base", 2, 1, Info, math.NaN()},
		{"no data", nil, []float64{1}, Goal{"<=", 1, "×"}, "base", math.NaN(), math.NaN(), NoData, math.NaN()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := scenarioWith(tc.ours, tc.base, "p99_us", Check{Name: tc.name, Metric: "p99_us", Ours: "ours", Baseline: tc.baseline, Goal: tc.goal})
			c := s.Checks[0]
			if !approx(c.Value.Median, tc.wantMedian) || !approx(c.Value.Min, tc.wantMin) {
				t.Errorf("value: got median %v min %v, want %v %v", c.Value.Median, c.Value.Min, tc.wantMedian, tc.wantMin)
			}
			if c.Verdict != tc.wantVerdict {
				t.Errorf("verdict: got %q, want %q", c.Verdict, tc.wantVerdict)
			}
			if !approx(c.Score, tc.wantScore) {
				t.Errorf("score: got %v, want %v", c.Score, tc.wantScore)
			}
		})
	}
}

func approx(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) < 1e-9
}

func TestWorse(t *testing.T) {
	good := scenarioWith([]float64{110}, []float64{100}, "p99_us", Check{Metric: "p99_us", Ours: "ours", Baseline: "base", Goal: Goal{"<=", 1.5, "×"}}).Checks[0]
	bad := scenarioWith([]float64{400}, []float64{100}, "p99_us", Check{Metric: "p99_us", Ours: "ours", Baseline: "base", Goal: Goal{"<=", 1.5, "×"}}).Checks[0]
	if !Worse(bad, good) || Worse(good, bad) {
		t.Errorf("Worse(bad %v, good %v) wrong", bad.Score, good.Score)
	}
	info := scenarioWith([]float64{1}, []float64{1}, "p99_us", Check{Metric: "p99_us", Ours: "ours", Baseline: "base"}).Checks[0]
	if Worse(info, good) || Worse(good, info) {
		t.Error("a check without a goal is never worse or better")
	}
}

func TestGoalString(t *testing.T) {
	tests := []struct {
		g    Goal
		want string
	}{
		{Goal{"<=", 1.3, "×"}, "≤ 1.3×"},
		{Goal{">=", 0.9, "×"}, "≥ 0.9×"},
		{Goal{"<=", 2000, "µs"}, "≤ 2000 µs"},
		{Goal{"==", 0, "rows"}, "= 0 rows"},
		{Goal{"<=", 100_000, "µs"}, "≤ 100 ms"},
		{Goal{"<=", 1_000_000, "µs"}, "≤ 1 s"},
		{Goal{}, "—"},
	}
	for _, tc := range tests {
		if got := tc.g.String(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}
