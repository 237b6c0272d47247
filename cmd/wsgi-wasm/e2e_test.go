package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
	"github.com/wsgi-wasm/wsgi-wasm/internal/testlog"
	"github.com/wsgi-wasm/wsgi-wasm/internal/testservices"
)

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The binary the end-to-end tests run, built once by the first of them.
var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// TestMain removes the binary after the run. Every binary a test starts
// inherits a snapshot folder of the run's own (WSGI_WASM_SNAPSHOT_DIR), so
// that tests never write into the user's cache.
func TestMain(m *testing.M) {
	snapshots, err := os.MkdirTemp("", "wsgi-wasm-e2e-snapshots")
	if err != nil {
		panic(err)
	}
	os.Setenv("WSGI_WASM_SNAPSHOT_DIR", snapshots)
	code := m.Run()
	testservices.Stop()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.RemoveAll(snapshots)
	os.Exit(code)
}

// binary builds the command (once) and returns its path.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "wsgi-wasm-e2e"); binErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "wsgi-wasm"), ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "wsgi-wasm")
}

// serveProc is a `wsgi-wasm serve` process on loopback ports.
type serveProc struct {
	cmd          *exec.Cmd
	addr, admin  string
	logs, access *testlog.Buffer // stderr (slog records) and stdout (access log)
	waited       chan error
	waitOnce     sync.Once
	exitErr      error
}

// wait waits for the process to exit and returns how it did.
func (p *serveProc) wait() error {
	p.waitOnce.Do(func() { p.exitErr = <-p.waited })
	return p.exitErr
}

// startServe serves the tenant tree with extra flags, waits until /readyz
// answers, and kills the process when the test ends.
func startServe(t *testing.T, tree string, args ...string) *serveProc {
	t.Helper()
	in := testinterp.Require(t)
	p := &serveProc{addr: freeAddr(t), admin: freeAddr(t), logs: &testlog.Buffer{}, access: &testlog.Buffer{}, waited: make(chan error, 1)}
	p.cmd = exec.Command(binary(t), append([]string{"serve", "--tenant-dir", tree, "--bind", p.addr, "--admin-bind", p.admin}, args...)...)
	p.cmd.Env = append(os.Environ(), "WSGI_WASM_PYTHON_DIR="+in.Dir)
	p.cmd.Stderr, p.cmd.Stdout = p.logs, p.access
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.waited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.wait()
	})
	p.waitFor200(t, "server ready", "", "http://"+p.admin+"/readyz", 90*time.Second)
	return p
}

// waitFor200 polls url (with the given Host) until it answers 200, and
// fails the test with the server's log if that takes longer than timeout.
func (p *serveProc) waitFor200(t *testing.T, what, host, url string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; {
		if code, _, err := get(host, url); err == nil && code == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no 200 from %s within %v; log:\n%s", what, url, timeout, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// get sends a GET with the given Host (empty: the URL's).
func get(host, url string) (int, string, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, "", err
	}
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

// copyTenants copies testdata/tenants (or the named tenants of it) into a
// fresh tree that the test may change.
func copyTenants(t *testing.T, names ...string) string {
	t.Helper()
	tree := t.TempDir()
	for _, n := range names {
		if err := os.CopyFS(filepath.Join(tree, n), os.DirFS(filepath.Join("testdata", "tenants", n))); err != nil {
			t.Fatal(err)
		}
	}
	return tree
}

// TestServeEndToEnd builds the real binary, serves a tenant tree on
// loopback, and checks routing, the admin listener, and that SIGTERM lets a
// request in flight finish before the process exits 0.
func TestServeEndToEnd(t *testing.T) {
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "slow"), 0o755)
	os.WriteFile(filepath.Join(tree, "slow", "tenant.toml"), []byte("app = \"app:application\"\nhosts = [\"slow.test\"]\n[pool]\nmin_warm = 1\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "slow", "app.py"), []byte(`import time
def application(environ, start_response):
    time.sleep(float(environ.get("QUERY_STRING") or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]
`), 0o644)
	p := startServe(t, tree)
	addr, admin, logs, cmd := p.addr, p.admin, p.logs, p.cmd
	if code, body, err := get("slow.test", "http://"+addr+"/"); err != nil || code != 200 || body != "done" {
		t.Fatalf("slow.test: %d %q %v", code, body, err)
	}
	if code, _, _ := get("nobody.test", "http://"+addr+"/"); code != 404 {
		t.Fatalf("unknown host: %d", code)
	}
	if _, body, _ := get("", "http://"+admin+"/metrics"); !strings.Contains(body, `wsgi_wasm_requests_total{code="2xx",tenant="slow"} 1`) {
		t.Fatalf("metrics:\n%.1500s", body)
	}
	// The access log (standard output) has gunicorn's format and the tenant.
	for _, want := range []string{`"GET / HTTP/1.1" 200 4 "-" "Go-http-client/1.1" slow `, `"GET / HTTP/1.1" 404 19 "-" "Go-http-client/1.1" - `} {
		if !strings.Contains(p.access.String(), want) {
			t.Fatalf("access log lacks %q:\n%s", want, p.access.String())
		}
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
	if err := p.wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
	}
	if _, _, err := get("slow.test", "http://"+addr+"/"); err == nil {
		t.Fatal("still accepting after SIGTERM")
	}
}

// rawStatus sends raw bytes on a new connection and returns the status code
// of the answer, for requests net/http's client would refuse to send.
func rawStatus(t *testing.T, addr, raw string) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to %.40q: %v", raw, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestServeLimits: the real binary answers the documented statuses: 400 for
// a malformed request, 414 and 431 for gunicorn's request-line and header
// limits, 413 for a body over the policy's max_body_bytes, 503 for a full
// queue and for a tenant that does not load (while the others serve), 504
// for a request past its policy's request_timeout.
func TestServeLimits(t *testing.T) {
	p := startServe(t, copyTenants(t, "limits", "broken"))
	base := "http://" + p.addr
	do := func(method, path string, body io.Reader, header http.Header) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, body)
		req.Host = "limits.test"
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	// The tenant's first request starts its first instance, which the
	// 1s request_timeout covers (a 504 if it is late): wait for one to
	// serve before testing the limits.
	p.waitFor200(t, "limits tenant serving", "limits.test", base+"/", 60*time.Second)
	many := http.Header{}
	huge := http.Header{} // each field within 8190 bytes, all together well over net/http's MaxHeaderBytes
	for i := 0; i < 101; i++ {
		many.Set(fmt.Sprintf("X-Field-%d", i), "v")
		if i < 20 {
			huge.Set(fmt.Sprintf("X-Field-%d", i), strings.Repeat("v", 8000))
		}
	}
	for _, tc := range []struct {
		name, method, path string
		body               io.Reader
		header             http.Header
		code               int
		want               string
	}{
		{"within limits", "POST", "/", strings.NewReader(strings.Repeat("b", 100)), nil, 200, "read 100 bytes"},
		{"request line over 4094 bytes", "GET", "/" + strings.Repeat("a", 4094), nil, nil, 414, ""},
		{"101 header fields", "GET", "/", nil, many, 431, ""},
		{"a header field over 8190 bytes", "GET", "/", nil, http.Header{"X-Big": {strings.Repeat("v", 8190)}}, 431, ""},
		{"headers over 64 KiB", "GET", "/", nil, huge, 431, ""},
		{"body over max_body_bytes", "POST", "/", strings.NewReader(strings.Repeat("b", 101)), nil, 413, ""},
		{"past request_timeout in a Python loop", "GET", "/spin", nil, nil, 504, ""},
		{"past request_timeout in time.sleep", "GET", "/sleep?10", nil, nil, 504, ""},
	} {
		start := time.Now()
		resp, body := do(tc.method, tc.path, tc.body, tc.header)
		if resp.StatusCode != tc.code || (tc.want != "" && body != tc.want) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, resp.StatusCode, body, tc.code, tc.want)
		}
		if tc.code == 504 && time.Since(start) > 5*time.Second {
			t.Errorf("%s: answered after %v; the policy's request_timeout is 1s", tc.name, time.Since(start))
		}
	}

	// Malformed requests, which net/http answers 400 before any tenant.
	for name, raw := range map[string]string{
		"bad header name":    "GET / HTTP/1.1\r\nHost: limits.test\r\nBad Header: x\r\n\r\n",
		"bad request line":   "GET /\r\nHost: limits.test\r\n\r\n",
		"two Content-Length": "POST / HTTP/1.1\r\nHost: limits.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
	} {
		if code := rawStatus(t, p.addr, raw); code != 400 {
			t.Errorf("%s: %d, want 400", name, code)
		}
	}

	// A tenant that does not load answers 503 for its hosts only.
	if code, _, err := get("broken.test", base+"/"); err != nil || code != 503 {
		t.Errorf("broken tenant: %d %v, want 503", code, err)
	}

	// One instance and a queue of one: a third request meanwhile gets 503.
	results := make(chan int, 2)
	for i := 0; i < 2; i++ {
		go func() {
			code, _, _ := get("limits.test", base+"/sleep?0.45")
			results <- code
		}()
		time.Sleep(150 * time.Millisecond)
	}
	resp, _ := do("GET", "/", nil, nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("queue full: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if a, b := <-results, <-results; a != 200 || b != 200 {
		t.Errorf("the running and the queued request: %d and %d, want 200", a, b)
	}
	if _, body, _ := get("", "http://"+p.admin+"/metrics"); !strings.Contains(body, `wsgi_wasm_guest_failures_total{kind="timeout",tenant="limits"} 2`) {
		t.Errorf("metrics lack the two timeouts:\n%.3000s", body)
	}
}

// TestServeReloadUnderLoad: four keep-alive clients request a tenant without
// pause while its app.py changes version several times, reloaded by SIGHUP
// and by the file watcher in turn. No request may fail: each answer is 200
// from some version, and once the last version is seen, only it is seen.
func TestServeReloadUnderLoad(t *testing.T) {
	tree := copyTenants(t, "reload")
	p := startServe(t, tree)
	url := "http://" + p.addr + "/"
	const reloads, clients = 4, 4
	valid := map[string]bool{"v0": true}
	for v := 1; v <= reloads; v++ {
		valid[fmt.Sprintf("v%d", v)] = true
	}
	var (
		stop             atomic.Bool
		requests, failed atomic.Int64
		latest           atomic.Value // the last version a client saw
		mu               sync.Mutex
		failures         []string
		wg               sync.WaitGroup
	)
	latest.Store("v0")
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 30 * time.Second}
			defer client.CloseIdleConnections()
			for !stop.Load() {
				req, _ := http.NewRequest("GET", url, nil)
				req.Host = "reload.test"
				resp, err := client.Do(req)
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				requests.Add(1)
				if err != nil || resp.StatusCode != 200 || !valid[string(body)] {
					failed.Add(1)
					mu.Lock()
					if len(failures) < 10 {
						code := 0
						if resp != nil {
							code = resp.StatusCode
						}
						failures = append(failures, fmt.Sprintf("%v %d %q", err, code, body))
					}
					mu.Unlock()
					continue
				}
				latest.Store(string(body))
			}
		}()
	}
	app := filepath.Join(tree, "reload", "app.py")
	src, err := os.ReadFile(app)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	loads := func() int { return strings.Count(p.logs.String(), `msg="tenant loaded"`) }
	for v := 1; v <= reloads; v++ {
		version, before := fmt.Sprintf("v%d", v), loads()
		// Written whole, then renamed over the old file, as a deploy does.
		tmp := app + ".new"
		os.WriteFile(tmp, []byte(strings.Replace(string(src), `"v0"`, `"`+version+`"`, 1)), 0o644)
		if err := os.Rename(tmp, app); err != nil {
			t.Fatal(err)
		}
		how := "file watcher"
		if v%2 == 1 {
			how = "SIGHUP"
			p.cmd.Process.Signal(syscall.SIGHUP)
		}
		deadline := time.Now().Add(30 * time.Second)
		for latest.Load() != version || loads() == before {
			if time.Now().After(deadline) {
				stop.Store(true)
				wg.Wait()
				t.Fatalf("%s never served after %s; log:\n%s", version, how, p.logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("%s loaded and served %.2f s after the change (%s)", version, time.Since(start).Seconds(), how)
		start = time.Now()
	}
	time.Sleep(time.Second) // traffic on the last version, old ones retiring
	stop.Store(true)
	wg.Wait()
	t.Logf("%d requests during %d reloads, %d failed", requests.Load(), reloads, failed.Load())
	if failed.Load() > 0 || requests.Load() < 100 {
		t.Fatalf("%d of %d requests failed: %v; log:\n%s", failed.Load(), requests.Load(), failures, p.logs.String())
	}
	last := fmt.Sprintf("v%d", reloads)
	for i := 0; i < 20; i++ {
		if code, body, err := get("reload.test", url); err != nil || code != 200 || body != last {
			t.Fatalf("after the last reload: %d %q %v, want %s", code, body, err, last)
		}
	}
	// Reloads close together may read the same version, so not every
	// version is retired separately; the old ones are retired, though.
	retired := strings.Count(p.logs.String(), "tenant version retired")
	t.Logf("%d tenant loads, %d versions retired", loads(), retired)
	if retired == 0 {
		t.Errorf("no version retired; log:\n%s", p.logs.String())
	}
}

// exitCode is the exit status of a command that ran (err from its Run or
// Output); any other error ends the test.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}
