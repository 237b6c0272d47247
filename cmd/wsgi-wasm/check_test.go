package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
)

// TestCheckImportsApps: check says an error exactly where serve would fail
// to start a tenant's app: a SyntaxError, a module or callable that does not
// exist, a dependency that is not vendored; a good tenant passes; tenants
// are reported in folder order; --import=false checks the files only.
func TestCheckImportsApps(t *testing.T) {
	in := testinterp.Require(t)
	tree := t.TempDir()
	tenant := func(name, app, source string) {
		dir := filepath.Join(tree, name)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "tenant.toml"), []byte("app = \""+app+"\"\nhosts = [\""+name+".test\"]\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "app.py"), []byte(source), 0o644)
	}
	good := "def application(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n"
	tenant("a-good", "app:application", good)
	tenant("b-syntax", "app:application", "def application(environ, start_response)\n    pass\n")
	tenant("c-nomodule", "nosuchmodule:application", good)
	tenant("d-nocallable", "app:nothere", good)
	tenant("e-nodependency", "app:application", "import flask\n"+good)
	run := func(args ...string) (string, int) {
		cmd := exec.Command(binary(t), append([]string{"check"}, args...)...)
		cmd.Env = append(os.Environ(), "WSGI_WASM_PYTHON_DIR="+in.Dir)
		out, err := cmd.Output() // the report; the log goes to standard error
		code := exitCode(t, err)
		return string(out), code
	}
	out, code := run(tree)
	if code != 1 {
		t.Fatalf("check exit %d, want 1:\n%s", code, out)
	}
	wants := []string{
		"b-syntax/tenant.toml: error: the app app:application does not import", "SyntaxError",
		"c-nomodule/tenant.toml: error:", "nosuchmodule",
		"d-nocallable/tenant.toml: error:", "nothere",
		"e-nodependency/tenant.toml: error:", "No module named 'flask'",
		"5 tenant(s) checked: 4 error(s)",
	}
	at := 0
	for _, want := range wants {
		i := strings.Index(out[at:], want)
		if i < 0 {
			t.Fatalf("check output lacks %q (in this order) after byte %d:\n%s", want, at, out)
		}
		at += i + len(want)
	}
	if strings.Contains(out, "a-good") {
		t.Errorf("the good tenant is reported:\n%s", out)
	}
	if out, code := run("--import=false", tree); code != 0 || !strings.Contains(out, "0 error(s)") {
		t.Errorf("check --import=false: exit %d, want 0 (the files are fine):\n%s", code, out)
	}
}

// TestCheckRequirements: a requirement of requirements.txt with no
// *.dist-info or *.egg-info in site-packages is a warning naming it.
func TestCheckRequirements(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tenant.toml"), []byte("app = \"app:application\"\nhosts = [\"r.test\"]\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "app.py"), []byte("def application(environ, start_response):\n    return []\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "requirements.txt"), []byte("Flask>=2\nzope.interface\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "site-packages", "Flask-2.2.2.dist-info"), 0o755)
	out, err := exec.Command(binary(t), "check", "--import=false", dir).Output()
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	want := filepath.Join(dir, "requirements.txt") + ": warning: not installed in site-packages: zope-interface ("
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), "0 error(s), 1 warning(s)") {
		t.Errorf("check output lacks %q:\n%s", want, out)
	}
}
