package pool_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

func poolServer(t *testing.T, app string) (*pool.Pool, *httptest.Server, *logLines) {
	t.Helper()
	logs := &logLines{}
	p := pool.New(testEngine(t), sandbox.AppConfig{App: app, Dir: appsDir, Log: logs.log},
		pool.Config{MinWarm: 1, MaxInstances: 1, RequestTimeout: 2 * time.Minute})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.Serve(w, r, pool.RequestInfo{}, logs.log)
		r.Body.Close() // as the server does (server.FinishBody)
	}))
	t.Cleanup(func() { srv.Close(); p.Close() })
	return p, srv, logs
}

func heapInUse() uint64 {
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestStreamingResponseLockstep streams 256 MiB through a real HTTP server.
// The app waits for the client's acknowledgement of each 1 MiB chunk before
// yielding the next, so the test can only finish if every chunk reaches the
// client before the app yields the one after it. Host heap and guest memory
// stay flat.
func TestStreamingResponseLockstep(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 256 MiB")
	}
	const size, chunks = 1 << 20, 256
	_, srv, logs := poolServer(t, "streams:lockstep")
	ackR, ackW := io.Pipe()
	req, _ := http.NewRequest("POST", fmt.Sprintf("%s/?size=%d&chunks=%d", srv.URL, size, chunks), ackR)
	req.ContentLength = chunks - 1
	heapBefore := heapInUse()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, size)
	var heapPeak uint64
	for i := 0; i < chunks; i++ {
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatalf("chunk %d: %v; log:\n%s", i, err, logs)
		}
		if i%64 == 0 {
			heapPeak = max(heapPeak, heapInUse())
		}
		if i < chunks-1 {
			if _, err := ackW.Write([]byte("+")); err != nil {
				t.Fatal(err)
			}
		}
	}
	ackW.Close()
	if n, _ := io.Copy(io.Discard, resp.Body); n != 0 {
		t.Fatalf("%d bytes past the declared body", n)
	}
	growth := int64(heapPeak) - int64(heapBefore)
	t.Logf("host heap grew by at most %d KiB while streaming 256 MiB", growth>>10)
	if growth > 16<<20 {
		t.Fatalf("host heap grew by %d MiB: the response is being buffered", growth>>20)
	}
}

// TestLastChunkReachesClientBeforeTeardown: the chunk that completes a body
// of declared length is held back from the guest's call, but never past the
// guest's next wait or check-in. The app's close() runs after its whole
// 100-byte body and either reads the client's acknowledgement, which the
// client sends only once it has that body (read: deadlock if held), spins
// on the CPU or sleeps (spin, sleep: the body must come long before close
// ends). The instance serves again once close() ended.
func TestLastChunkReachesClientBeforeTeardown(t *testing.T) {
	const teardown = 3 * time.Second
	for _, mode := range []string{"read", "spin", "sleep"} {
		t.Run(mode, func(t *testing.T) {
			_, srv, logs := poolServer(t, "streams:teardown")
			ackR, ackW := io.Pipe()
			defer ackW.Close()
			req, _ := http.NewRequest("POST", fmt.Sprintf("%s/?mode=%s&seconds=%g", srv.URL, mode, teardown.Seconds()), ackR)
			req.ContentLength = 1
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			resp, err := http.DefaultClient.Do(req.WithContext(ctx))
			if err != nil {
				t.Fatalf("%v; log:\n%s", err, logs)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			took := time.Since(start)
			if err != nil || len(body) != 100 || resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, %d bytes, %v; log:\n%s", resp.StatusCode, len(body), err, logs)
			}
			t.Logf("whole body after %v; close() takes %v", took.Round(time.Millisecond), teardown)
			if mode != "read" && took > teardown/2 {
				t.Fatalf("the body arrived after %v: it waited for the app's close() (%v)", took, teardown)
			}
			if _, err := ackW.Write([]byte("+")); err != nil {
				t.Fatal(err)
			}
			again, err := http.Post(srv.URL+"/?mode=read", "text/plain", strings.NewReader("+"))
			if err != nil || again.StatusCode != http.StatusOK {
				t.Fatalf("next request: %v %v; log:\n%s", again, err, logs)
			}
			again.Body.Close()
		})
	}
}

// TestUploadBoundedMemory sends 64 MiB; the app reads it in 64 KiB pieces and
// hashes it. Guest memory stays far below the body's size.
func TestUploadBoundedMemory(t *testing.T) {
	const total = 64 << 20
	logs := &logLines{}
	inst, err := testEngine(t).NewInstance(t.Context(), sandbox.AppConfig{App: "streams:upload", Dir: appsDir, Log: logs.log})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close(t.Context())
	base := inst.MemoryPeak()
	body := io.LimitReader(&pattern{}, total)
	h := sha256.New()
	io.Copy(h, io.LimitReader(&pattern{}, total))
	req := httptest.NewRequest("POST", "/", body)
	req.ContentLength = total
	rec := httptest.NewRecorder()
	pool.ServeInstance(inst, rec, req, pool.RequestInfo{}, logs.log)
	want := fmt.Sprintf("%d %s", total, hex.EncodeToString(h.Sum(nil)))
	if got := strings.TrimSpace(rec.Body.String()); got != want {
		t.Fatalf("got %q want %q; log:\n%s", got, want, logs)
	}
	grew := inst.MemoryPeak() - base
	t.Logf("guest linear memory: %d MiB after init, grew %d KiB during a 64 MiB upload", base>>20, grew>>10)
	if grew > 8<<20 {
		t.Fatalf("guest memory grew by %d MiB for a streamed upload", grew>>20)
	}
}

// pattern is an endless, non-constant byte stream.
type pattern struct{ pos int }

func (s *pattern) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(s.pos*7 + s.pos>>8)
		s.pos++
	}
	return len(p), nil
}

// TestHTTPFraming goes through a real server: HEAD has no body, a response
// without Content-Length is chunked on HTTP/1.1.
func TestHTTPFraming(t *testing.T) {
	_, srv, _ := poolServer(t, "hello:streamed")
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "one two three" || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("body %q, transfer encoding %v", body, resp.TransferEncoding)
	}
	resp, err = http.Head(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) != 0 {
		t.Fatalf("HEAD: %d with %d body bytes", resp.StatusCode, len(body))
	}
}
