package benchmarks

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// engines: "shipped" is the interpreter as served (interrupt checks in);
// "nointerrupt" the same module before the interrupt pass.
var (
	enginesOnce sync.Once
	engines     map[string]*sandbox.Engine
	enginesErr  error
)

func engine(tb testing.TB, variant string) *sandbox.Engine {
	tb.Helper()
	in := testinterp.Require(tb)
	enginesOnce.Do(func() {
		engines = map[string]*sandbox.Engine{}
		for name, path := range map[string]string{
			"shipped":     in.ReactorModule(),
			"nointerrupt": filepath.Join(in.Dir, "debug", "python-reactor.nointerrupt.wasm"),
		} {
			e, err := sandbox.New(context.Background(), sandbox.Options{Interpreter: in, ReactorModule: path})
			if err != nil {
				enginesErr = err
				return
			}
			engines[name] = e
		}
	})
	if enginesErr != nil {
		tb.Fatal(enginesErr)
	}
	return engines[variant]
}

func instance(tb testing.TB, variant, dir, app string) *sandbox.Instance {
	tb.Helper()
	e := engine(tb, variant)
	var pyc string
	if _, err := os.Stat(filepath.Join(dir, "site-packages")); err == nil {
		var err error
		if pyc, err = e.CompileApp(context.Background(), dir, 0); err != nil {
			tb.Fatal(err)
		}
	} else if strings.Contains(dir, "examples") {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s is not vendored under CI", dir)
		}
		tb.Skipf("%s not vendored: run examples/vendor.sh", dir)
	}
	inst, err := e.NewInstance(context.Background(), sandbox.AppConfig{App: app, Dir: dir, PycacheDir: pyc})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { inst.Close(context.Background()) })
	return inst
}

// serve runs one request and checks its status and body length.
func serve(tb testing.TB, inst *sandbox.Instance, req *http.Request, wantLen int) {
	rec := httptest.NewRecorder()
	o := pool.ServeInstance(inst, rec, req, pool.RequestInfo{}, nil)
	if o.Err != nil || rec.Code != 200 || (wantLen >= 0 && rec.Body.Len() != wantLen) {
		tb.Fatalf("status %d, %d bytes, err %v: %.200s", rec.Code, rec.Body.Len(), o.Err, rec.Body.String())
	}
}

const flaskDir = "../examples/tenants/flask"

// BenchmarkFlaskHello is one hello-world Flask request through an instance,
// with and without the interrupt checks.
func BenchmarkFlaskHello(b *testing.B) {
	for _, variant := range []string{"shipped", "nointerrupt"} {
		b.Run(variant, func(b *testing.B) {
			inst := instance(b, variant, flaskDir, "app:app")
			req := httptest.NewRequest("GET", "/", nil)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				serve(b, inst, req, len("Hello from Flask!\n"))
			}
		})
	}
}

// TestInterruptOverhead measures what the interrupt checks cost a
// hello-Flask request's time in the guest (the target: at most 10%).
// Both variants are timed in alternating rounds; the best round of each is
// compared. Measured at 1-3% on the machines here, so the test fails at 25%
// (a regression, not noise from a busy CI machine) and logs the figure,
// which make bench-go writes to RESULTS.md against the 10% target.
func TestInterruptOverhead(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	shipped := instance(t, "shipped", flaskDir, "app:app")
	plain := instance(t, "nointerrupt", flaskDir, "app:app")
	req := httptest.NewRequest("GET", "/", nil)
	round := func(inst *sandbox.Instance) time.Duration {
		const n = 200
		start := time.Now()
		for i := 0; i < n; i++ {
			serve(t, inst, req, -1)
		}
		return time.Since(start) / n
	}
	round(shipped)
	round(plain)
	best := map[string]time.Duration{"shipped": time.Hour, "nointerrupt": time.Hour}
	for i := 0; i < 7; i++ {
		best["shipped"] = min(best["shipped"], round(shipped))
		best["nointerrupt"] = min(best["nointerrupt"], round(plain))
	}
	ratio := float64(best["shipped"]) / float64(best["nointerrupt"])
	t.Logf("hello-Flask request: %v with interrupt checks, %v without: %.1f%% overhead",
		best["shipped"], best["nointerrupt"], (ratio-1)*100)
	if ratio > 1.10 {
		t.Logf("above the 10%% target this time")
	}
	if ratio > 1.25 {
		t.Errorf("interrupt checks cost %.1f%% of a Flask request; regression bound 25%%", (ratio-1)*100)
	}
}

// BenchmarkHostOverhead is a request's time outside the guest call: the
// environ built and encoded, the exchange set up, headers and body handed to
// the ResponseWriter. Reported as host-ns/op beside the guest's share.
func BenchmarkHostOverhead(b *testing.B) {
	in := instance(b, "shipped", "testdata", "abi:out_1k")
	req := headerRequest()
	var guest time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		rec := discardRecorder{header: http.Header{}}
		o := pool.ServeInstance(in, &rec, req, pool.RequestInfo{}, nil)
		if o.Err != nil || rec.n != 1024 {
			b.Fatalf("%v, %d bytes", o.Err, rec.n)
		}
		guest += o.GuestTime
	}
	total := time.Since(start)
	b.ReportMetric(float64((total-guest).Nanoseconds())/float64(b.N), "host-ns/op")
	b.ReportMetric(float64(guest.Nanoseconds())/float64(b.N), "guest-ns/op")
}

// BenchmarkABI measures the host ABI path: the environ in, response bodies
// of 1 KiB and 1 MiB out, a 1 MiB body in. Bytes/op gives MB/s.
func BenchmarkABI(b *testing.B) {
	inst := func(b *testing.B, app string) *sandbox.Instance { return instance(b, "shipped", "testdata", app) }
	b.Run("environ+1KiB-out", func(b *testing.B) {
		in := inst(b, "abi:out_1k")
		req := headerRequest()
		b.SetBytes(1024)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			serve(b, in, req, 1024)
		}
	})
	b.Run("environ-roundtrip", func(b *testing.B) {
		in := inst(b, "abi:environ_echo")
		req := headerRequest()
		want := len(environEcho(b, in, req))
		b.SetBytes(int64(want))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			serve(b, in, req, want)
		}
	})
	b.Run("1MiB-out", func(b *testing.B) {
		in := inst(b, "abi:out_1m")
		req := httptest.NewRequest("GET", "/", nil)
		b.SetBytes(1 << 20)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			rec := discardRecorder{header: http.Header{}}
			pool.ServeInstance(in, &rec, req, pool.RequestInfo{}, nil)
			if rec.n != 1<<20 {
				b.Fatalf("%d bytes", rec.n)
			}
		}
	})
	b.Run("1MiB-in", func(b *testing.B) {
		in := inst(b, "abi:read_in")
		body := bytes.Repeat([]byte("i"), 1<<20)
		b.SetBytes(1 << 20)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			req := httptest.NewRequest("POST", "/", bytes.NewReader(body))
			serve(b, in, req, len("1048576"))
		}
	})
}

// headerRequest is the request of the ABI benchmarks: a path, a query and
// 20 headers of 30 bytes.
func headerRequest() *http.Request {
	req := httptest.NewRequest("GET", "/some/path?query=string", nil)
	for i := 0; i < 20; i++ {
		req.Header.Add(fmt.Sprintf("X-Header-%d", i), strings.Repeat("v", 30))
	}
	return req
}

// environEcho serves req with abi:environ_echo and returns the body.
func environEcho(tb testing.TB, in *sandbox.Instance, req *http.Request) string {
	tb.Helper()
	rec := httptest.NewRecorder()
	if o := pool.ServeInstance(in, rec, req, pool.RequestInfo{}, nil); o.Err != nil || rec.Code != 200 {
		tb.Fatalf("environ_echo: %d %v", rec.Code, o.Err)
	}
	return rec.Body.String()
}

// TestABIBenchmarks checks that the apps of BenchmarkABI and
// BenchmarkHostOverhead compute what the benchmarks count: the exact bodies
// out, the byte count of the body in, the environ as the guest saw it, and a
// guest time that is part of the request's time.
func TestABIBenchmarks(t *testing.T) {
	t.Run("environ-roundtrip", func(t *testing.T) {
		in := instance(t, "shipped", "testdata", "abi:environ_echo")
		got := map[string]string{}
		for _, line := range strings.Split(strings.TrimSuffix(environEcho(t, in, headerRequest()), "\n"), "\n") {
			k, v, _ := strings.Cut(line, "=")
			got[k] = v
		}
		want := map[string]string{"REQUEST_METHOD": "GET", "PATH_INFO": "/some/path", "QUERY_STRING": "query=string",
			"SCRIPT_NAME": "", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "example.com", "wsgi.url_scheme": "http"}
		for i := 0; i < 20; i++ {
			want[fmt.Sprintf("HTTP_X_HEADER_%d", i)] = strings.Repeat("v", 30)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %q, want %q", k, got[k], v)
			}
		}
		if len(got) < len(want) {
			t.Errorf("%d keys, want at least %d: %v", len(got), len(want), got)
		}
	})
	for _, c := range []struct {
		app  string
		body []byte
		want string
	}{
		{"abi:out_1k", nil, strings.Repeat("k", 1024)},
		{"abi:out_1m", nil, strings.Repeat("m", 1<<20)},
		{"abi:read_in", bytes.Repeat([]byte("i"), 1<<20), "1048576"},
	} {
		t.Run(c.app, func(t *testing.T) {
			in := instance(t, "shipped", "testdata", c.app)
			req := httptest.NewRequest("GET", "/", nil)
			if c.body != nil {
				req = httptest.NewRequest("POST", "/", bytes.NewReader(c.body))
			}
			rec := httptest.NewRecorder()
			start := time.Now()
			o := pool.ServeInstance(in, rec, req, pool.RequestInfo{}, nil)
			total := time.Since(start)
			if o.Err != nil || rec.Code != 200 || rec.Body.String() != c.want {
				t.Fatalf("status %d, %d bytes, err %v", rec.Code, rec.Body.Len(), o.Err)
			}
			if o.GuestTime <= 0 || o.GuestTime > total {
				t.Errorf("guest time %v of a %v request", o.GuestTime, total)
			}
		})
	}
}

// discardRecorder is a ResponseWriter that counts and drops the body, so
// the 1 MiB benchmark measures the ABI, not a growing buffer.
type discardRecorder struct {
	header http.Header
	n      int
}

func (d *discardRecorder) Header() http.Header         { return d.header }
func (d *discardRecorder) WriteHeader(int)             {}
func (d *discardRecorder) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }

// BenchmarkFlaskColdStart is one new instance of the Flask example: the
// interpreter started and the app imported, from the .pyc that CompileApp
// made and from source (compiled in the guest at every start).
func BenchmarkFlaskColdStart(b *testing.B) {
	e := engine(b, "shipped")
	if _, err := os.Stat(filepath.Join(flaskDir, "site-packages")); err != nil {
		b.Skip("flask not vendored")
	}
	pyc, err := e.CompileApp(context.Background(), flaskDir, 0)
	if err != nil {
		b.Fatal(err)
	}
	for name, dir := range map[string]string{"pyc": pyc, "source": ""} {
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				inst, err := e.NewInstance(context.Background(), sandbox.AppConfig{App: "app:app", Dir: flaskDir, PycacheDir: dir})
				if err != nil {
					b.Fatal(err)
				}
				inst.Close(context.Background())
			}
		})
	}
}
