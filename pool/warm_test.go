package pool_test

import (
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// TestWarmSetEvictsWithinBudget gives two tenants with different memory caps
// a budget that holds about one warm instance (one and a half times what
// one holds in RAM, measured): the set must let one go, keep its cost near
// the budget, and the tenant it let go starts cold again.
func TestWarmSetEvictsWithinBudget(t *testing.T) {
	eng := testEngine(t)
	probe, logs := newPool(t, "hello:hello", pool.Config{MaxInstances: 1})
	if rec := get(probe, logs, "/"); rec.Code != 200 {
		t.Fatal(rec.Code)
	}
	budget := probe.Memory() * 3 / 2
	probe.Close()
	w, err := pool.NewWarmSet(eng, budget)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	tenants := map[string]sandbox.AppConfig{
		"small": {App: "hello:hello", Dir: appsDir, MemoryLimit: 64 << 20, Log: logs.log},
		"large": {App: "hello:counter", Dir: appsDir, MemoryLimit: 256 << 20, Log: logs.log},
	}
	cfg := pool.Config{MinWarm: 1, MaxInstances: 1}
	hit := func(name string) *pool.Pool {
		rec := httptest.NewRecorder()
		w.Serve(name, tenants[name], cfg, rec, httptest.NewRequest("GET", "/", nil), pool.RequestInfo{}, logs.log)
		if rec.Code != 200 {
			t.Fatalf("%s: status %d\n%s", name, rec.Code, logs)
		}
		return w.Pool(name)
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
	if w.Pool("small") != nil {
		gone = "large"
	}
	before := map[string]*pool.Pool{"small": first, "large": lastLarge}[gone]
	after := hit(gone)
	if after == nil {
		t.Fatalf("evicted tenant %s, served again, has no pool in the set: %+v", gone, w.Stats())
	}
	if after == before || after.Stats().ColdStarts != 1 {
		t.Fatalf("evicted tenant %s was not started cold: same pool %v, stats %+v", gone, after == before, after.Stats())
	}
}

// TestWarmSetConcurrentFirstRequests: many requests reaching a tenant at
// once (as right after a reload) share one pool, which the set keeps: none
// of them finds it closed by a refused duplicate offer.
func TestWarmSetConcurrentFirstRequests(t *testing.T) {
	eng := testEngine(t)
	w, err := pool.NewWarmSet(eng, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	app := sandbox.AppConfig{App: "hello:hello", Dir: appsDir}
	cfg := pool.Config{MinWarm: 1, MaxInstances: 2}
	for round := 0; round < 20; round++ {
		key := "t" + strconv.Itoa(round)
		pools := make(chan *pool.Pool, 8)
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pools <- w.HoldPool(key, app, cfg)
			}()
		}
		wg.Wait()
		close(pools)
		first := <-pools
		for p := range pools {
			if p != first {
				t.Fatalf("round %d: concurrent callers got different pools", round)
			}
		}
		if st := w.Stats(); st.Evictions != 0 || w.Pool(key) == nil {
			t.Fatalf("round %d: a new pool was dropped: %+v, warm %v", round, st, w.Pool(key) != nil)
		}
	}
}

// TestWarmSetRefusedPoolServes: a budget smaller than one instance makes the
// set refuse every pool. Each request must still be answered by the pool it
// got, which closes once no request holds it, never under the request; and
// concurrent requests share the refused tenant's pool, within its
// max_instances, instead of each starting one.
func TestWarmSetRefusedPoolServes(t *testing.T) {
	eng := testEngine(t)
	w, err := pool.NewWarmSet(eng, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	app := sandbox.AppConfig{App: "hello:hello", Dir: appsDir}
	cfg := pool.Config{MaxInstances: 1}
	serve := func(key string) int {
		rec := httptest.NewRecorder()
		w.Serve(key, app, cfg, rec, httptest.NewRequest("GET", "/", nil), pool.RequestInfo{}, nil)
		return rec.Code
	}
	for i := 0; i < 4; i++ {
		key := "t" + strconv.Itoa(i%2)
		if code := serve(key); code != 200 {
			t.Fatalf("request %d to %s: status %d (set: %+v)", i, key, code, w.Stats())
		}
	}
	waitFor(t, "the refused pools to close", func() bool { return w.Lingering() == 0 })
	if st := w.Stats(); st.Evictions < 4 || st.Tenants != 0 {
		t.Fatalf("set after refusing every pool: %+v", st)
	}

	started := eng.InstancesStarted()
	codes := make(chan int, 8)
	for i := 0; i < 8; i++ {
		go func() { codes <- serve("burst") }()
	}
	for i := 0; i < 8; i++ {
		if code := <-codes; code != 200 {
			t.Errorf("burst request: status %d", code)
		}
	}
	// One pool, one instance; a second only if the burst outlived the first.
	if n := eng.InstancesStarted() - started; n > 2 {
		t.Errorf("8 concurrent requests to a refused tenant (max_instances 1) started %d instances", n)
	}
	waitFor(t, "the burst's pool to close", func() bool { return w.Lingering() == 0 })
}

// TestWarmSetRemoveAnswersHeldRequests: removing a tenant's pool (a reload)
// while one request is in the guest and another waits for the instance
// answers both; the pool closes after them.
func TestWarmSetRemoveAnswersHeldRequests(t *testing.T) {
	eng := testEngine(t)
	w, err := pool.NewWarmSet(eng, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	app := sandbox.AppConfig{App: "runaway:reader", Dir: appsDir}
	cfg := pool.Config{MaxInstances: 1}
	serve := func(body io.Reader) chan *httptest.ResponseRecorder {
		done := make(chan *httptest.ResponseRecorder, 1)
		go func() {
			rec := httptest.NewRecorder()
			w.Serve("a", app, cfg, rec, httptest.NewRequest("POST", "/", body), pool.RequestInfo{}, nil)
			done <- rec
		}()
		return done
	}
	body, feed := io.Pipe()
	inGuest := serve(body) // reads its body until fed
	waitFor(t, "the first request in the guest", func() bool {
		p := w.Pool("a")
		return p != nil && p.Stats().Busy == 1
	})
	p := w.Pool("a")
	queued := serve(strings.NewReader("0123456789"))
	waitFor(t, "the second request to hold the pool", func() bool { return p.Holds() == 2 })
	w.Remove("a")
	feed.Write([]byte("abcdefghij"))
	feed.Close()
	for _, c := range []struct {
		name string
		done chan *httptest.ResponseRecorder
		want string
	}{{"in the guest", inGuest, "abcdefghij"}, {"queued", queued, "0123456789"}} {
		if rec := <-c.done; rec.Code != 200 || rec.Body.String() != c.want {
			t.Errorf("request %s at removal: %d %q, want 200 %q", c.name, rec.Code, rec.Body.String(), c.want)
		}
	}
	waitFor(t, "the removed pool to close", func() bool { return w.Lingering() == 0 })
	if st := p.Stats(); st.Idle != 0 || st.Busy != 0 {
		t.Errorf("removed pool after closing: %+v", st)
	}
}
