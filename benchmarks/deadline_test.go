package benchmarks

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// stopTarget is the interruption issue's target: a runaway guest stops
// within 10 ms after its request's deadline.
const stopTarget = 10 * time.Millisecond

// BenchmarkStopAfterDeadline measures how late a runaway guest is stopped:
// each iteration is one request with a 20 ms deadline to a new instance of
// an app that never finishes on its own (a Python loop, a regular
// expression backtracking in C, a sleep), from the request's deadline until
// ServeHTTP has returned its 504. The instance's start and close are
// outside the timer. Reported as late-p50-µs, late-p99-µs and late-max-µs
// (p99 is the max in a run of fewer than 100 requests); ns/op is the
// deadline plus that lateness.
func BenchmarkStopAfterDeadline(b *testing.B) {
	e := engine(b, "shipped")
	for _, app := range []string{"runaway:spin", "runaway:regex", "runaway:sleeper"} {
		b.Run(app, func(b *testing.B) {
			const timeout = 20 * time.Millisecond
			late := make([]time.Duration, 0, b.N)
			b.StopTimer()
			for i := 0; i < b.N; i++ {
				inst, err := e.NewInstance(context.Background(), sandbox.AppConfig{App: app, Dir: "../sandbox/testdata/apps"})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				req := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
				rec := httptest.NewRecorder()
				deadline, _ := ctx.Deadline()
				b.StartTimer()
				o := pool.ServeInstance(inst, rec, req, pool.RequestInfo{}, nil)
				late = append(late, time.Since(deadline))
				b.StopTimer()
				cancel()
				inst.Close(context.Background())
				if !errors.Is(o.Err, sandbox.ErrDeadline) || rec.Code != 504 {
					b.Fatalf("status %d, outcome %+v; want 504 and ErrDeadline", rec.Code, o)
				}
			}
			slices.Sort(late)
			at := func(q float64) time.Duration { return late[min(len(late)-1, int(q*float64(len(late))))] }
			b.ReportMetric(float64(at(0.5).Microseconds()), "late-p50-µs")
			b.ReportMetric(float64(at(0.99).Microseconds()), "late-p99-µs")
			b.ReportMetric(float64(at(1).Microseconds()), "late-max-µs")
			if p99 := at(0.99); p99 > stopTarget {
				b.Logf("p99 %v after the deadline: above the %v target", p99, stopTarget)
			}
		})
	}
}
