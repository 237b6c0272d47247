package sandbox_test

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	goruntime "runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// stopLatencyBound is what this test holds a stop to: ten times the issue's
// 10 ms target, so a guest that is not stopped at all (each app here runs
// for a minute or more) fails, while a busy CI machine (-race, another
// package's compile beside it; 12 ms was seen) does not. The target itself
// is measured by BenchmarkStopAfterDeadline (benchmarks/RESULTS.md).
const stopLatencyBound = 100 * time.Millisecond

// blockingBody never yields a byte: a client that sent headers and stalls.
type blockingBody struct{ done chan struct{} }

func (b blockingBody) Read([]byte) (int, error) { <-b.done; return 0, io.EOF }

func TestRunawayGuestStoppedAtDeadline(t *testing.T) {
	for _, app := range []string{"runaway:spin", "runaway:regex", "runaway:sleeper", "runaway:reader"} {
		t.Run(app, func(t *testing.T) {
			inst, logs := newInstance(t, app)
			const timeout = 150 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			body := blockingBody{done: make(chan struct{})}
			defer close(body.done)
			req := httptest.NewRequest("POST", "/", body).WithContext(ctx)
			req.ContentLength = 10
			rec := httptest.NewRecorder()
			start := time.Now()
			o := pool.ServeInstance(inst, rec, req, pool.RequestInfo{}, logs.log)
			late := time.Since(start) - timeout
			if !errors.Is(o.Err, sandbox.ErrDeadline) {
				t.Fatalf("outcome %+v, want ErrDeadline; log:\n%s", o, logs)
			}
			if rec.Code != 504 || !inst.Broken() {
				t.Fatalf("status %d, broken %v; want 504 and a dropped instance", rec.Code, inst.Broken())
			}
			t.Logf("stopped %v after the deadline", late)
			if late > stopLatencyBound {
				t.Errorf("stopped %v after the deadline, bound %v", late, stopLatencyBound)
			}
		})
	}
}

// TestGCNotHeldByGuest runs a guest in a pure loop and checks that Go's
// stop-the-world pauses do not wait for it (the preempter makes it check
// in every few milliseconds).
func TestGCNotHeldByGuest(t *testing.T) {
	inst, logs := newInstance(t, "runaway:spin")
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pool.ServeInstance(inst, httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil).WithContext(ctx), pool.RequestInfo{}, logs.log)
	}()
	time.Sleep(100 * time.Millisecond) // the guest is spinning now
	// The time Go takes to stop the world for a GC is what a guest could
	// hold up; runtime/metrics records it as a histogram of its own.
	const metric = "/sched/pauses/stopping/gc:seconds"
	sample := []metrics.Sample{{Name: metric}}
	metrics.Read(sample)
	before := sample[0].Value.Float64Histogram()
	beforeCounts := append([]uint64(nil), before.Counts...)
	const cycles = 20
	for i := 0; i < cycles; i++ {
		goruntime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	metrics.Read(sample)
	after := sample[0].Value.Float64Histogram()
	wg.Wait()
	var n uint64
	worst := 0.0
	for i, c := range after.Counts {
		if d := c - beforeCounts[i]; d > 0 {
			n += d
			worst = after.Buckets[i+1] // the bucket's upper bound
		}
	}
	if n < cycles {
		t.Fatalf("only %d stop-the-world phases recorded", n)
	}
	t.Logf("worst time to stop the world over %d GC phases while a guest spins: <= %.2f ms (target: a few ms)", n, worst*1e3)
	// A guest that never checked in would hold the world for its whole
	// 600 ms spin; the target of a few milliseconds is a figure, not a
	// test bound, on a shared machine (12.6 ms was seen under load 7).
	if worst > 0.100 {
		t.Errorf("stopping the world took up to %.2f ms while a guest spun; regression bound 100 ms", worst*1e3)
	}
}

// TestMemoryLimit gives an instance a small cap and checks that allocating
// past it is a MemoryError (500, instance replaced), not a host failure.
func TestMemoryLimit(t *testing.T) {
	logs := &logLines{}
	inst, err := testEngine(t).NewInstance(context.Background(), sandbox.AppConfig{
		App: "memory:hog", Dir: "testdata/apps", Log: logs.log, MemoryLimit: 64 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close(context.Background())
	rec := httptest.NewRecorder()
	o := pool.ServeInstance(inst, rec, httptest.NewRequest("GET", "/", nil), pool.RequestInfo{}, logs.log)
	if rec.Code != 500 || o.Reusable() {
		t.Fatalf("status %d outcome %+v; log:\n%s", rec.Code, o, logs)
	}
	if peak := inst.MemoryPeak(); peak > 64<<20 {
		t.Fatalf("linear memory reached %d bytes past the 64 MiB cap", peak)
	}
}

// TestCheckInYields: a guest in a pure loop checks in every few
// milliseconds, and each check-in calls the engine's Options.Yield (the
// server's lets the network in, internal/netyield).
func TestCheckInYields(t *testing.T) {
	var yields atomic.Int64
	eng, err := sandbox.New(context.Background(), sandbox.Options{Interpreter: testinterp.Require(t), Yield: func() {
		yields.Add(1)
		goruntime.Gosched()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	logs := &logLines{}
	inst, err := eng.NewInstance(context.Background(), sandbox.AppConfig{App: "runaway:spin", Dir: "testdata/apps", Log: logs.log})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close(context.Background())
	before := yields.Load()
	const spin = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), spin)
	defer cancel()
	o := pool.ServeInstance(inst, httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil).WithContext(ctx), pool.RequestInfo{}, logs.log)
	if !errors.Is(o.Err, sandbox.ErrDeadline) {
		t.Fatalf("outcome %+v, want ErrDeadline; log:\n%s", o, logs)
	}
	// One check-in per 2 ms tick: 150 in the spin. A tenth of that allows
	// for a busy machine; none at all means the hook is not called.
	if n := yields.Load() - before; n < 15 {
		t.Fatalf("the guest called Yield %d times in %v of a pure loop", n, spin)
	}
}
