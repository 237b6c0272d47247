package benchmarks

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
)

// require ends the test when a prerequisite is missing: a failure under CI
// (CI=true), where the test command provides everything, a skip elsewhere.
func require(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("missing under CI: "+format, args...)
	}
	t.Skipf("missing: "+format, args...)
}

// TestHarnessSmoke runs the server benchmark harness (bench.py --smoke: 1 s
// per cell, 3 cold tenants, 3 density tenants) end to end: install.sh
// installs or finds gunicorn, uWSGI and wrk, and every server must answer
// every request of its cells. The figures are not judged; that the harness
// measures and reports each part is.
func TestHarnessSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs servers for about a minute")
	}
	in := testinterp.Require(t)
	const python = "/usr/bin/python3.11"
	_, err := os.Stat(python)
	require(t, err == nil, "%s (Debian's python3.11)", python)
	_, err = os.Stat(filepath.Join(flaskDir, "site-packages"))
	require(t, err == nil, "Flask not vendored (run `make vendor`)")
	install := exec.Command("bash", "install.sh")
	out, err := install.CombinedOutput()
	require(t, err == nil, "install.sh (gunicorn, uWSGI, wrk): %v\n%s", err, out)

	bin := filepath.Join(t.TempDir(), "wsgi-wasm")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/wsgi-wasm").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	cmd := exec.Command(python, "bench.py", "--smoke", "--binary", bin, "--out", dir, "--baseline", "results.json")
	cmd.Env = append(os.Environ(), "WSGI_WASM_PYTHON_DIR="+in.Dir)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench.py --smoke: %v\n%s", err, log.String())
	}
	t.Logf("smoke run took %v", time.Since(start).Round(time.Second))

	var res struct {
		Servers []struct {
			Server, App string
			Workers     int
			Requests    float64
			Errors      map[string]float64
			RSSMB       float64 `json:"rss_mb"`
			Pct         map[string]float64
		}
		Profile   struct{ Top []struct{ Name string } }
		Coldstart []struct {
			Label     string
			Cold, Add []float64
		}
		Density []struct {
			Label  string
			Points []struct{ Tenants, Evictions, Restored float64 }
			Fit    struct {
				SlopeMB float64 `json:"slope_mb"`
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	// --baseline: the committed full run against this one, row by row.
	report, err := os.ReadFile(filepath.Join(dir, "RESULTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`\| wsgi-wasm, Flask hello, 2 instances: req/s \| \d+ \| \d+ \| \d+\.\d\dx \|`).Match(report) {
		t.Errorf("RESULTS.md has no before-and-after row for wsgi-wasm's Flask req/s at 2 instances")
	}
	seen := map[string]bool{}
	for _, s := range res.Servers {
		seen[s.Server] = true
		if s.Requests < 10 || s.Errors["status"] != 0 || s.Errors["timeout"] != 0 || s.RSSMB <= 0 || s.Pct["99.9"] <= 0 {
			t.Errorf("%s %s %d: %v requests, errors %v, RSS %v MiB, p99.9 %v", s.Server, s.App, s.Workers,
				s.Requests, s.Errors, s.RSSMB, s.Pct["99.9"])
		}
	}
	for _, s := range []string{"gunicorn", "uWSGI", "wsgi-wasm", "wsgi-wasm Gosched check-ins"} {
		if !seen[s] {
			t.Errorf("no cells for %s", s)
		}
	}
	if len(res.Profile.Top) == 0 {
		t.Error("no profile entries")
	}
	// Three cold-start rows: with snapshots (as shipped; the harness checks
	// every instance was restored), the same with tenants that set a warm-up
	// path, and without snapshots. Two density lines: with and without.
	if len(res.Coldstart) != 3 || !strings.Contains(res.Coldstart[1].Label, "warmup") {
		t.Errorf("cold start rows: %+v", res.Coldstart)
	} else {
		for _, c := range res.Coldstart {
			if len(c.Cold) != 3 || len(c.Add) == 0 {
				t.Errorf("cold start %s: %+v", c.Label, c)
			}
		}
	}
	if len(res.Density) != 2 {
		t.Fatalf("density: %+v", res.Density)
	}
	for _, d := range res.Density {
		if n := len(d.Points); n < 2 || d.Fit.SlopeMB <= 0 {
			t.Errorf("density %s: %+v", d.Label, d)
		}
	}
	if last := res.Density[0].Points[len(res.Density[0].Points)-1]; last.Restored != last.Tenants {
		t.Errorf("density with snapshots: %v of %v instances restored", last.Restored, last.Tenants)
	}
	md, err := os.ReadFile(filepath.Join(dir, "RESULTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| flask | 2 | gunicorn |", "| plain | 2 | wsgi-wasm |", "MiB per added tenant",
		"idle tenant to first response", "runtime._ExternalCode", "<!-- BEGIN generated:go-benchmarks -->"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("RESULTS.md lacks %q", want)
		}
	}
	for _, svg := range []string{"throughput.svg", "latency-cdf.svg", "coldstart-cdf.svg", "density.svg"} {
		f, err := os.Open(filepath.Join(dir, svg))
		if err != nil {
			t.Error(err)
			continue
		}
		d := xml.NewDecoder(f)
		lines := 0
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Errorf("%s: %v", svg, err)
				break
			}
			if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
				lines++
			}
		}
		f.Close()
		if lines == 0 {
			t.Errorf("%s has no data lines", svg)
		}
	}
}
