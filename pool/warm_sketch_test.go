//go:build !race

package pool_test

import (
	"strconv"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// Not under the race detector: ristretto counts accesses through a
// sync.Pool of buffers, and with -race sync.Pool drops a share of what is
// put back, so most accesses never reach the admission sketch and hot
// tenants look as cold as the tail. `make test` runs this file without
// -race after the race run.

// TestWarmSetKeepsHotTenantsUnderUnevenTraffic: a few hot tenants and a
// long tail of tenants visited now and then, in a budget that holds a
// dozen pools. Once every tenant has been visited more often than the
// admission sketch's 4-bit counters can count, a sketch too large for the
// budget (one that is never halved in the run) ranks them all alike and
// evicts hot tenants as often as cold ones; the set must keep the hot ones.
func TestWarmSetKeepsHotTenantsUnderUnevenTraffic(t *testing.T) {
	eng := testEngine(t)
	defer pool.SetMemoryHook(func(*pool.Pool) int64 { return 0 })() // every pool costs the admission estimate
	app := sandbox.AppConfig{App: "hello:hello", Dir: appsDir}
	cfg := pool.Config{MaxInstances: 1}
	hot := []string{"hot0", "hot1", "hot2", "hot3", "hot4", "hot5", "hot6", "hot7"}
	const pools, cold, rounds, trials = 12, 60, 1500, 5
	// Eviction samples the set at random, so one run of a bad sketch may be
	// lucky: a few runs, counted together.
	hotMisses := 0 // visits to a hot tenant that found it out of the set
	for trial := 0; trial < trials; trial++ {
		w, err := pool.NewWarmSet(eng, pools*pool.EstimatedInstanceCost)
		if err != nil {
			t.Fatal(err)
		}
		for round := 0; round < rounds; round++ {
			for _, key := range hot {
				for i := 0; i < 4; i++ {
					if w.Pool(key) == nil && round >= rounds/2 {
						hotMisses++
					}
					w.HoldPool(key, app, cfg)
				}
			}
			w.HoldPool("cold"+strconv.Itoa(round%cold), app, cfg)
			w.HoldPool("cold"+strconv.Itoa((round*7+3)%cold), app, cfg)
		}
		t.Logf("trial %d: set %+v", trial, w.Stats())
		w.Close()
	}
	t.Logf("hot tenants found out of the set %d times in the last %d rounds of %d runs", hotMisses, rounds/2, trials)
	// A tail tenant's visit may cost a hot tenant its place now and then
	// (admission is sampled); near-random eviction costs hundreds.
	if hotMisses > trials*rounds/100 {
		t.Fatalf("hot tenants were found out of the set %d times in the last %d rounds of %d runs", hotMisses, rounds/2, trials)
	}
}
