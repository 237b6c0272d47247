package runtime_test

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	goruntime "runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/runtime"
)

// stopLatencyLimit is the target: a runaway guest stops within 10 ms
// after its deadline.
const stopLatencyLimit = 10 * time.Millisecond

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
			o := inst.ServeHTTP(rec, req, runtime.RequestInfo{}, logs.log)
			late := time.Since(start) - timeout
			if !errors.Is(o.Err, runtime.ErrDeadline) {
				t.Fatalf("outcome %+v, want ErrDeadline; log:\n%s", o, logs)
			}
			if rec.Code != 504 || !inst.Broken() {
				t.Fatalf("status %d, broken %v; want 504 and a dropped instance", rec.Code, inst.Broken())
			}
			t.Logf("stopped %v after the deadline", late)
			if late > stopLatencyLimit {
				t.Errorf("stopped %v after the deadline, limit %v", late, stopLatencyLimit)
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
		inst.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil).WithContext(ctx), runtime.RequestInfo{}, logs.log)
	}()
	time.Sleep(100 * time.Millisecond) // the guest is spinning now
	var before debug.GCStats
	debug.ReadGCStats(&before)
	const cycles = 20
	for i := 0; i < cycles; i++ {
		goruntime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	var after debug.GCStats
	debug.ReadGCStats(&after)
	wg.Wait()
	// Each GC cycle has two stop-the-world pauses; Pause lists the newest first.
	n := int(after.NumGC - before.NumGC)
	if n < cycles {
		t.Fatalf("only %d GC cycles ran", n)
	}
	var worst time.Duration
	for _, p := range after.Pause[:min(2*n, len(after.Pause))] {
		worst = max(worst, p)
	}
	t.Logf("worst stop-the-world pause over %d GC cycles while a guest spins: %v", n, worst)
	if worst > 10*time.Millisecond {
		t.Errorf("a stop-the-world pause took %v while a guest spun; limit 10ms", worst)
	}
}

// TestMemoryLimit gives an instance a small cap and checks that allocating
// past it is a MemoryError (500, instance replaced), not a host failure.
func TestMemoryLimit(t *testing.T) {
	logs := &logLines{}
	inst, err := testEngine(t).NewInstance(context.Background(), runtime.AppConfig{
		App: "memory:hog", Dir: "testdata/apps", Log: logs.log, MemoryLimit: 64 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close(context.Background())
	rec := httptest.NewRecorder()
	o := inst.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil), runtime.RequestInfo{}, logs.log)
	if rec.Code != 500 || o.Reusable() {
		t.Fatalf("status %d outcome %+v; log:\n%s", rec.Code, o, logs)
	}
	if peak := inst.MemoryPeak(); peak > 64<<20 {
		t.Fatalf("linear memory reached %d bytes past the 64 MiB cap", peak)
	}
}
