package bench

import (
	"math"
	"slices"
)

// Stat is the spread of one figure over repeats.
type Stat struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// Summarize returns the min, median and max of xs, ignoring NaNs. The
// median of an even count is the mean of the two middle values.
func Summarize(xs []float64) Stat {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Stat{Min: math.NaN(), Median: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return Stat{Min: v[0], Median: med, Max: v[n-1], N: n}
}

// Valid reports whether the stat has at least one value.
func (s Stat) Valid() bool { return s.N > 0 }
