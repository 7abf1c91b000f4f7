package bench

import (
	"fmt"
	"image"
	"image/color"
	"os"
	"path/filepath"

	"github.com/stapes-relay/stapes/bench/chart"
)

// Report file names inside a report directory.
const (
	JSONFile     = "results.json"
	MarkdownFile = "report.md"
	RatiosPlot   = "ratios.png"
)

// WriteReport writes results.json, report.md, every scenario's plots and
// the ratios plot into dir (created if missing).
func WriteReport(dir string, r *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: report dir: %w", err)
	}
	for _, s := range r.Scenarios {
		for _, p := range s.Plots {
			if err := writePNG(filepath.Join(dir, p.File), p.Draw()); err != nil {
				return err
			}
		}
	}
	if err := writePNG(filepath.Join(dir, RatiosPlot), ScoresChart(r)); err != nil {
		return err
	}
	if err := r.WriteJSON(filepath.Join(dir, JSONFile)); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, MarkdownFile))
	if err != nil {
		return fmt.Errorf("bench: report: %w", err)
	}
	if err := WriteMarkdown(f, r); err != nil {
		f.Close()
		return fmt.Errorf("bench: report: %w", err)
	}
	return f.Close()
}

func writePNG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	if err := chart.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Draw renders the plot.
func (p *PlotSpec) Draw() image.Image {
	lines := make([]chart.Line, len(p.Series))
	for i, s := range p.Series {
		lines[i] = chart.Line{Name: s.Name, X: s.X, Y: s.Y, Color: s.Color, Dashed: s.Dashed}
	}
	if p.Kind == "bars" {
		return (&chart.Bars{Title: p.Title, YLabel: p.YLabel, LogY: p.LogY, Categories: p.Categories, Series: lines}).Draw()
	}
	return (&chart.Lines{Title: p.Title, XLabel: p.XLabel, YLabel: p.YLabel, LogY: p.LogY,
		LogX: p.Kind == "lines-logx", Categories: p.Categories, Series: lines}).Draw()
}

// ScoresChart draws every goal check of r as a bar of its score (value ÷
// goal, 1 = exactly on the goal; green met, red not met).
func ScoresChart(r *Report) image.Image {
	sc := &chart.Scores{Title: "Distance to goal: median value / goal (<= 1 is met)", XLabel: "score (1 = goal)", Ref: 1}
	for _, s := range r.Scenarios {
		for _, c := range s.Checks {
			if !c.Goal.Set() {
				continue
			}
			sc.Labels = append(sc.Labels, s.Name+": "+c.Name)
			sc.Values = append(sc.Values, c.Score)
			var col color.RGBA
			switch c.Verdict {
			case Met:
				col = chart.Green
			case NotMet:
				col = chart.Red
			default:
				col = chart.Grey
			}
			sc.Colors = append(sc.Colors, col)
		}
	}
	return sc.Draw()
}
