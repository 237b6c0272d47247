package main

import (
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The soak: 50 tenants of every example kind and a few hostile ones, at
// least soakRequests requests spread over them by a Zipf law, while tenants
// are edited (reloads by the file watcher and by SIGHUP, one broken
// version), the warm set evicts under a small memory budget and runaway
// and crashing tenants are stopped. Loopback only, bounded in count and
// time.
const (
	soakRequests = 20_000
	soakClients  = 8
	soakMaxTime  = 5 * time.Minute
)

// soakTenant is one tenant of the soak and what it must answer.
type soakTenant struct {
	name, host string
	path       string // what clients request
	want       string // a prefix of every 200 answer
	hostile    string // "", "runaway" or "crash"
}

// soakTree lays out the tenants below a fresh folder.
func soakTree(t *testing.T) (string, []soakTenant) {
	t.Helper()
	tree := t.TempDir()
	examples := filepath.Join("..", "..", "examples", "tenants")
	var out []soakTenant
	add := func(kind string, n int, path, want, policy string) {
		for i := range n {
			name := fmt.Sprintf("%s-%02d", kind, i)
			dir := filepath.Join(tree, name)
			if err := os.CopyFS(dir, os.DirFS(filepath.Join(examples, kind))); err != nil {
				t.Fatalf("copy %s (run make vendor first): %v", kind, err)
			}
			b, err := os.ReadFile(filepath.Join(dir, "tenant.toml"))
			if err != nil {
				t.Fatal(err)
			}
			toml := regexp.MustCompile(`(?m)^hosts = .*$`).ReplaceAllString(string(b), `hosts = ["`+name+`.soak"]`)
			if err := os.WriteFile(filepath.Join(dir, "tenant.toml"), []byte(toml+policy), 0o644); err != nil {
				t.Fatal(err)
			}
			out = append(out, soakTenant{name: name, host: name + ".soak", path: path, want: want})
		}
	}
	add("hello", 30, "/", "Hello, world!", "")
	add("flask", 12, "/", "Hello from Flask!", "")
	add("bottle", 4, "/hello/soak", "", "")
	add("django", 1, "/notes/", "", "")
	hostile := `import os, time
def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/spin":
        while True:
            pass
    if path == "/crash":
        os._exit(3)
    if path == "/sleep":
        time.sleep(2)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"still here"]
`
	for i, kind := range []string{"runaway", "runaway", "crash"} {
		name := fmt.Sprintf("%s-%02d", kind, i)
		dir := filepath.Join(tree, name)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "app.py"), []byte(hostile), 0o644)
		toml := fmt.Sprintf("app = \"app:application\"\nhosts = [%q]\n[policy]\nrequest_timeout = \"1s\"\n", name+".soak")
		if kind == "crash" {
			toml = fmt.Sprintf("app = \"app:application\"\nhosts = [%q]\n", name+".soak")
		}
		os.WriteFile(filepath.Join(dir, "tenant.toml"), []byte(toml), 0o644)
		out = append(out, soakTenant{name: name, host: name + ".soak", path: "/", want: "still here", hostile: kind})
	}
	return tree, out
}

// procFacts reads what the server process holds: goroutines (from its
// profiler), descriptors and resident memory.
func procFacts(t *testing.T, p *serveProc) (goroutines, fds int, rssKiB int64) {
	t.Helper()
	_, body, err := get("", "http://"+p.admin+"/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`goroutine profile: total (\d+)`).FindStringSubmatch(body); m != nil {
		goroutines, _ = strconv.Atoi(m[1])
	}
	pid := p.cmd.Process.Pid
	entries, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(status); m != nil {
		rssKiB, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	return goroutines, len(entries), rssKiB
}

// metric reads one unlabelled series from the admin listener.
func metric(p *serveProc, name string) float64 {
	_, body, _ := get("", "http://"+p.admin+"/metrics")
	m := regexp.MustCompile(`(?m)^` + name + ` ([0-9.e+]+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak takes minutes")
	}
	tree, tenants := soakTree(t)
	p := startServe(t, tree, "--memory-budget-mb", "200", "--data-dir", t.TempDir(), "--pprof", "--access-logfile", "")
	base := "http://" + p.addr

	// Warm-up: every tenant answers, every snapshot is built.
	for _, tn := range tenants {
		p.waitFor200(t, "tenant "+tn.name, tn.host, base+tn.path, 2*time.Minute)
	}
	for deadline := time.Now().Add(3 * time.Minute); metric(p, "wsgi_wasm_snapshots_ready") < float64(len(tenants)); {
		if time.Now().After(deadline) {
			t.Fatalf("snapshots ready: %v of %d after 3 minutes; log:\n%s", metric(p, "wsgi_wasm_snapshots_ready"), len(tenants), p.logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	g0, fd0, rss0 := procFacts(t, p)
	t.Logf("baseline: %d goroutines, %d descriptors, %d MiB resident", g0, fd0, rss0>>10)

	var (
		done, unexpected atomic.Int64
		mu               sync.Mutex
		failures         []string
		stop             atomic.Bool
		wg               sync.WaitGroup
	)
	fail := func(format string, args ...any) {
		unexpected.Add(1)
		mu.Lock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
		mu.Unlock()
	}
	check := func(tn soakTenant, path string, code int, body string) {
		want := 200
		switch {
		case path == "/spin":
			want = 504
		case path == "/crash":
			want = 502
		}
		if code != want || (want == 200 && !strings.HasPrefix(body, tn.want)) {
			fail("%s%s: %d %.60q, want %d", tn.host, path, code, body, want)
		}
	}
	start := time.Now()
	for c := range soakClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(c)))
			zipf := rand.NewZipf(r, 1.1, 1, uint64(len(tenants)-1))
			client := &http.Client{Timeout: time.Minute}
			defer client.CloseIdleConnections()
			for !stop.Load() && done.Load() < soakRequests && time.Since(start) < soakMaxTime {
				tn := tenants[zipf.Uint64()]
				path := tn.path
				switch {
				case tn.hostile == "runaway" && r.Intn(10) == 0:
					path = "/spin"
				case tn.hostile == "runaway":
					tn = tenants[r.Intn(30)] // the runaways' queue is theirs; send others elsewhere
					path = tn.path
				case tn.hostile == "crash" && r.Intn(4) == 0:
					path = "/crash"
				}
				req, _ := http.NewRequest("GET", base+path, nil)
				req.Host = tn.host
				resp, err := client.Do(req)
				if err != nil {
					fail("%s%s: %v", tn.host, path, err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				done.Add(1)
				check(tn, path, resp.StatusCode, string(body))
			}
		}()
	}

	// Edits meanwhile: app.py of a hello or Flask tenant changes every
	// second (the file watcher reloads), every third change is followed by
	// a SIGHUP, and one version does not compile (the old one serves on).
	edits := 0
	for done.Load() < soakRequests && time.Since(start) < soakMaxTime && unexpected.Load() == 0 {
		time.Sleep(time.Second)
		tn := tenants[edits%42]
		app := filepath.Join(tree, tn.name, "app.py")
		src, err := os.ReadFile(app)
		if err != nil {
			t.Fatal(err)
		}
		if edits == 5 {
			os.WriteFile(app, append(src, []byte("\nthis is not python(\n")...), 0o644)
			time.Sleep(2 * time.Second)
		}
		os.WriteFile(app, append(src, []byte(fmt.Sprintf("\n# soak edit %d\n", edits))...), 0o644)
		if edits%3 == 0 {
			p.cmd.Process.Signal(syscall.SIGHUP)
		}
		edits++
	}
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d requests in %.1f s (%.0f/s), %d edits, %v evictions, %d unexpected", done.Load(), elapsed.Seconds(),
		float64(done.Load())/elapsed.Seconds(), edits, metric(p, "wsgi_wasm_evictions_total"), unexpected.Load())
	if unexpected.Load() > 0 {
		t.Fatalf("%d unexpected answers: %s\nlog tail:\n%s", unexpected.Load(), strings.Join(failures, "\n"), tail(p.logs.String(), 40))
	}
	if done.Load() < soakRequests {
		t.Fatalf("only %d of %d requests in %v", done.Load(), soakRequests, soakMaxTime)
	}
	if ev := metric(p, "wsgi_wasm_evictions_total"); ev <= 0 {
		t.Errorf("the warm set evicted nothing (%v): the budget was not exercised", ev)
	}
	for _, bad := range []string{"restore from snapshot failed", "panic"} {
		for _, line := range strings.Split(p.logs.String(), "\n") {
			if strings.Contains(line, bad) {
				t.Errorf("the log says %q: %s", bad, line)
				break
			}
		}
	}

	// Back to the baseline once idle: old versions retire, pools close.
	var g1, fd1 int
	var rss1 int64
	for deadline := time.Now().Add(time.Minute); ; {
		g1, fd1, rss1 = procFacts(t, p)
		if g1 <= g0+40 && fd1 <= fd0+40 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("after: %d goroutines, %d descriptors, %d MiB resident", g1, fd1, rss1>>10)
	if g1 > g0+40 || fd1 > fd0+40 {
		t.Errorf("not back to the baseline: goroutines %d -> %d, descriptors %d -> %d", g0, g1, fd0, fd1)
	}
	if rss1 > max(2*rss0, rss0+(768<<10)) {
		t.Errorf("resident memory %d MiB -> %d MiB", rss0>>10, rss1>>10)
	}

	// SIGTERM with requests in flight: each of them is answered.
	crash := tenants[len(tenants)-1]
	inFlight := make(chan string, 4)
	for range 4 {
		go func() {
			code, body, err := get(crash.host, base+"/sleep")
			inFlight <- fmt.Sprintf("%d %s %v", code, body, err)
		}()
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(fetchMetrics(p), `wsgi_wasm_requests_in_flight{tenant="`+crash.name+`"} 4`); {
		if time.Now().After(deadline) {
			t.Fatalf("the four slow requests never were in flight together")
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	for range 4 {
		if got := <-inFlight; got != "200 still here <nil>" {
			t.Errorf("a request in flight at SIGTERM: %s", got)
		}
	}
	if err := p.wait(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 0 {
			t.Errorf("serve after SIGTERM: %v", err)
		}
	}
}

func fetchMetrics(p *serveProc) string {
	_, body, _ := get("", "http://"+p.admin+"/metrics")
	return body
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
