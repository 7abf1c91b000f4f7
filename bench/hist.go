package bench

import (
	"math"
	"math/bits"
	"time"
)

// Histogram bucket layout (log-linear, as HdrHistogram): values below
// subCount nanoseconds have a bucket each; above, every power of two is
// split into halfCount equal buckets, so a bucket is never wider than
// 1/halfCount of its lower bound (0.2 %). Values are clamped to maxValue
// (about 18 minutes); the exact maximum is kept on the side.
const (
	subBits   = 10
	subCount  = 1 << subBits
	halfCount = subCount / 2
	maxBits   = 40
	maxValue  = 1<<maxBits - 1
	numCounts = subCount + (maxBits-subBits)*halfCount
)

// Histogram records durations with bounded relative error. The zero value
// is not ready: use NewHistogram. It is not safe for concurrent use.
type Histogram struct {
	counts   []uint64
	n        uint64
	sum      float64 // nanoseconds
	min, max int64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{counts: make([]uint64, numCounts), min: math.MaxInt64}
}

func bucketOf(v int64) int {
	if v < subCount {
		return int(v)
	}
	if v > maxValue {
		v = maxValue
	}
	shift := bits.Len64(uint64(v)) - subBits
	top := v >> shift
	return subCount + (shift-1)*halfCount + int(top-halfCount)
}

// bucketBounds returns the smallest and largest value of bucket i.
func bucketBounds(i int) (lo, hi int64) {
	if i < subCount {
		return int64(i), int64(i)
	}
	k := i - subCount
	shift := k/halfCount + 1
	top := int64(k%halfCount + halfCount)
	lo = top << shift
	return lo, lo + 1<<shift - 1
}

// Record adds one duration; negative durations count as 0.
func (h *Histogram) Record(d time.Duration) { h.RecordValue(int64(d)) }

// RecordValue adds one value in nanoseconds.
func (h *Histogram) RecordValue(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += float64(v)
	h.min = min(h.min, v)
	h.max = max(h.max, v)
}

// Merge adds every value recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Min is the smallest recorded value (0 when empty).
func (h *Histogram) Min() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.min)
}

// Max is the largest recorded value, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean is the arithmetic mean (0 when empty).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the nearest-rank q-quantile (0 < q ≤ 1): the value of
// rank ceil(q·n), reported as the upper bound of its bucket, never above
// Max nor below Min. It is within 0.2 % above the exact value.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := bucketBounds(i)
			return time.Duration(min(max(hi, h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

// Percentiles are the figures reported for one latency distribution.
type Percentiles struct {
	Count                    uint64
	P50, P90, P99, P999, Max time.Duration
	Mean                     time.Duration
}

// Percentiles summarises h.
func (h *Histogram) Percentiles() Percentiles {
	return Percentiles{
		Count: h.n, P50: h.Quantile(0.50), P90: h.Quantile(0.90), P99: h.Quantile(0.99),
		P999: h.Quantile(0.999), Max: h.Max(), Mean: h.Mean(),
	}
}

// Metrics returns the percentiles as report metrics in microseconds, each
// name prefixed with prefix (e.g. "" gives "p50_us").
func (p Percentiles) Metrics(prefix string) map[string]float64 {
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	return map[string]float64{
		prefix + "p50_us": us(p.P50), prefix + "p90_us": us(p.P90), prefix + "p99_us": us(p.P99),
		prefix + "p999_us": us(p.P999), prefix + "max_us": us(p.Max), prefix + "mean_us": us(p.Mean),
	}
}
