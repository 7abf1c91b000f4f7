package storage

import (
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// reason is why a Commit failed; logs and the commit_errors metric label
// share these values.
type reason string

const (
	reasonInvalid      reason = "invalid"       // bad session, key or meta name
	reasonSeqGap       reason = "seq_gap"       // ErrSeqGap
	reasonSeqConflict  reason = "seq_conflict"  // ErrSeqConflict
	reasonDuplicateKey reason = "duplicate_key" // ErrDuplicateKey
	reasonConcurrent   reason = "concurrent"    // ErrConcurrentCommit
	reasonClosed       reason = "closed"        // ErrClosed
	reasonFailed       reason = "failed"        // ErrFailed, or the commit that caused it
	reasonCanceled     reason = "canceled"      // ctx done before the write
	reasonIO           reason = "io"            // a read needed for validation failed
)

var allReasons = []reason{
	reasonInvalid, reasonSeqGap, reasonSeqConflict, reasonDuplicateKey,
	reasonConcurrent, reasonClosed, reasonFailed, reasonCanceled, reasonIO,
}

// metrics are the numbers the store itself owns; Pebble's are read at
// scrape time by collector.
type metrics struct {
	commitSeconds    prometheus.Histogram
	commitErrors     *prometheus.CounterVec
	backgroundErrors prometheus.Counter
	diskSlow         prometheus.Counter
	writeStalls      prometheus.Counter
	failed           prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "stapes_storage_commit_seconds",
			Help: "Duration of successful Store.Commit calls, including the WAL fsync.",
			// 100µs .. ~1.6s
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 15),
		}),
		commitErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stapes_storage_commit_errors_total",
			Help: "Store.Commit calls that returned an error, by reason.",
		}, []string{"reason"}),
		backgroundErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stapes_storage_background_errors_total",
			Help: "Errors in Pebble background work (flushes, compactions).",
		}),
		diskSlow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stapes_storage_disk_slow_total",
			Help: "Disk operations Pebble reported as slow.",
		}),
		writeStalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stapes_storage_write_stalls_total",
			Help: "Times Pebble stalled writes (too many memtables or L0 files).",
		}),
		failed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stapes_storage_failed",
			Help: "1 if the store has failed (a write could not be made durable) and must be reopened.",
		}),
	}
	for _, r := range allReasons {
		m.commitErrors.WithLabelValues(string(r))
	}
	return m
}

func (m *metrics) own() []prometheus.Collector {
	return []prometheus.Collector{m.commitSeconds, m.commitErrors, m.backgroundErrors, m.diskSlow, m.writeStalls, m.failed}
}

func (m *metrics) observeCommit(start time.Time, r reason) {
	if r == "" {
		m.commitSeconds.Observe(time.Since(start).Seconds())
		return
	}
	m.commitErrors.WithLabelValues(string(r)).Inc()
}

// Descriptions of Pebble's numbers, read from DB.Metrics at scrape time.
var (
	descWALBytesWritten = prometheus.NewDesc("stapes_storage_wal_written_bytes_total",
		"Physical bytes written to the WAL (including framing).", nil, nil)
	descWALBytesIn = prometheus.NewDesc("stapes_storage_wal_in_bytes_total",
		"Logical bytes of batches written to the WAL.", nil, nil)
	descWALFiles = prometheus.NewDesc("stapes_storage_wal_files",
		"Live WAL files.", nil, nil)
	descWALSize = prometheus.NewDesc("stapes_storage_wal_size_bytes",
		"Size of the live WAL files.", nil, nil)
	descWALFsync = prometheus.NewDesc("stapes_storage_wal_fsync_seconds",
		"Latency of WAL fsyncs (one fsync covers a group of commits).", nil, nil)
	descFlushes = prometheus.NewDesc("stapes_storage_flushes_total",
		"Memtable flushes.", nil, nil)
	descCompactions = prometheus.NewDesc("stapes_storage_compactions_total",
		"Compactions.", nil, nil)
	descCompactionDebt = prometheus.NewDesc("stapes_storage_compaction_debt_bytes",
		"Estimated bytes compaction still has to rewrite.", nil, nil)
	descMemTableSize = prometheus.NewDesc("stapes_storage_memtable_size_bytes",
		"Bytes allocated by memtables (mutable and queued for flush).", nil, nil)
	descMemTables = prometheus.NewDesc("stapes_storage_memtables",
		"Memtables (mutable and queued for flush).", nil, nil)
	descReadAmp = prometheus.NewDesc("stapes_storage_read_amplification",
		"Read amplification: L0 sublevels plus non-empty lower levels.", nil, nil)
	descDiskUsage = prometheus.NewDesc("stapes_storage_disk_usage_bytes",
		"Disk space used by the store (tables, WAL, manifests).", nil, nil)
	descLevelTables = prometheus.NewDesc("stapes_storage_level_tables",
		"Sstables per LSM level.", []string{"level"}, nil)
	descLevelSize = prometheus.NewDesc("stapes_storage_level_size_bytes",
		"Bytes of sstables per LSM level.", []string{"level"}, nil)
	descCacheSize = prometheus.NewDesc("stapes_storage_block_cache_size_bytes",
		"Bytes in use by the block cache.", nil, nil)
	descCacheHits = prometheus.NewDesc("stapes_storage_block_cache_hits_total",
		"Block cache hits.", nil, nil)
	descCacheMisses = prometheus.NewDesc("stapes_storage_block_cache_misses_total",
		"Block cache misses.", nil, nil)
)

var levelLabels = [...]string{"0", "1", "2", "3", "4", "5", "6"}

// fsyncBounds are the histogram bounds (seconds) exported for WAL fsync
// latency. Pebble's own histogram has 100 finer buckets in nanoseconds; for
// each bound here the collector exports Pebble's largest bucket bound not
// above it, converted to seconds, so every exported count is exact.
var fsyncBounds = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// collector exports the store's metrics and Pebble's internals.
type collector struct {
	s *Store
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.s.metrics.own() {
		m.Describe(ch)
	}
	for _, d := range []*prometheus.Desc{
		descWALBytesWritten, descWALBytesIn, descWALFiles, descWALSize, descWALFsync,
		descFlushes, descCompactions, descCompactionDebt, descMemTableSize, descMemTables,
		descReadAmp, descDiskUsage, descLevelTables, descLevelSize,
		descCacheSize, descCacheHits, descCacheMisses,
	} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.s.metrics.own() {
		m.Collect(ch)
	}
	if !c.s.enter() {
		return // closed: Pebble's numbers are gone
	}
	pm := c.s.db.Metrics()
	c.s.exit()

	emit := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		m, err := prometheus.NewConstMetric(d, t, v, labels...)
		if err != nil {
			m = prometheus.NewInvalidMetric(d, err)
		}
		ch <- m
	}
	emit(descWALBytesWritten, prometheus.CounterValue, float64(pm.WAL.BytesWritten))
	emit(descWALBytesIn, prometheus.CounterValue, float64(pm.WAL.BytesIn))
	emit(descWALFiles, prometheus.GaugeValue, float64(pm.WAL.Files))
	emit(descWALSize, prometheus.GaugeValue, float64(pm.WAL.Size))
	emit(descFlushes, prometheus.CounterValue, float64(pm.Flush.Count))
	emit(descCompactions, prometheus.CounterValue, float64(pm.Compact.Count))
	emit(descCompactionDebt, prometheus.GaugeValue, float64(pm.Compact.EstimatedDebt))
	emit(descMemTableSize, prometheus.GaugeValue, float64(pm.MemTable.Size))
	emit(descMemTables, prometheus.GaugeValue, float64(pm.MemTable.Count))
	emit(descReadAmp, prometheus.GaugeValue, float64(pm.ReadAmp()))
	emit(descDiskUsage, prometheus.GaugeValue, float64(pm.DiskSpaceUsage()))
	for i := range pm.Levels {
		if i >= len(levelLabels) {
			break
		}
		emit(descLevelTables, prometheus.GaugeValue, float64(pm.Levels[i].TablesCount), levelLabels[i])
		emit(descLevelSize, prometheus.GaugeValue, float64(pm.Levels[i].TablesSize), levelLabels[i])
	}
	emit(descCacheSize, prometheus.GaugeValue, float64(pm.BlockCache.Size))
	emit(descCacheHits, prometheus.CounterValue, float64(pm.BlockCache.Hits))
	emit(descCacheMisses, prometheus.CounterValue, float64(pm.BlockCache.Misses))
	if h := fsyncHistogram(pm); h != nil {
		ch <- h
	}
}

// fsyncHistogram converts Pebble's WAL fsync histogram (nanoseconds) into
// a seconds histogram over (a subset of) its own bucket bounds.
func fsyncHistogram(pm *pebble.Metrics) prometheus.Metric {
	if pm.LogWriter.FsyncLatency == nil {
		return nil
	}
	var m dto.Metric
	if err := pm.LogWriter.FsyncLatency.Write(&m); err != nil || m.Histogram == nil {
		return nil
	}
	h := m.Histogram
	const ns = float64(time.Second)
	buckets := make(map[float64]uint64, len(fsyncBounds))
	bi := 0
	src := h.GetBucket()
	for _, bound := range fsyncBounds {
		// Advance to Pebble's largest bucket bound <= bound.
		for bi+1 < len(src) && src[bi+1].GetUpperBound()/ns <= bound {
			bi++
		}
		if bi < len(src) && src[bi].GetUpperBound()/ns <= bound {
			buckets[src[bi].GetUpperBound()/ns] = src[bi].GetCumulativeCount()
		}
	}
	out, err := prometheus.NewConstHistogram(descWALFsync, h.GetSampleCount(), h.GetSampleSum()/ns, buckets)
	if err != nil {
		return prometheus.NewInvalidMetric(descWALFsync, err)
	}
	return out
}
