package runtime_test

import (
	"net/http/httptest"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/runtime"
)

// TestWarmSetEvictsWithinBudget gives two tenants with different memory caps
// a budget that holds about one warm instance (one and a half times what
// one holds in RAM, measured): the set must let one go, keep its cost near
// the budget, and the tenant it let go starts cold again.
func TestWarmSetEvictsWithinBudget(t *testing.T) {
	eng := testEngine(t)
	probe, logs := newPool(t, "hello:hello", runtime.PoolConfig{MaxInstances: 1})
	if rec := get(probe, logs, "/"); rec.Code != 200 {
		t.Fatal(rec.Code)
	}
	budget := probe.Memory() * 3 / 2
	probe.Close()
	w, err := eng.NewWarmSet(budget)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	tenants := map[string]runtime.AppConfig{
		"small": {App: "hello:hello", Dir: "testdata/apps", MemoryLimit: 64 << 20, Log: logs.log},
		"large": {App: "hello:counter", Dir: "testdata/apps", MemoryLimit: 256 << 20, Log: logs.log},
	}
	cfg := runtime.PoolConfig{MinWarm: 1, MaxInstances: 1}
	hit := func(name string) *runtime.Pool {
		p := w.Pool(name, tenants[name], cfg)
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil), runtime.RequestInfo{}, logs.log)
		if rec.Code != 200 {
			t.Fatalf("%s: status %d\n%s", name, rec.Code, logs)
		}
		return p
	}
	first := hit("small")
	for i := 0; i < 3; i++ {
		hit("small")
	}
	hit("large")
	lastLarge := hit("large") // measured cost replaces the estimate: now over budget
	st := w.Stats()
	t.Logf("warm set: %+v", st)
	if st.Evictions == 0 || st.Tenants != 1 {
		t.Fatalf("two warm tenants in a budget of one and a half (%d bytes): %+v", budget, st)
	}
	if st.Cost > budget {
		t.Fatalf("warm set holds %d bytes, over its budget of %d", st.Cost, budget)
	}
	// The tenant that left starts cold: a new pool with a new instance.
	gone := "small"
	if w.Warm("small") {
		gone = "large"
	}
	before := map[string]*runtime.Pool{"small": first, "large": lastLarge}[gone]
	after := hit(gone)
	if after == before || after.Stats().ColdStarts != 1 {
		t.Fatalf("evicted tenant %s was not started cold: same pool %v, stats %+v", gone, after == before, after.Stats())
	}
}
