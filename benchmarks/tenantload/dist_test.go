package main

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestZipf draws ranks and checks their frequencies against k^-s: the
// hottest rank's share, the ratio of ranks 1 and 2 (2^s), and that the tail
// (the lower 90% of ranks) gets its share.
func TestZipf(t *testing.T) {
	const n, s, draws = 1000, 1.1, 400000
	z, err := NewZipf(n, s)
	if err != nil {
		t.Fatal(err)
	}
	h := 0.0
	for k := 1; k <= n; k++ {
		h += math.Pow(float64(k), -s)
	}
	if got, want := z.P(1), 1/h; math.Abs(got-want) > 1e-12 {
		t.Fatalf("P(1) = %g, want %g", got, want)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	counts := make([]int, n+1)
	for range draws {
		k := z.Rank(rng.Float64())
		if k < 1 || k > n {
			t.Fatalf("rank %d out of 1..%d", k, n)
		}
		counts[k]++
	}
	if f, p := float64(counts[1])/draws, z.P(1); math.Abs(f-p) > 0.02*p {
		t.Errorf("rank 1 drawn %.4f of the time, want %.4f", f, p)
	}
	if r := float64(counts[1]) / float64(counts[2]); math.Abs(r-math.Pow(2, s)) > 0.05 {
		t.Errorf("rank 1 / rank 2 = %.3f, want 2^%g = %.3f", r, s, math.Pow(2, s))
	}
	tail, want := 0, 0.0
	for k := n/10 + 1; k <= n; k++ {
		tail += counts[k]
		want += z.P(k)
	}
	if f := float64(tail) / draws; math.Abs(f-want) > 0.02*want {
		t.Errorf("tail drawn %.4f of the time, want %.4f", f, want)
	}
	if z.Rank(0) != 1 || z.Rank(math.Nextafter(1, 0)) != n {
		t.Errorf("Rank(0) = %d, Rank(1-) = %d, want 1 and %d", z.Rank(0), z.Rank(math.Nextafter(1, 0)), n)
	}
}

// TestArrivals checks the mean gap of Poisson arrivals and their spread
// (exponential: standard deviation equal to the mean), and that uniform
// arrivals are equally spaced.
func TestArrivals(t *testing.T) {
	const rate, draws = 500.0, 200000
	p, err := NewArrivals("poisson", rate)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var sum, sq float64
	for range draws {
		g := p.Next(rng.Float64()).Seconds()
		sum += g
		sq += g * g
	}
	mean := sum / draws
	sd := math.Sqrt(sq/draws - mean*mean)
	if math.Abs(mean*rate-1) > 0.01 {
		t.Errorf("Poisson mean gap %.6f s, want %.6f", mean, 1/rate)
	}
	if math.Abs(sd/mean-1) > 0.02 {
		t.Errorf("Poisson gaps' sd/mean %.3f, want 1", sd/mean)
	}
	u, _ := NewArrivals("uniform", rate)
	if g := u.Next(0.9); g != 2*time.Millisecond {
		t.Errorf("uniform gap %v, want 2ms", g)
	}
	if _, err := NewArrivals("bursty", rate); err == nil {
		t.Error("an unknown kind of arrivals is accepted")
	}
	if _, err := NewZipf(10, 0); err == nil {
		t.Error("Zipf with s = 0 is accepted")
	}
}
