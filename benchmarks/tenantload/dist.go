package main

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Zipf picks a rank from 1 to N with probability proportional to k^-s, by
// inverting its cumulative distribution (a table of N sums and a binary
// search): exact for any s > 0, where math/rand's Zipf needs s > 1.
type Zipf struct {
	cdf []float64 // cdf[k-1] = P(rank <= k)
}

// NewZipf returns the law over ranks 1..n with exponent s.
func NewZipf(n int, s float64) (*Zipf, error) {
	if n < 1 || !(s > 0) {
		return nil, fmt.Errorf("zipf: need n >= 1 and s > 0, not n=%d s=%g", n, s)
	}
	cdf := make([]float64, n)
	sum := 0.0
	for k := 1; k <= n; k++ {
		sum += math.Pow(float64(k), -s)
		cdf[k-1] = sum
	}
	for i := range cdf {
		cdf[i] /= sum
	}
	cdf[n-1] = 1
	return &Zipf{cdf: cdf}, nil
}

// P is the probability of rank k.
func (z *Zipf) P(k int) float64 {
	if k == 1 {
		return z.cdf[0]
	}
	return z.cdf[k-1] - z.cdf[k-2]
}

// Rank maps u, uniform in [0, 1), to a rank.
func (z *Zipf) Rank(u float64) int {
	return sort.SearchFloat64s(z.cdf, u) + 1
}

// Arrivals spaces the planned start times of requests at a mean rate.
type Arrivals struct {
	poisson bool
	mean    float64 // seconds between arrivals
}

// NewArrivals returns Poisson (exponential gaps) or uniform (equal gaps)
// arrivals at rate per second.
func NewArrivals(kind string, rate float64) (*Arrivals, error) {
	if !(rate > 0) {
		return nil, fmt.Errorf("arrivals: rate must be above 0, not %g", rate)
	}
	switch kind {
	case "poisson", "uniform":
		return &Arrivals{poisson: kind == "poisson", mean: 1 / rate}, nil
	}
	return nil, fmt.Errorf("arrivals: %q is neither poisson nor uniform", kind)
}

// Next is the gap to the next arrival; u is uniform in [0, 1).
func (a *Arrivals) Next(u float64) (gap time.Duration) {
	g := a.mean
	if a.poisson {
		g = -math.Log(1-u) * a.mean
	}
	return time.Duration(g * 1e9)
}
