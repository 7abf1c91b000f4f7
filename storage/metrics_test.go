package storage

import (
	"context"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

// gatherValue returns the value of a counter, gauge or the sample count of a
// histogram named name, of the series whose label values joined by "," are
// labels ("" for none).
func gatherValue(t *testing.T, reg *prometheus.Registry, name, labels string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var lv []string
			for _, l := range m.GetLabel() {
				lv = append(lv, l.GetValue())
			}
			if strings.Join(lv, ",") != labels {
				continue
			}
			return metricValue(m)
		}
	}
	t.Fatalf("metric %s{%s} not gathered", name, labels)
	return 0
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func TestMetrics(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	opts := testOptions(nil)
	opts.Registerer = reg
	s := openStore(t, dir, opts)
	for seq := uint64(1); seq <= 5; seq++ {
		if err := s.Commit(ctx, "s", batch("s", seq, seq), nil); err != nil {
			t.Fatalf("Commit: %v", err)
		}
	}
	_ = s.Commit(ctx, "s", batch("s", 9, 9), nil) // gap

	cases := []struct {
		name, labels string
		min          float64
	}{
		{"stapes_storage_commit_seconds", "", 5},
		{"stapes_storage_commit_errors_total", "seq_gap", 1},
		{"stapes_storage_commit_errors_total", "io", 0},
		{"stapes_storage_wal_fsync_seconds", "", 5},
		{"stapes_storage_wal_written_bytes_total", "", 1},
		{"stapes_storage_wal_in_bytes_total", "", 1},
		{"stapes_storage_wal_files", "", 1},
		{"stapes_storage_memtable_size_bytes", "", 1},
		{"stapes_storage_memtables", "", 1},
		{"stapes_storage_disk_usage_bytes", "", 1},
		{"stapes_storage_read_amplification", "", 0},
		{"stapes_storage_compactions_total", "", 0},
		{"stapes_storage_flushes_total", "", 0},
		{"stapes_storage_level_tables", "0", 0},
		{"stapes_storage_level_size_bytes", "6", 0},
		{"stapes_storage_block_cache_hits_total", "", 0},
		{"stapes_storage_failed", "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name+"{"+tc.labels+"}", func(t *testing.T) {
			if got := gatherValue(t, reg, tc.name, tc.labels); got < tc.min {
				t.Fatalf("got %v, want at least %v", got, tc.min)
			}
		})
	}
	if got := gatherValue(t, reg, "stapes_storage_failed", ""); got != 0 {
		t.Errorf("stapes_storage_failed = %v, want 0", got)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatalf("Lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "stapes_storage_") {
			t.Errorf("metric %s lacks the stapes_storage_ prefix", mf.GetName())
		}
	}

	// Close unregisters, so the same registry takes a reopened store.
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s2 := openStore(t, dir, opts)
	if got := gatherValue(t, reg, "stapes_storage_commit_seconds", ""); got != 0 {
		t.Errorf("commit_seconds count after reopen = %v, want 0", got)
	}
	_ = s2
}

func TestMetricsNoRegisterer(t *testing.T) {
	s := openStore(t, "db", testOptions(vfs.NewMem()))
	if s.reg != nil {
		t.Fatalf("reg = %v, want nil", s.reg)
	}
}
