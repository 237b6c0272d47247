package sandbox_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

func newPool(t *testing.T, app string, cfg sandbox.PoolConfig) (*sandbox.Pool, *logLines) {
	t.Helper()
	logs := &logLines{}
	p := testEngine(t).NewPool(sandbox.AppConfig{App: app, Dir: "testdata/apps", Log: logs.log}, cfg)
	t.Cleanup(p.Close)
	return p, logs
}

func get(p *sandbox.Pool, logs *logLines, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", path, nil), sandbox.RequestInfo{}, logs.log)
	return rec
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPoolReusesAndReplaces(t *testing.T) {
	p, logs := newPool(t, "hello:counter", sandbox.PoolConfig{MinWarm: 1, MaxInstances: 1, MaxRequests: 3})
	waitFor(t, "a warm instance", func() bool { return p.Stats().Idle == 1 })
	var got []string
	for i := 0; i < 5; i++ {
		got = append(got, get(p, logs, "/").Body.String())
	}
	// One instance counts 1, 2, 3, then is replaced after max_requests.
	if strings.Join(got, ",") != "1,2,3,1,2" {
		t.Fatalf("counters %v, want 1,2,3,1,2", got)
	}
	if s := p.Stats(); s.ColdStarts != 2 || s.Replaced != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPoolReplacesFailedInstance(t *testing.T) {
	p, logs := newPool(t, "hello:exits", sandbox.PoolConfig{MaxInstances: 1})
	for i := 0; i < 2; i++ {
		if rec := get(p, logs, "/"); rec.Code != 500 {
			t.Fatalf("status %d", rec.Code)
		}
	}
	if s := p.Stats(); s.ColdStarts != 2 || s.Replaced != 2 {
		t.Fatalf("every sys.exit should cost one instance: %+v", s)
	}
}

func TestPoolTimeoutThenServes(t *testing.T) {
	logs := &logLines{}
	p := testEngine(t).NewPool(sandbox.AppConfig{App: "runaway:spin", Dir: "testdata/apps", Log: logs.log},
		sandbox.PoolConfig{MinWarm: 1, MaxInstances: 1, RequestTimeout: 300 * time.Millisecond})
	defer p.Close()
	// The deadline is for the guest's loop, not for a first start on a
	// cold machine.
	waitFor(t, "a warm instance", func() bool { return p.Stats().Idle == 1 })
	if rec := get(p, logs, "/"); rec.Code != 504 {
		t.Fatalf("status %d, want 504", rec.Code)
	}
	if s := p.Stats(); s.Timeouts != 1 || s.Replaced != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPoolQueueFullIs503(t *testing.T) {
	p, logs := newPool(t, "runaway:sleeper", sandbox.PoolConfig{MinWarm: 1, MaxInstances: 1, QueueLength: 1, RequestTimeout: 2 * time.Second})
	waitFor(t, "a warm instance", func() bool { return p.Stats().Idle == 1 })
	var wg sync.WaitGroup
	codes := make(chan int, 3)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- get(p, logs, "/").Code
		}()
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	// One request holds the only instance, one waits, the third is refused.
	if count[503] != 1 || count[504] != 2 {
		t.Fatalf("status counts %v, want one 503 and two 504", count)
	}
}

func TestPoolBrokenAppIs503(t *testing.T) {
	p, logs := newPool(t, "nosuchmodule:app", sandbox.PoolConfig{MaxInstances: 2})
	rec := get(p, logs, "/")
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d headers %v", rec.Code, rec.Header())
	}
	start := time.Now()
	if rec := get(p, logs, "/"); rec.Code != 503 || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("second request: %d after %v; want a fast 503", rec.Code, time.Since(start))
	}
}

func TestPoolConcurrentRequests(t *testing.T) {
	p, logs := newPool(t, "hello:hello", sandbox.PoolConfig{MinWarm: 2, MaxInstances: 2})
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := 0
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if rec := get(p, logs, "/x"); rec.Code != http.StatusOK || rec.Body.String() != "Hello, /x\n" {
				mu.Lock()
				bad++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if bad != 0 {
		t.Fatalf("%d of 40 concurrent requests failed", bad)
	}
	if s := p.Stats(); s.ColdStarts > 2 {
		t.Fatalf("pool of max 2 made %d instances", s.ColdStarts)
	}
}
