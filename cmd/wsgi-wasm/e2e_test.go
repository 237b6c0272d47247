package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
)

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServeEndToEnd builds the real binary, serves a tenant tree on
// loopback, and checks routing, the admin listener, and that SIGTERM lets a
// request in flight finish before the process exits 0.
func TestServeEndToEnd(t *testing.T) {
	in := testinterp.Require(t)
	bin := filepath.Join(t.TempDir(), "wsgi-wasm")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "slow"), 0o755)
	os.WriteFile(filepath.Join(tree, "slow", "tenant.toml"), []byte("app = \"app:application\"\nhosts = [\"slow.test\"]\n[pool]\nmin_warm = 1\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "slow", "app.py"), []byte(`import time
def application(environ, start_response):
    time.sleep(float(environ.get("QUERY_STRING") or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]
`), 0o644)
	addr, admin := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "serve", "--tenant-dir", tree, "--bind", addr, "--admin-bind", admin)
	cmd.Env = append(os.Environ(), "WSGI_WASM_PYTHON_DIR="+in.Dir)
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	get := func(host, url string) (int, string, error) {
		req, _ := http.NewRequest("GET", url, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if code, _, err := get("", "http://"+admin+"/readyz"); err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready; log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body, err := get("slow.test", "http://"+addr+"/"); err != nil || code != 200 || body != "done" {
		t.Fatalf("slow.test: %d %q %v", code, body, err)
	}
	if code, _, _ := get("nobody.test", "http://"+addr+"/"); code != 404 {
		t.Fatalf("unknown host: %d", code)
	}
	if _, body, _ := get("", "http://"+admin+"/metrics"); !strings.Contains(body, `wsgi_wasm_requests_total{code="2xx",tenant="slow"} 1`) {
		t.Fatalf("metrics:\n%.1500s", body)
	}
	// A changed tenant is picked up by the file watcher (debounced).
	os.WriteFile(filepath.Join(tree, "slow", "app.py"), []byte(`import time
def application(environ, start_response):
    time.sleep(float(environ.get("QUERY_STRING") or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]
def unused(): return "v2"
`), 0o644)
	reloaded := false
	for i := 0; i < 100 && !reloaded; i++ {
		time.Sleep(50 * time.Millisecond)
		reloaded = strings.Contains(logs.String(), "tenant version retired")
	}
	if !reloaded {
		t.Fatalf("no reload after a tenant file changed; log:\n%s", logs.String())
	}
	if code, body, err := get("slow.test", "http://"+addr+"/"); err != nil || code != 200 || body != "done" {
		t.Fatalf("after reload: %d %q %v", code, body, err)
	}
	// A request in flight when SIGTERM arrives still gets its answer.
	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, body, err := get("slow.test", "http://"+addr+"/?1.0")
		done <- result{code, body, err}
	}()
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.code != 200 || r.body != "done" {
		t.Fatalf("in-flight request during SIGTERM: %d %q %v", r.code, r.body, r.err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
	}
	if _, _, err := get("slow.test", "http://"+addr+"/"); err == nil {
		t.Fatal("still accepting after SIGTERM")
	}
}

// syncBuffer collects the server's log while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
