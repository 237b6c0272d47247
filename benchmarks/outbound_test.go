package benchmarks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
	"github.com/wsgi-wasm/wsgi-wasm/internal/testservices"
)

// The outbound benchmark (make bench-outbound writes OUTBOUND.md; without
// WSGI_WASM_BENCH_OUTBOUND it is a smoke run into a temporary folder that
// checks every figure is measured): Flask + pg8000 under gunicorn and
// wsgi-wasm driven by wrk, and the workloads of apps/outbound/outbench.py
// timed natively and inside the sandbox, against real PostgreSQL, Redis and
// HTTPS servers on loopback (internal/testservices).

// outboundScale is how long and how much the outbound benchmark measures.
type outboundScale struct {
	runs, seconds, warmup int            // wrk cells per server, seconds each, warm-up seconds
	ops                   map[string]int // operations per workload
}

var (
	outboundFull = outboundScale{runs: 3, seconds: 10, warmup: 3, ops: map[string]int{
		"roundtrip": 5000, "select": 2000, "https_new": 100, "https_reused": 1000, "login": 5, "login_pure": 2}}
	outboundSmoke = outboundScale{runs: 1, seconds: 1, warmup: 1, ops: map[string]int{
		"roundtrip": 50, "select": 20, "https_new": 3, "https_reused": 10, "login": 1, "login_pure": 1}}
	// outboundWorkloads in report order.
	outboundWorkloads = []string{"roundtrip", "select", "https_new", "https_reused", "login", "login_pure"}
)

// benchTools are what benchmarks/install.sh installs or finds.
type benchTools struct{ wrk, python, nativePath string }

func installTools(t *testing.T) benchTools {
	t.Helper()
	out, err := exec.Command("bash", "install.sh").Output()
	var stderr []byte
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	require(t, err == nil, "install.sh (gunicorn, uWSGI, wrk): %v\n%s", err, stderr)
	vars := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = strings.Trim(v, "'")
		}
	}
	return benchTools{wrk: vars["WRK"], python: vars["PYTHON"], nativePath: vars["NATIVE_PYTHONPATH"]}
}

// wrkResult is the JSON line of wrk_report.lua.
type wrkResult struct {
	Requests   float64
	DurationUS float64 `json:"duration_us"`
	Errors     map[string]float64
	Pcts       [][2]float64 `json:"percentiles"`
}

func (r wrkResult) rps() float64 { return r.Requests / (r.DurationUS / 1e6) }

func (r wrkResult) pct(p float64) float64 {
	for _, q := range r.Pcts {
		if q[0] == p {
			return q[1]
		}
	}
	return 0
}

func (r wrkResult) errors() float64 {
	var n float64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

var wrkLine = regexp.MustCompile(`(?m)^WRKJSON (.*)$`)

func runWrk(t *testing.T, wrk, target string, seconds int) wrkResult {
	t.Helper()
	out, err := exec.Command(wrk, "-t1", "-c8", fmt.Sprintf("-d%ds", seconds), "--latency", "-s", "wrk_report.lua", target).CombinedOutput()
	m := wrkLine.FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("wrk %s: %v\n%s", target, err, out)
	}
	var r wrkResult
	if err := json.Unmarshal(m[1], &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// cpuTicks is the user+system CPU of a process and its reaped children, in
// clock ticks (100 a second on Linux).
func cpuTicks(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	var n float64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		v, _ := strconv.ParseFloat(f[i], 64)
		n += v
	}
	return n
}

// treeCPU is the CPU seconds of pid and its live descendants.
func treeCPU(pid int) float64 {
	kids := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		pp, _ := strconv.Atoi(f[1])
		kids[pp] = append(kids[pp], p)
	}
	var total float64
	todo := []int{pid}
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		total += cpuTicks(p)
		todo = append(todo, kids[p]...)
	}
	return total / 100
}

// busyCores is the CPU time the whole machine has used, in seconds.
func busySeconds() float64 {
	b, _ := os.ReadFile("/proc/stat")
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:]
	var n float64
	for i, s := range f {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		v, _ := strconv.ParseFloat(s, 64)
		n += v
	}
	return n / 100
}

// startServer starts cmd in its own process group, stopped when the test
// ends, logging into the test's temporary folder.
func startServer(t *testing.T, name string, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
	})
	return cmd
}

func serverLog(cmd *exec.Cmd) string {
	f, ok := cmd.Stdout.(*os.File)
	if !ok {
		return ""
	}
	b, _ := os.ReadFile(f.Name())
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// waitFor polls url until it answers 200, within a timeout.
func waitFor(t *testing.T, cmd *exec.Cmd, u string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if r, err := http.Get(u); err == nil {
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
			if r.StatusCode == 200 {
				return
			}
		}
		if cmd.ProcessState != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer 200 within %v; log:\n%s", u, timeout, serverLog(cmd))
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// linkTree hard-links (or copies, across file systems) the files of src
// into dst.
func linkTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			if d.Name() == "__pycache__" {
				return filepath.SkipDir
			}
			return os.MkdirAll(to, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if os.Link(p, to) == nil {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// serverCell is one wrk run against one server.
type serverCell struct {
	Server           string
	RPS, P50, P99    float64 // req/s; latencies in ms
	P999             float64
	Errors, Requests float64
	CPUPerReqUS      float64 // server CPU per request
	OtherCores       float64 // cores used by everything but the server and wrk
}

// workloadFigure is one outbench workload, natively and in the sandbox.
type workloadFigure struct {
	Name             string
	Native, Sandbox  float64 // µs per operation; 0: not measured
	Ops              int
	NativeNote, Note string
}

// TestOutboundFigures is the outbound benchmark; see the comment above.
func TestOutboundFigures(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PostgreSQL, Redis, gunicorn and wsgi-wasm for about a minute")
	}
	outPath := os.Getenv("WSGI_WASM_BENCH_OUTBOUND")
	scale := outboundSmoke
	if outPath != "" {
		scale = outboundFull
	}
	in := testinterp.Require(t)
	tools := installTools(t)
	site := testservices.SitePackages(t)
	_, err := os.Stat(filepath.Join(flaskDir, "site-packages"))
	require(t, err == nil, "Flask not vendored (run `make vendor`)")
	pg := testservices.Postgres(t)
	rd := testservices.Redis(t)
	httpsURL, caPEM := testservices.HTTPS(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("hello over TLS\n"))
	}))
	hu, _ := url.Parse(httpsURL)

	// The tenant: the app, Flask and the client libraries, the test CA.
	work := t.TempDir()
	app := filepath.Join(work, "tenants", "outbound")
	linkTree(t, filepath.Join("apps", "outbound"), app)
	linkTree(t, filepath.Join(flaskDir, "site-packages"), filepath.Join(app, "site-packages"))
	linkTree(t, site, filepath.Join(app, "site-packages"))
	if err := os.WriteFile(filepath.Join(app, "ca.pem"), caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(append([]string{"BENCH_HTTPS_HOST=" + hu.Hostname(), "BENCH_HTTPS_PORT=" + hu.Port()}, pg.Env()...), rd.Env()...)
	var toml strings.Builder
	toml.WriteString("app = \"app:app\"\nhosts = [\"*\"]\n\n[env]\nBENCH_CA = \"/app/ca.pem\"\n")
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&toml, "%s = %q\n", k, v)
	}
	fmt.Fprintf(&toml, "\n[policy]\nmax_instances = 2\noutbound = [%q, %q, %q]\n\n[pool]\nmin_warm = 2\n",
		pg.Addr(), rd.Addr(), hu.Host)
	if err := os.WriteFile(filepath.Join(app, "tenant.toml"), []byte(toml.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	nativeEnv := append([]string{"PYTHONPATH=" + app + ":" + site + ":" + tools.nativePath, "PYTHONDONTWRITEBYTECODE=1",
		"LANG=C.UTF-8", "BENCH_CA=" + filepath.Join(app, "ca.pem"), "PATH=" + os.Getenv("PATH")}, env...)

	// One table of 1,000 rows, written natively.
	seed := exec.Command(tools.python, "-c", `import outbench
c = outbench.pg(); cur = c.cursor()
cur.execute("CREATE TABLE items (id integer PRIMARY KEY, body text NOT NULL)")
for i in range(1, 1001):
    cur.execute("INSERT INTO items VALUES (%s, %s)", (i, "item %d " % i + "x" * 64))
c.commit()`)
	seed.Env = nativeEnv
	if out, err := seed.CombinedOutput(); err != nil {
		t.Fatalf("seeding PostgreSQL: %v\n%s", err, out)
	}

	bin := filepath.Join(work, "wsgi-wasm")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/wsgi-wasm").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	wport, admin, gport := freePort(t), freePort(t), freePort(t)
	wcmd := exec.Command(bin, "--quiet", "serve", "--tenant-dir", filepath.Dir(app), "--bind", fmt.Sprintf("127.0.0.1:%d", wport),
		"--admin-bind", fmt.Sprintf("127.0.0.1:%d", admin), "--data-dir", filepath.Join(work, "data"))
	wcmd.Env = append(os.Environ(), "WSGI_WASM_PYTHON_DIR="+in.Dir, "WSGI_WASM_SNAPSHOT_DIR="+filepath.Join(work, "snapshots"))
	startServer(t, "wsgi-wasm", wcmd)
	gcmd := exec.Command(tools.python, "-m", "gunicorn", "--workers", "2", "--bind", fmt.Sprintf("127.0.0.1:%d", gport), "app:app")
	gcmd.Dir, gcmd.Env = app, nativeEnv
	startServer(t, "gunicorn", gcmd)
	servers := []struct {
		name string
		cmd  *exec.Cmd
		port int
	}{{"gunicorn", gcmd, gport}, {"wsgi-wasm", wcmd, wport}}
	for _, s := range servers {
		waitFor(t, s.cmd, fmt.Sprintf("http://127.0.0.1:%d/item/1", s.port), 3*time.Minute)
	}

	// Flask + pg8000 under wrk, servers interleaved run by run.
	var cells []serverCell
	for run := 0; run < scale.runs; run++ {
		for _, s := range servers {
			target := fmt.Sprintf("http://127.0.0.1:%d/item/1", s.port)
			runWrk(t, tools.wrk, target, scale.warmup)
			cpu0, busy0, t0 := treeCPU(s.cmd.Process.Pid), busySeconds(), time.Now()
			r := runWrk(t, tools.wrk, target, scale.seconds)
			cpu1, busy1, wall := treeCPU(s.cmd.Process.Pid), busySeconds(), time.Since(t0).Seconds()
			// wrk -t1 keeps about one core busy; the rest of the
			// machine's CPU beyond the server's is other load.
			other := (busy1 - busy0 - (cpu1 - cpu0)) / wall
			c := serverCell{Server: s.name, RPS: r.rps(), P50: r.pct(50) / 1e3, P99: r.pct(99) / 1e3, P999: r.pct(99.9) / 1e3,
				Errors: r.errors(), Requests: r.Requests, CPUPerReqUS: (cpu1 - cpu0) / r.Requests * 1e6, OtherCores: other}
			t.Logf("%-9s %8.0f req/s  p50 %.2f ms  p99 %.2f ms  %.0f µs CPU/req  other load %.2f cores (wrk included)",
				c.Server, c.RPS, c.P50, c.P99, c.CPUPerReqUS, c.OtherCores)
			if c.Errors > 0 || c.Requests < 10 {
				t.Errorf("%s: %v requests, %v errors (log:\n%s)", s.name, c.Requests, c.Errors, serverLog(s.cmd))
			}
			cells = append(cells, c)
		}
	}

	// The workloads, natively and in the sandbox.
	var figures []workloadFigure
	iterations := 0
	for _, w := range outboundWorkloads {
		f := workloadFigure{Name: w, Ops: scale.ops[w]}
		native := exec.Command(tools.python, "-c", fmt.Sprintf("import json, outbench; print(json.dumps(outbench.measure(%q, %d)))", w, f.Ops))
		native.Env = nativeEnv
		out, err := native.CombinedOutput()
		switch {
		case err == nil:
			f.Native, _ = strconv.ParseFloat(strings.TrimSpace(lastLine(out)), 64)
		case bytes.Contains(out, []byte("LookupError")):
			f.NativeNote = "n/a (OpenSSL's pbkdf2_hmac only)"
		default:
			t.Fatalf("native %s: %v\n%s", w, err, out)
		}
		res, code := getJSON(t, fmt.Sprintf("http://127.0.0.1:%d/measure/%s?n=%d", wport, w, f.Ops))
		switch {
		case code == 200:
			f.Sandbox = res["us"].(float64)
			iterations = int(res["iterations"].(float64))
		case code == 404 && w == "login_pure":
			f.Note = fmt.Sprint(res["error"])
		default:
			t.Fatalf("sandbox %s: %d %v (log:\n%s)", w, code, res, serverLog(wcmd))
		}
		t.Logf("%-12s native %10.1f µs  sandbox %10.1f µs  %s%s", w, f.Native, f.Sandbox, f.NativeNote, f.Note)
		if f.Sandbox <= 0 && w != "login_pure" || f.Native <= 0 && w != "login_pure" {
			t.Errorf("%s: not measured: native %v, sandbox %v", w, f.Native, f.Sandbox)
		}
		figures = append(figures, f)
	}

	doc := outboundReport(cells, figures, iterations, scale, outPath == "")
	if outPath == "" {
		outPath = filepath.Join(t.TempDir(), "OUTBOUND.md")
	}
	if err := os.WriteFile(outPath, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| gunicorn |", "| wsgi-wasm |", "| roundtrip |", "| login |"} {
		if !strings.Contains(doc, want) {
			t.Errorf("OUTBOUND.md lacks %q", want)
		}
	}
	t.Logf("wrote %s", outPath)
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func getJSON(t *testing.T, u string) (map[string]any, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %d %s", u, r.StatusCode, b)
	}
	return m, r.StatusCode
}

// median of the cells of one server, by a field.
func median(cells []serverCell, server string, field func(serverCell) float64) float64 {
	var v []float64
	for _, c := range cells {
		if c.Server == server {
			v = append(v, field(c))
		}
	}
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

// machineLine names the CPU, cores, memory and kernel.
func machineLine() string {
	cpu := "?"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	var u syscall.Utsname
	syscall.Uname(&u)
	rel := make([]byte, 0, len(u.Release))
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		rel = append(rel, byte(c))
	}
	var si syscall.Sysinfo_t
	syscall.Sysinfo(&si)
	return fmt.Sprintf("%s, %d cores (%s), %.0f GiB RAM, Linux %s, %s", runtime.GOARCH, runtime.NumCPU(), cpu,
		float64(si.Totalram)*float64(si.Unit)/(1<<30), rel, runtime.Version())
}

func outboundReport(cells []serverCell, figures []workloadFigure, iterations int, scale outboundScale, smoke bool) string {
	var b strings.Builder
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	run := "full run"
	if smoke {
		run = "smoke run (tiny counts: not figures)"
	}
	fmt.Fprintf(&b, `# Outbound connections: figures

Written by `+"`make bench-outbound`"+` (benchmarks/outbound_test.go, TestOutboundFigures with
WSGI_WASM_BENCH_OUTBOUND set); nothing below is typed. Run: %s, %s, commit %s; %s.

Servers, all on loopback and started by the harness from Debian's packages
(internal/testservices): PostgreSQL 15, Redis 7, and a Go HTTPS server with a
certificate from a test CA (TLS 1.3, ECDSA P-256). The app is
benchmarks/apps/outbound: Flask 2.2 and pg8000 1.10 (pure Python), the same files
natively and in the sandbox.

## Flask + pg8000, one SELECT by primary key per request

GET /item/1 reads one row on the worker's kept connection (opened on its first
request). gunicorn 20 with 2 sync workers on Debian's python3.11; wsgi-wasm
serve with `+"`max_instances = 2`, `min_warm = 2`"+` and the rules
`+"`outbound = [PostgreSQL, Redis, HTTPS]`"+`. Load: `+"`wrk -t1 -c8 -d%ds --latency`"+` after
a %d s warm-up, %d runs per server, servers interleaved; the table has every
run, the reading takes medians. "Other load" is the machine's CPU used by
anything but the server during the run, wrk's own core included (about 1.0
on an otherwise idle machine).

| server | req/s | p50 ms | p99 ms | p99.9 ms | errors | server CPU µs/req | other load (cores) |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
`, time.Now().UTC().Format("2006-01-02"), run, strings.TrimSpace(string(commit)), machineLine(), scale.seconds, scale.warmup, scale.runs)
	for _, c := range cells {
		fmt.Fprintf(&b, "| %s | %.0f | %.2f | %.2f | %.2f | %.0f | %.0f | %.2f |\n", c.Server, c.RPS, c.P50, c.P99, c.P999, c.Errors, c.CPUPerReqUS, c.OtherCores)
	}
	rps := func(c serverCell) float64 { return c.RPS }
	p99 := func(c serverCell) float64 { return c.P99 }
	cpu := func(c serverCell) float64 { return c.CPUPerReqUS }
	g, w := "gunicorn", "wsgi-wasm"
	fmt.Fprintf(&b, "\nReading (medians): wsgi-wasm serves %.2fx gunicorn's req/s (%.0f against %.0f) with a p99 of %.2fx "+
		"gunicorn's (%.2f ms against %.2f ms), at %.2fx its server CPU per request (%.0f µs against %.0f µs).\n",
		median(cells, w, rps)/median(cells, g, rps), median(cells, w, rps), median(cells, g, rps),
		median(cells, w, p99)/median(cells, g, p99), median(cells, w, p99), median(cells, g, p99),
		median(cells, w, cpu)/median(cells, g, cpu), median(cells, w, cpu), median(cells, g, cpu))

	fmt.Fprintf(&b, `
## Per operation, natively and in the sandbox

Each workload of benchmarks/apps/outbound/outbench.py runs n times after one
untimed run: natively by `+"`python3.11 -c`"+`, in the sandbox inside one request
(GET /measure/NAME) of the same wsgi-wasm instance type as above. Microseconds
per operation.

| workload | what | n | native µs | sandbox µs | sandbox − native µs | ratio |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
`)
	what := map[string]string{
		"roundtrip":    "Redis PING and its +PONG on an open socket (6 bytes out, 7 in)",
		"select":       "pg8000 `SELECT body FROM items WHERE id = 1` on an open connection",
		"https_new":    "new HTTPS connection: TCP, TLS handshake with verification, GET /, close",
		"https_reused": "GET / on a kept HTTPS connection (http.client)",
		"login":        fmt.Sprintf("Django 3.2 `PBKDF2PasswordHasher.verify` (SHA-256, %d iterations), as shipped", iterations),
		"login_pure":   "the same with CPython's pure-Python `pbkdf2_hmac` (the sandbox before host-backed PBKDF2)",
	}
	for _, f := range figures {
		native, sandbox, diff, ratio := "—", "—", "—", "—"
		if f.Native > 0 {
			native = fmt.Sprintf("%.1f", f.Native)
		} else if f.NativeNote != "" {
			native = f.NativeNote
		}
		if f.Sandbox > 0 {
			sandbox = fmt.Sprintf("%.1f", f.Sandbox)
		} else if f.Note != "" {
			sandbox = f.Note
		}
		if f.Native > 0 && f.Sandbox > 0 {
			diff = fmt.Sprintf("%+.1f", f.Sandbox-f.Native)
			ratio = fmt.Sprintf("%.2fx", f.Sandbox/f.Native)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s |\n", f.Name, what[f.Name], f.Ops, native, sandbox, diff, ratio)
	}
	b.WriteString(`
The round trip's difference is what the host adds per round trip on an open
connection (two host calls, net_send and net_recv, plus the guest's socket
layer), measured against the same Python code natively.
`)
	return b.String()
}
