package sandbox_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/hostabi"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// newRogue starts an instance of an app of testdata/rogue (a folder of its
// own, so that the pools' .pyc of testdata/apps do not change with it).
func newRogue(t *testing.T, app string) (*sandbox.Instance, *logLines) {
	t.Helper()
	logs := &logLines{}
	inst, err := testEngine(t).NewInstance(context.Background(), sandbox.AppConfig{App: app, Dir: "testdata/rogue", Log: logs.log})
	if err != nil {
		t.Fatalf("NewInstance(%s): %v", app, err)
	}
	t.Cleanup(func() { inst.Close(context.Background()) })
	return inst, logs
}

// TestRefusedResponseIs502: status and headers the host refuses (ABI.md
// "response_start") answer 502 Bad Gateway with one log line naming the
// reason, whatever the app does next; the instance serves the next
// request. 2,000,000 headers are refused on their size, at no cost.
func TestRefusedResponseIs502(t *testing.T) {
	inst, logs := newRogue(t, "rogue:app")
	cases := []struct{ query, reason string }{
		{"many_headers", "26000007 bytes of status and headers, over the limit of 65536"},
		{"one_over_count", "101 headers, over the limit of 100"},
		{"one_over_size", "over the limit of 65536"},
		{"upgrade", "status 101 outside 200-599"},
		{"continue", "status 100 outside 200-599"},
		{"status_600", "status 600 outside 200-599"},
		{"conflicting_length", `conflicting Content-Length "2" and "20"`},
		{"length_not_a_number", `Content-Length "2 " is not a number`},
		{"cr_in_value", `control character in header "X-A"`},
		{"escape_in_value", `control character in header "X-A"`},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			before := len(logs.lines)
			var ms goruntime.MemStats
			goruntime.ReadMemStats(&ms)
			allocated := ms.TotalAlloc
			start := time.Now()
			rec, o := do(inst, httptest.NewRequest("GET", "/?"+tc.query, nil), logs)
			took := time.Since(start)
			goruntime.ReadMemStats(&ms)
			allocated = ms.TotalAlloc - allocated
			if rec.Code != 502 || rec.Body.String() != "Bad Gateway\n" || rec.Header().Get("X-A") != "" || rec.Header().Get("Upgrade") != "" {
				t.Fatalf("%d %q, headers %v; want 502 Bad Gateway", rec.Code, rec.Body.String(), rec.Header())
			}
			if o.Err != nil || !o.Reusable() {
				t.Fatalf("outcome %+v", o)
			}
			var refusals []string
			for _, l := range logs.lines[before:] {
				if strings.HasPrefix(l, "wsgi-wasm: 502 Bad Gateway") {
					refusals = append(refusals, l)
				}
			}
			if len(refusals) != 1 || !strings.Contains(refusals[0], tc.reason) {
				t.Fatalf("refusal log lines %q; want one naming %q", refusals, tc.reason)
			}
			t.Logf("%s: refused in %v (guest time %v), %d KiB allocated on the host", tc.query, took, o.GuestTime, allocated>>10)
			if allocated > 64<<20 {
				t.Fatalf("the host allocated %d MiB", allocated>>20)
			}
		})
	}
	// An identical repeat of Content-Length is folded, and the same
	// instance answers it.
	rec, _ := do(inst, httptest.NewRequest("GET", "/?identical_length", nil), logs)
	if rec.Code != 200 || rec.Body.String() != "ok" || fmt.Sprint(rec.Header()["Content-Length"]) != "[2]" {
		t.Fatalf("identical Content-Length: %d %q, %v; log:\n%s", rec.Code, rec.Body.String(), rec.Header(), logs)
	}
}

// TestLogWriteBoundedEndToEnd: an app that writes 50 MB to stdout in one
// call costs the host about the 8 KiB it keeps of it, not the 50 MB.
func TestLogWriteBoundedEndToEnd(t *testing.T) {
	inst, logs := newRogue(t, "rogue:loud")
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	allocated, heap := ms.TotalAlloc, ms.HeapInuse
	rec, o := do(inst, httptest.NewRequest("GET", "/", nil), logs)
	goruntime.ReadMemStats(&ms)
	allocated = ms.TotalAlloc - allocated
	if rec.Code != 200 || o.Err != nil {
		t.Fatalf("%d, outcome %+v", rec.Code, o)
	}
	want := fmt.Sprintf("… [truncated %d bytes]", 50_000_000-hostabi.MaxLogLine)
	last := logs.lines[len(logs.lines)-1]
	if len(last) != hostabi.MaxLogLine+len(want) || !strings.HasSuffix(last, want) {
		t.Fatalf("last log line: %d bytes ending %q", len(last), last[max(0, len(last)-40):])
	}
	t.Logf("50 MB to stdout: %d KiB allocated on the host, heap in use %+d KiB", allocated>>10, (int64(ms.HeapInuse)-int64(heap))>>10)
	if allocated > 64<<20 {
		t.Fatalf("the host allocated %d MiB for one 50 MB log line", allocated>>20)
	}
}

// TestInputReadBufferBounded: where the connection has no read deadline
// (httptest's recorder), the host reads the body into a buffer of its own;
// a guest that reads into 100 MB gets what there is, and the host's buffer
// stays small.
func TestInputReadBufferBounded(t *testing.T) {
	inst, logs := newRogue(t, "rogue:big_read")
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	allocated := ms.TotalAlloc
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a deadline, as the pool sets
	defer cancel()
	req := httptest.NewRequest("POST", "/", strings.NewReader("body"))
	rec, o := do(inst, req.WithContext(ctx), logs)
	goruntime.ReadMemStats(&ms)
	allocated = ms.TotalAlloc - allocated
	if rec.Code != 200 || rec.Body.String() != "4" || o.Err != nil {
		t.Fatalf("%d %q, outcome %+v; log:\n%s", rec.Code, rec.Body.String(), o, logs)
	}
	if allocated > 16<<20 {
		t.Fatalf("a 100 MB read allocated %d MiB on the host", allocated>>20)
	}
}
