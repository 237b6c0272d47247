package main

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
	pythonwasi "github.com/wsgi-wasm/wsgi-wasm/python-wasi"
)

var (
	wheelsOnce sync.Once
	wheelsDir  string
	wheelsErr  error
)

// flaskWheels makes wheels of Flask and its dependencies from Debian's
// packages with examples/debwheels.sh, once per test binary. Under CI a
// failure fails the test (the script fetches what it needs); elsewhere it
// skips.
func flaskWheels(t *testing.T) string {
	t.Helper()
	wheelsOnce.Do(func() {
		if wheelsDir, wheelsErr = os.MkdirTemp("", "wsgi-wasm-wheels-"); wheelsErr != nil {
			return
		}
		cmd := exec.Command("nice", "bash", "../../examples/debwheels.sh", wheelsDir,
			"python3-flask", "python3-werkzeug", "python3-jinja2", "python3-markupsafe", "python3-itsdangerous", "python3-click")
		if out, err := cmd.CombinedOutput(); err != nil {
			wheelsErr = fmt.Errorf("examples/debwheels.sh: %v\n%s", err, out)
		}
	})
	if wheelsErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(wheelsErr)
		}
		t.Skip(wheelsErr)
	}
	return wheelsDir
}

// fixtureWheel writes a wheel of name 1.0 with files (path -> content), a
// dist-info and a RECORD, tagged tag, into dir.
func fixtureWheel(t *testing.T, dir, name, tag string, files map[string]string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name+"-1.0-"+tag+".whl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z := zip.NewWriter(f)
	di := name + "-1.0.dist-info/"
	files[di+"METADATA"] = "Metadata-Version: 2.1\nName: " + name + "\nVersion: 1.0\n"
	files[di+"WHEEL"] = "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: " + tag + "\n"
	var record strings.Builder
	for p, data := range files {
		w, err := z.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(data))
		sum := sha256.Sum256([]byte(data))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", p, base64.RawURLEncoding.EncodeToString(sum[:]), len(data))
	}
	record.WriteString(di + "RECORD,,\n")
	w, _ := z.Create(di + "RECORD")
	w.Write([]byte(record.String()))
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
}

// runCLI runs the binary with args in dir and returns its standard output,
// standard error and exit code.
func runCLI(t *testing.T, in pythonwasi.Interpreter, dir string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command("nice", append([]string{binary(t)}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "WSGI_WASM_PYTHON_DIR="+in.Dir)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := exitCode(t, err)
	return stdout.String(), stderr.String(), code
}

// TestInstallFlask: a Flask tenant's requirements.txt installed from wheels
// made from Debian's packages, by pip in the sandbox: the old
// site-packages replaced, MarkupSafe's compiled speedup dropped with a
// note, no symbolic link or native module left, nothing else written in the
// tenant; then, in the sandbox, the app imports and importlib.metadata sees
// Flask's version and its entry point.
func TestInstallFlask(t *testing.T) {
	in := testinterp.Require(t)
	wheels := flaskWheels(t)
	tenant := t.TempDir()
	for _, f := range []string{"app.py", "tenant.toml"} {
		data, err := os.ReadFile(filepath.Join("../../examples/tenants/flask", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(tenant, f), data, 0o644)
	}
	// Nested requirements and constraints files, followed on the host.
	os.WriteFile(filepath.Join(tenant, "requirements.txt"), []byte("# what app.py needs\nFlask>=2.2\n-r reqs/flask-deps.txt\n"), 0o644)
	os.MkdirAll(filepath.Join(tenant, "reqs"), 0o755)
	os.WriteFile(filepath.Join(tenant, "reqs", "flask-deps.txt"), []byte("Werkzeug\nJinja2\n-c pins.txt\n--requirement=more.txt\n"), 0o644)
	os.WriteFile(filepath.Join(tenant, "reqs", "more.txt"), []byte("MarkupSafe\nitsdangerous\nclick\n"), 0o644)
	os.WriteFile(filepath.Join(tenant, "reqs", "pins.txt"), []byte("click==8.1.3\n"), 0o644)
	os.MkdirAll(filepath.Join(tenant, "site-packages"), 0o755)
	os.WriteFile(filepath.Join(tenant, "site-packages", "stale.py"), nil, 0o644)

	out, errOut, code := runCLI(t, in, tenant, "-q", "install", "--find-links", wheels, ".")
	if code != 0 {
		t.Fatalf("install: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("%s", out)
	for _, want := range []string{"note: MarkupSafe-2.1.2: dropped its compiled modules (markupsafe/_speedups.cpython-311", "Flask-2.2.2", "Werkzeug-2.2.2", "click-8.1.3"} {
		if !strings.Contains(out, want) {
			t.Errorf("install output lacks %q:\n%s", want, out)
		}
	}
	entries, _ := os.ReadDir(tenant)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "app.py reqs requirements.txt site-packages tenant.toml" {
		t.Errorf("tenant folder after install: %s", got)
	}
	site := filepath.Join(tenant, "site-packages")
	filepath.WalkDir(site, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			t.Error(err)
			return err
		}
		if e.Type()&fs.ModeSymlink != 0 || strings.HasSuffix(p, ".so") || e.Name() == "__pycache__" || e.Name() == "stale.py" {
			t.Errorf("left in site-packages: %s (%v)", p, e.Type())
		}
		return nil
	})
	for _, f := range []string{"Flask-2.2.2.dist-info/METADATA", "Flask-2.2.2.dist-info/RECORD", "Flask-2.2.2.dist-info/entry_points.txt", "markupsafe/_native.py"} {
		if _, err := os.Stat(filepath.Join(site, f)); err != nil {
			t.Error(err)
		}
	}
	out, errOut, code = runCLI(t, in, tenant, "-q", "python", "--env", "PYTHONPATH=/site-packages", "--", "-c",
		"import app, importlib.metadata as m; print(m.version('flask'), m.version('MarkupSafe'), [e.value for e in m.entry_points(group='console_scripts', name='flask')], type(app.app).__name__)")
	if want := "2.2.2 2.1.2 ['flask.cli:main'] Flask\n"; code != 0 || out != want {
		t.Errorf("in the sandbox: exit %d, %q, want %q\n%s", code, out, want, errOut)
	}
}

// TestInstallRefusals: a requirement nothing provides, a package with only
// compiled wheels, and one whose wheel holds only a native module are each
// an error naming it (and the folders searched), and the previous
// site-packages is left as it was, with nothing else left behind.
func TestInstallRefusals(t *testing.T) {
	in := testinterp.Require(t)
	links := t.TempDir()
	fixtureWheel(t, links, "fastthing", "cp311-cp311-manylinux_2_17_x86_64", map[string]string{"fastthing.cpython-311-x86_64-linux-gnu.so": "\x7fELF"})
	fixtureWheel(t, links, "sothing", "py3-none-any", map[string]string{"sothing.cpython-311-x86_64-linux-gnu.so": "\x7fELF"})
	fixtureWheel(t, links, "purething", "py3-none-any", map[string]string{"purething.py": "X = 1\n"})
	for _, tc := range []struct {
		name, file, data string
		wants            []string
		more             map[string]string // more files of the tenant
	}{
		{"missing", "pyproject.toml", "[project]\nname = \"t\"\ndependencies = [\"purething\", \"nosuchthing>=1\"]\n",
			[]string{"nosuchthing (required by " /* the file */, "pyproject.toml", "is in none of the folders searched: " + links}, nil},
		{"compiled-wheels", "requirements.txt", "purething\nfastthing\n",
			[]string{"fastthing ships only compiled wheels (fastthing-1.0-cp311-cp311-manylinux_2_17_x86_64.whl)", "py3-none-any"}, nil},
		{"compiled-modules", "requirements.txt", "purething\nsothing\n",
			[]string{"ships only compiled modules", "sothing-1.0 (sothing.cpython-311-x86_64-linux-gnu.so)"}, nil},
		{"constrained", "requirements.txt", "-r reqs.txt\n", []string{"purething==2.0"},
			map[string]string{"reqs.txt": "purething\n--constraint pins.txt\n", "pins.txt": "purething==2.0\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tenant := t.TempDir()
			os.WriteFile(filepath.Join(tenant, tc.file), []byte(tc.data), 0o644)
			for name, data := range tc.more {
				os.WriteFile(filepath.Join(tenant, name), []byte(data), 0o644)
			}
			os.MkdirAll(filepath.Join(tenant, "site-packages"), 0o755)
			os.WriteFile(filepath.Join(tenant, "site-packages", "previous.py"), []byte("kept\n"), 0o644)
			out, errOut, code := runCLI(t, in, tenant, "-q", "install", "-f", links, tenant)
			if code != 1 {
				t.Fatalf("install: exit %d, want 1\n%s%s", code, out, errOut)
			}
			for _, want := range tc.wants {
				if !strings.Contains(errOut, want) {
					t.Errorf("error lacks %q:\n%s", want, errOut)
				}
			}
			if data, err := os.ReadFile(filepath.Join(tenant, "site-packages", "previous.py")); err != nil || string(data) != "kept\n" {
				t.Errorf("previous site-packages: %q %v", data, err)
			}
			entries, _ := os.ReadDir(tenant)
			sub, _ := os.ReadDir(filepath.Join(tenant, "site-packages"))
			if len(entries) != 2+len(tc.more) || len(sub) != 1 {
				t.Errorf("left behind: %v, site-packages %v", entries, sub)
			}
		})
	}
}
