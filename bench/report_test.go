package bench

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleReport() *Report {
	r := &Report{
		Started: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), Finished: time.Date(2026, 3, 1, 10, 5, 0, 0, time.UTC),
		Command: "stapes bench", Machine: DescribeMachine(), Repeat: 2,
	}
	hop := &ScenarioResult{Name: "relay-hop-ws", Title: "relay hop", Summary: "round trips"}
	o := hop.AddRun("ours-1k", "relayd", "open 1000/s", true)
	b := hop.AddRun("fwd-1k", "io.Copy forwarder", "open 1000/s", false)
	for i := range 2 {
		o.Add(map[string]float64{"p50_us": 120 + float64(i), "p99_us": 300, "throughput_per_s": 1000, "cpu_relayd_pct": 20}, nil)
		b.Add(map[string]float64{"p50_us": 100, "p99_us": 150, "throughput_per_s": 1000, "cpu_forwarder_pct": 8}, nil)
	}
	hop.Checks = []Check{
		{Name: "p50 vs forwarder", Metric: "p50_us", Ours: "ours-1k", Baseline: "fwd-1k", Goal: Goal{"<=", 1.3, "×"}},
		{Name: "p99 vs forwarder", Metric: "p99_us", Ours: "ours-1k", Baseline: "fwd-1k", Goal: Goal{"<=", 1.5, "×"}},
		{Name: "p99 vs echo", Metric: "p99_us", Ours: "ours-1k", Baseline: "fwd-1k"},
	}
	hop.Plots = []*PlotSpec{{File: "relay-hop-ws-latency.png", Title: "latency", Kind: "lines", YLabel: "us", LogY: true,
		Categories: []string{"p50", "p99"}, Series: []Series{{Name: "relayd", Y: []float64{120, 300}}, {Name: "fwd", Y: []float64{100, 150}}}}}
	hop.Finish()
	mem := &ScenarioResult{Name: "idle-memory", Title: "idle", Summary: "rss", Error: "relayd exited"}
	mem.Plots = []*PlotSpec{{File: "idle-memory.png", Title: "rss per conn", Kind: "bars", YLabel: "KiB",
		Categories: []string{"relayd", "gorilla"}, Series: []Series{{Name: "KiB/conn", Y: []float64{20, math.NaN()}}}}}
	mem.Finish()
	r.Scenarios = []*ScenarioResult{hop, mem}
	return r
}

func TestReportJSONRoundTrip(t *testing.T) {
	r := sampleReport()
	path := filepath.Join(t.TempDir(), JSONFile)
	if err := r.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Started.Equal(r.Started) || got.Command != r.Command || got.Machine != r.Machine || len(got.Scenarios) != 2 {
		t.Fatalf("header differs: got %+v", got)
	}
	gs, ws := got.Scenarios[0], r.Scenarios[0]
	if !reflect.DeepEqual(gs.Runs, ws.Runs) {
		t.Errorf("runs differ:\ngot  %+v\nwant %+v", gs.Runs, ws.Runs)
	}
	for i := range ws.Checks {
		g, w := gs.Checks[i], ws.Checks[i]
		if g.Name != w.Name || g.Verdict != w.Verdict || !approx(g.Score, w.Score) || g.Value.N != w.Value.N || !approx(g.Value.Median, w.Value.Median) {
			t.Errorf("check %d: got %+v, want %+v", i, g, w)
		}
	}
	if got.Scenarios[1].Error != "relayd exited" {
		t.Errorf("scenario error lost: %q", got.Scenarios[1].Error)
	}
	if got.Scenarios[1].Plots[0].Series[0].Y[1] == 0 {
		t.Error("NaN plot value did not survive as NaN or null")
	}
}

func TestMarkdownHasEveryScenarioAndVerdict(t *testing.T) {
	r := sampleReport()
	var b bytes.Buffer
	if err := WriteMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"## relay-hop-ws", "## idle-memory", "✅ met", "❌ **not met**", "| info |",
		"relayd exited", "![latency](relay-hop-ws-latency.png)", "ratios.png", "p50 vs forwarder",
		"≤ 1.3×", "1.21×", "stapes bench", r.Machine.CPUModel,
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
}

func TestWriteReportPNGsDecode(t *testing.T) {
	r := sampleReport()
	dir := t.TempDir()
	if err := WriteReport(dir, r); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"relay-hop-ws-latency.png", "idle-memory.png", RatiosPlot} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if b := img.Bounds(); b.Dx() < 300 || b.Dy() < 100 {
			t.Errorf("%s: %v is too small to read", name, b)
		}
	}
	for _, name := range []string{JSONFile, MarkdownFile} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: missing or empty (%v)", name, err)
		}
	}
}

func TestReadProcSelf(t *testing.T) {
	st, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.RSSBytes <= 0 || st.Threads <= 0 {
		t.Errorf("self: rss %d threads %d, want > 0", st.RSSBytes, st.Threads)
	}
	u := StartUsage(Self(), Proc{Name: "gone", Pid: 1 << 30})
	x := 0
	for i := range 20_000_000 {
		x += i
	}
	_ = x
	m := u.Metrics(1000)
	if _, ok := m["cpu_harness_pct"]; !ok {
		t.Errorf("metrics %v lack cpu_harness_pct", m)
	}
	if _, ok := m["rss_gone_kib"]; ok {
		t.Error("a process that does not exist was sampled")
	}
}
