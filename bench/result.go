package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Report is the result of one `stapes bench` invocation.
type Report struct {
	Started   time.Time         `json:"started"`
	Finished  time.Time         `json:"finished"`
	Command   string            `json:"command"`
	Machine   Machine           `json:"machine"`
	Repeat    int               `json:"repeat"`
	Settings  map[string]string `json:"settings,omitempty"`
	Scenarios []*ScenarioResult `json:"scenarios"`
}

// Machine describes where a report was made.
type Machine struct {
	CPUModel  string `json:"cpu_model"`
	NumCPU    int    `json:"nproc"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go"`
	OS        string `json:"os"`
	MemTotal  string `json:"mem_total,omitempty"`
}

// ScenarioResult is one scenario's runs, checks and plots.
type ScenarioResult struct {
	Name    string      `json:"name"`
	Title   string      `json:"title"`
	Summary string      `json:"summary"` // what it measures, how
	Notes   []string    `json:"notes,omitempty"`
	Runs    []*Run      `json:"runs"`
	Checks  []Check     `json:"checks"`
	Plots   []*PlotSpec `json:"plots,omitempty"`
	Error   string      `json:"error,omitempty"`
	Seconds float64     `json:"seconds"`
}

// Run is one measured configuration (a system under one load), with one
// sample per repeat.
type Run struct {
	ID      string   `json:"id"`
	System  string   `json:"system"`
	Load    string   `json:"load"`
	Ours    bool     `json:"ours,omitempty"`
	Samples []Sample `json:"samples"`
	// Summary is filled by Finish: every metric over the repeats.
	Summary map[string]Stat `json:"summary,omitempty"`
}

// Sample is one repeat of a run: named figures (units in the name:
// _us, _per_s, _pct, _kib...).
type Sample struct {
	Metrics map[string]float64 `json:"metrics"`
	Error   string             `json:"error,omitempty"`
}

// PlotSpec is a chart the report draws as File (PNG, in the report
// directory).
type PlotSpec struct {
	File   string `json:"file"`
	Title  string `json:"title"`
	Kind   string `json:"kind"` // "lines" or "bars"
	XLabel string `json:"x_label,omitempty"`
	YLabel string `json:"y_label"`
	LogY   bool   `json:"log_y,omitempty"`
	// Categories name the x positions (lines with categorical x, bars).
	Categories []string `json:"categories,omitempty"`
	Series     []Series `json:"series"`
}

// Series is one line (X, Y) or one bar group (Y per category).
type Series struct {
	Name string `json:"name"`
	X    Floats `json:"x,omitempty"`
	Y    Floats `json:"y"`
	// Color is a palette index plus one (0: by position); Dashed draws
	// the line dashed.
	Color  int  `json:"color,omitempty"`
	Dashed bool `json:"dashed,omitempty"`
}

// Floats is a list of numbers whose NaNs (no data) travel as JSON null.
type Floats []float64

// MarshalJSON writes NaN and infinities as null.
func (f Floats) MarshalJSON() ([]byte, error) {
	v := make([]any, len(f))
	for i, x := range f {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			continue
		}
		v[i] = x
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads null as NaN.
func (f *Floats) UnmarshalJSON(b []byte) error {
	var v []*float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = make(Floats, len(v))
	for i, p := range v {
		(*f)[i] = math.NaN()
		if p != nil {
			(*f)[i] = *p
		}
	}
	return nil
}

// Run returns the run with id, or nil.
func (s *ScenarioResult) Run(id string) *Run {
	for _, r := range s.Runs {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// AddRun returns the run with id, creating it.
func (s *ScenarioResult) AddRun(id, system, load string, ours bool) *Run {
	if r := s.Run(id); r != nil {
		return r
	}
	r := &Run{ID: id, System: system, Load: load, Ours: ours}
	s.Runs = append(s.Runs, r)
	return r
}

// Add appends one repeat's sample.
func (r *Run) Add(m map[string]float64, err error) {
	s := Sample{Metrics: map[string]float64{}}
	for k, v := range m {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			s.Metrics[k] = v
		}
	}
	if err != nil {
		s.Error = err.Error()
	}
	r.Samples = append(r.Samples, s)
}

// values returns metric per repeat, NaN where a repeat lacks it.
func (r *Run) values(metric string) []float64 {
	out := make([]float64, len(r.Samples))
	for i, s := range r.Samples {
		v, ok := s.Metrics[metric]
		if !ok || s.Error != "" {
			v = math.NaN()
		}
		out[i] = v
	}
	return out
}

// Stat summarises metric over the run's repeats.
func (r *Run) Stat(metric string) Stat { return Summarize(r.values(metric)) }

// Finish fills every run's Summary and evaluates the checks.
func (s *ScenarioResult) Finish() {
	for _, r := range s.Runs {
		names := map[string]bool{}
		for _, smp := range r.Samples {
			for k := range smp.Metrics {
				names[k] = true
			}
		}
		r.Summary = map[string]Stat{}
		for k := range names {
			if st := r.Stat(k); st.Valid() {
				r.Summary[k] = st
			}
		}
	}
	s.Evaluate()
}

// WriteJSON writes r to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode report: %w", err)
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadJSON reads a report written by WriteJSON.
func ReadJSON(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("bench: decode report %s: %w", path, err)
	}
	return &r, nil
}

// MarshalJSON writes NaN and infinities (no data) as null.
func (s Stat) MarshalJSON() ([]byte, error) {
	f := func(x float64) any {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
		return x
	}
	return json.Marshal(map[string]any{"min": f(s.Min), "median": f(s.Median), "max": f(s.Max), "n": s.N})
}

// UnmarshalJSON reads null as NaN.
func (s *Stat) UnmarshalJSON(b []byte) error {
	var v struct {
		Min, Median, Max *float64
		N                int
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	g := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	*s = Stat{Min: g(v.Min), Median: g(v.Median), Max: g(v.Max), N: v.N}
	return nil
}

// MarshalJSON writes a NaN score as null.
func (c Check) MarshalJSON() ([]byte, error) {
	type plain Check
	var score any = c.Score
	if math.IsNaN(c.Score) || math.IsInf(c.Score, 0) {
		score = nil
	}
	return json.Marshal(struct {
		plain
		Score any `json:"score"`
	}{plain(c), score})
}

// UnmarshalJSON reads a null score as NaN.
func (c *Check) UnmarshalJSON(b []byte) error {
	type plain Check
	var v struct {
		plain
		Score *float64 `json:"score"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*c = Check(v.plain)
	c.Score = math.NaN()
	if v.Score != nil {
		c.Score = *v.Score
	}
	return nil
}

// DescribeMachine reads the CPU model, kernel and memory from /proc.
func DescribeMachine() Machine {
	m := Machine{NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				m.MemTotal = strings.TrimSpace(v)
			}
		}
	}
	return m
}

// metricNames returns the sorted metric names present in runs.
func metricNames(runs []*Run) []string {
	seen := map[string]bool{}
	for _, r := range runs {
		for _, s := range r.Samples {
			for k := range s.Metrics {
				seen[k] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
