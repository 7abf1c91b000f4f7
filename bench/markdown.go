package bench

import (
	"fmt"
	"io"
	"strings"
)

// runColumns are the metrics shown in a scenario's run table, in order,
// with their headings; a column appears when some run has the metric.
var runColumns = []struct{ metric, head string }{
	{"p50_us", "p50"}, {"p90_us", "p90"}, {"p99_us", "p99"}, {"p999_us", "p99.9"}, {"max_us", "max"},
	{"throughput_per_s", "throughput"}, {"lost", "lost"},
	{"rss_per_conn_kib", "RSS/conn"}, {"conns", "conns"},
	{"lag_p99_us", "sender lag p99"},
}

// WriteMarkdown renders the report: the machine and command, a summary of
// every check, then each scenario with its checks, runs and plots.
func WriteMarkdown(w io.Writer, r *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# stapes benchmark report — %s\n\n", r.Started.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Command: `%s`\n", r.Command)
	fmt.Fprintf(&b, "- Machine: %d CPUs (`nproc`), %s, %s, Linux %s, %s\n", r.Machine.NumCPU, r.Machine.CPUModel,
		r.Machine.MemTotal, r.Machine.Kernel, r.Machine.GoVersion)
	fmt.Fprintf(&b, "- Repeats: %d; each figure is the median (min–max) over repeats; a ratio is taken per repeat (ours ÷ baseline measured in the same repeat) and the verdict uses its median.\n", r.Repeat)
	fmt.Fprintf(&b, "- Wall time: %s\n", r.Finished.Sub(r.Started).Round(1e9))
	for _, k := range sortedKeys(r.Settings) {
		fmt.Fprintf(&b, "- %s: %s\n", k, r.Settings[k])
	}
	b.WriteString("\n## Summary\n\n![how far each figure is from its goal](ratios.png)\n\n")
	b.WriteString("| scenario | figure | ours | baseline | ratio / value | goal | verdict |\n|---|---|---|---|---|---|---|\n")
	for _, s := range r.Scenarios {
		if s.Error != "" {
			fmt.Fprintf(&b, "| %s | **failed**: %s | | | | | %s |\n", s.Name, cell(s.Error), NoData)
		}
		for _, c := range s.Checks {
			base := "—"
			if c.Baseline != "" {
				base = FormatValue(c.Metric, c.BaseValue.Median)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", s.Name, cell(c.Name),
				FormatValue(c.Metric, c.OursValue.Median), base, checkValue(c), c.Goal, verdictCell(c.Verdict))
		}
	}
	for _, s := range r.Scenarios {
		writeScenario(&b, s)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeScenario(b *strings.Builder, s *ScenarioResult) {
	fmt.Fprintf(b, "\n## %s — %s\n\n%s\n\n", s.Name, s.Title, s.Summary)
	if s.Error != "" {
		fmt.Fprintf(b, "**The scenario failed:** %s\n\n", s.Error)
	}
	if len(s.Checks) > 0 {
		b.WriteString("| figure | ours | baseline | ratio / value | goal | verdict |\n|---|---|---|---|---|---|\n")
		for _, c := range s.Checks {
			base := "—"
			if c.Baseline != "" {
				base = formatStat(c.Metric, c.BaseValue)
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", cell(c.Name), formatStat(c.Metric, c.OursValue),
				base, checkValue(c), c.Goal, verdictCell(c.Verdict))
		}
		b.WriteString("\n")
	}
	var cols []struct{ metric, head string }
	for _, col := range runColumns {
		for _, r := range s.Runs {
			if _, ok := r.Summary[col.metric]; ok {
				cols = append(cols, col)
				break
			}
		}
	}
	cpus := cpuColumns(s.Runs)
	if len(s.Runs) > 0 {
		b.WriteString("| run | system | load |")
		for _, c := range cols {
			fmt.Fprintf(b, " %s |", c.head)
		}
		for _, c := range cpus {
			fmt.Fprintf(b, " %s |", strings.ReplaceAll(strings.TrimPrefix(c, "cpu_"), "_", " "))
		}
		b.WriteString("\n|---|---|---|" + strings.Repeat("---|", len(cols)+len(cpus)) + "\n")
		for _, r := range s.Runs {
			fmt.Fprintf(b, "| %s | %s | %s |", r.ID, cell(r.System), cell(r.Load))
			for _, c := range cols {
				fmt.Fprintf(b, " %s |", formatSummary(r, c.metric))
			}
			for _, c := range cpus {
				fmt.Fprintf(b, " %s |", formatSummary(r, c))
			}
			b.WriteString("\n")
			for i, smp := range r.Samples {
				if smp.Error != "" {
					fmt.Fprintf(b, "\n> %s repeat %d failed: %s\n", r.ID, i+1, cell(smp.Error))
				}
			}
		}
		b.WriteString("\nCPU columns: percent of one core used by each process during the run, and CPU time per operation (from /proc/<pid>/stat).\n\n")
	}
	for _, p := range s.Plots {
		fmt.Fprintf(b, "![%s](%s)\n\n", p.Title, p.File)
	}
	for _, n := range s.Notes {
		fmt.Fprintf(b, "- %s\n", n)
	}
}

func formatSummary(r *Run, metric string) string {
	st, ok := r.Summary[metric]
	if !ok {
		return ""
	}
	return formatStat(metric, st)
}

// cpuColumns lists the per-process CPU metrics present in runs.
func cpuColumns(runs []*Run) []string {
	var out []string
	for _, m := range metricNames(runs) {
		if strings.HasPrefix(m, "cpu_") {
			out = append(out, m)
		}
	}
	return out
}

func verdictCell(v string) string {
	switch v {
	case Met:
		return "✅ met"
	case NotMet:
		return "❌ **not met**"
	}
	return v
}

func cell(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	return strings.ReplaceAll(s, "\n", " ")
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
