package pool_test

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

func TestPoolReusesAndReplaces(t *testing.T) {
	p, logs := newPool(t, "hello:counter", pool.Config{MinWarm: 1, MaxInstances: 1, MaxRequests: 3})
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
	p, logs := newPool(t, "hello:exits", pool.Config{MaxInstances: 1})
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
	p := pool.New(testEngine(t), sandbox.AppConfig{App: "runaway:spin", Dir: appsDir, Log: logs.log},
		pool.Config{MinWarm: 1, MaxInstances: 1, RequestTimeout: 300 * time.Millisecond})
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
	p, logs := newPool(t, "runaway:sleeper", pool.Config{MinWarm: 1, MaxInstances: 1, QueueLength: 1, RequestTimeout: 2 * time.Second})
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
	p, logs := newPool(t, "nosuchmodule:app", pool.Config{MaxInstances: 2})
	rec := get(p, logs, "/")
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d headers %v", rec.Code, rec.Header())
	}
	start := time.Now()
	rec = get(p, logs, "/")
	if rec.Code != 503 || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("second request: %d after %v; want a fast 503", rec.Code, time.Since(start))
	}
	// The pool backs off before its next attempt, and says how long.
	if after, _ := strconv.Atoi(rec.Header().Get("Retry-After")); after < 3 || after > 5 {
		t.Fatalf("second request: Retry-After %q, want the back-off left (about 5 s)", rec.Header().Get("Retry-After"))
	}
}

func TestPoolConcurrentRequests(t *testing.T) {
	p, logs := newPool(t, "hello:hello", pool.Config{MinWarm: 2, MaxInstances: 2})
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

// TestPoolRecordsWriteSet: a pool records the set after its first restored
// instance's first request, and a new snapshot of the key starts without.
func TestPoolRecordsWriteSet(t *testing.T) {
	store, err := sandbox.NewSnapshotStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	p, logs := newPool(t, "snap:app", pool.Config{MaxInstances: 1, MaxRequests: 1, Snapshots: store})
	for i := 0; i < 3; i++ { // fresh (saves), restored (records), restored with the set
		if rec := get(p, logs, "/"); rec.Code != 200 {
			t.Fatalf("request %d: %d %s\n%s", i, rec.Code, rec.Body, logs)
		}
	}
	p.Close()
	key, err := testEngine(t).SnapshotKey(context.Background(), sandbox.AppConfig{App: "snap:app", Dir: appsDir})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := store.Open(key)
	if err != nil {
		t.Fatal(err)
	}
	if snap.WriteSetPages() == 0 {
		t.Fatal("the pool recorded no write set")
	}
	if _, err := os.Stat(store.Path(key) + ".writes"); err != nil {
		t.Fatal(err)
	}
	// Saving the key again replaces the snapshot: the old set goes with it.
	store.Discard(key)
	if _, err := store.Build(context.Background(), testEngine(t), sandbox.AppConfig{App: "snap:app", Dir: appsDir}); err != nil {
		t.Fatal(err)
	}
	if snap, err = store.Open(key); err != nil || snap.WriteSetPages() != 0 {
		t.Errorf("a new snapshot has a write set: %v", err)
	}
}

// TestPoolWaitsForSettlingInstance: after its first request an instance is
// measured in the background; a request arriving meanwhile waits for it
// rather than starting a second instance.
func TestPoolWaitsForSettlingInstance(t *testing.T) {
	defer pool.SetSettleHook(func() { time.Sleep(200 * time.Millisecond) })()
	p, logs := newPool(t, "snap:app", pool.Config{MaxInstances: 4})
	for i := 0; i < 3; i++ {
		if rec := get(p, logs, "/"); rec.Code != 200 {
			t.Fatalf("request %d: %d %s\n%s", i, rec.Code, rec.Body, logs)
		}
	}
	if s := p.Stats(); s.ColdStarts != 1 {
		t.Errorf("3 requests one after another started %d instances, want 1 (the next waits for the settling one)", s.ColdStarts)
	}
}

// TestPoolConcurrentFirstRequestsRecordOneWriteSet: a burst of first
// requests to a tenant whose snapshot has no write set yet restores one
// instance without it; the others wait for the set it records and restore
// with it, and every request is answered.
func TestPoolConcurrentFirstRequestsRecordOneWriteSet(t *testing.T) {
	app := sandbox.AppConfig{App: "snap:app", Dir: appsDir}
	store, err := sandbox.NewSnapshotStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	key, err := store.Build(context.Background(), testEngine(t), app)
	if err != nil {
		t.Fatal(err)
	}
	_, _, before := testEngine(t).RestoresWithoutWriteSet()
	p, logs := newPool(t, "snap:app", pool.Config{MaxInstances: 4, Snapshots: store, SnapshotKey: key})
	const n = 16
	codes := make(chan int, n)
	for range n {
		go func() { codes <- get(p, logs, "/").Code }()
	}
	for range n {
		if code := <-codes; code != 200 {
			t.Errorf("a first request answered %d\n%s", code, logs)
		}
	}
	if _, _, after := testEngine(t).RestoresWithoutWriteSet(); after-before != 1 {
		t.Errorf("%d instances restored without the write set, want 1", after-before)
	}
	if s := p.Stats(); s.Restores < 2 {
		t.Logf("%d instances restored (the burst was served by fewer than two)", s.Restores)
	}
	snap, err := store.Open(key)
	if err != nil {
		t.Fatal(err)
	}
	if snap.WriteSetPages() == 0 {
		t.Error("no write set recorded")
	}
}
