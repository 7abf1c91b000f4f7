package bench

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// trimFloat formats v with up to 3 significant decimals, no trailing zeros.
func trimFloat(v float64) string {
	s := strconv.FormatFloat(v, 'f', 3, 64)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// FormatValue renders a metric value with the unit its name implies.
func FormatValue(metric string, v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	switch {
	case strings.HasSuffix(metric, "_us"):
		return formatMicros(v)
	case strings.HasSuffix(metric, "_per_s"):
		return formatCount(v) + "/s"
	case strings.HasSuffix(metric, "_pct"):
		return fmt.Sprintf("%.0f%%", v)
	case strings.HasSuffix(metric, "_kib"):
		if v >= 10*1024 {
			return fmt.Sprintf("%.1f MiB", v/1024)
		}
		return fmt.Sprintf("%.1f KiB", v)
	case strings.HasSuffix(metric, "_us_per_op"):
		return fmt.Sprintf("%.1f µs", v)
	}
	return formatCount(v)
}

func formatMicros(us float64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%.2f s", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.2f ms", us/1e3)
	default:
		return fmt.Sprintf("%.0f µs", us)
	}
}

func formatCount(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case a == math.Trunc(a):
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// formatStat renders "median (min–max)", or just the median for one repeat.
func formatStat(metric string, s Stat) string {
	if !s.Valid() {
		return "—"
	}
	med := FormatValue(metric, s.Median)
	if s.N == 1 || s.Min == s.Max {
		return med
	}
	return fmt.Sprintf("%s (%s–%s)", med, FormatValue(metric, s.Min), FormatValue(metric, s.Max))
}

// formatRatio renders a ratio stat as "1.23× (1.10–1.40)".
func formatRatio(s Stat) string {
	if !s.Valid() {
		return "—"
	}
	if s.N == 1 || s.Min == s.Max {
		return fmt.Sprintf("%.2f×", s.Median)
	}
	return fmt.Sprintf("%.2f× (%.2f–%.2f)", s.Median, s.Min, s.Max)
}

// checkValue renders a check's value: a ratio, or the absolute figure.
func checkValue(c Check) string {
	if c.Baseline != "" {
		return formatRatio(c.Value)
	}
	return formatStat(c.Metric, c.Value)
}
