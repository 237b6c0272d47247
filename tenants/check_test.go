package tenants_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsgi-wasm/wsgi-wasm/policies"
	"github.com/wsgi-wasm/wsgi-wasm/tenants"
)

func TestCheckFindsWhatTheSandboxRefuses(t *testing.T) {
	dir := write(t, "app = \"app:application\"\nhosts = [\"*\"]\n")
	os.WriteFile(filepath.Join(dir, "app.py"), []byte("import os\nimport subprocess\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "fast.cpython-311-x86_64-linux-gnu.so"), []byte{0x7f, 'E', 'L', 'F'}, 0o644)
	os.Symlink("/etc", filepath.Join(dir, "etc"))
	problems, n, err := tenants.CheckTree(dir, policies.DefaultCeiling)
	if err != nil || n != 1 {
		t.Fatalf("n %d err %v", n, err)
	}
	var errs, warns []string
	for _, p := range problems {
		if p.Error {
			errs = append(errs, p.String())
		} else {
			warns = append(warns, p.String())
		}
	}
	all := strings.Join(append(errs, warns...), "\n")
	if len(errs) != 2 || len(warns) != 1 || !strings.Contains(all, "symbolic link") ||
		!strings.Contains(all, "compiled extension module") || !strings.Contains(all, "app.py:2: warning: imports subprocess") {
		t.Fatalf("problems:\n%s", all)
	}
}

func TestCheckExamplesClean(t *testing.T) {
	problems, n, err := tenants.CheckTree("../examples/tenants", policies.DefaultCeiling)
	if err != nil || n != 5 {
		t.Fatalf("checked %d tenants, err %v", n, err)
	}
	for _, p := range problems {
		if p.Error {
			t.Errorf("%s", p)
		}
	}
}

// TestCheckSpecialFilesAndSitePackages: check says what serve refuses, also
// inside site-packages (links, compiled modules), and does not hang on a
// FIFO, be it a source file or tenant.toml itself.
func TestCheckSpecialFilesAndSitePackages(t *testing.T) {
	dir := write(t, "app = \"app:application\"\nhosts = [\"*\"]\n")
	sp := filepath.Join(dir, "site-packages", "pkg")
	os.MkdirAll(sp, 0o755)
	os.Symlink("/usr/lib/python3/dist-packages/six.py", filepath.Join(sp, "six.py"))
	os.WriteFile(filepath.Join(sp, "_speedups.so"), []byte{0x7f, 'E', 'L', 'F'}, 0o644)
	os.WriteFile(filepath.Join(sp, "lazy.py"), []byte("import subprocess\n"), 0o644)
	if err := syscall.Mkfifo(filepath.Join(dir, "app.py"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifoToml := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(fifoToml, tenants.FileName), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan []tenants.Problem, 2)
	go func() { done <- tenants.Check(dir, policies.DefaultCeiling) }()
	go func() { done <- tenants.Check(fifoToml, policies.DefaultCeiling) }()
	var all []string
	for range 2 {
		select {
		case ps := <-done:
			for _, p := range ps {
				all = append(all, p.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatal("check hangs on a FIFO")
		}
	}
	text := strings.Join(all, "\n")
	for _, want := range []string{
		"pkg/six.py: error: symbolic link", "pkg/_speedups.so: error: compiled extension module",
		"app.py: error: special file", "tenant.toml: error:",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in:\n%s", want, text)
		}
	}
	if strings.Contains(text, "lazy.py") {
		t.Errorf("import warnings from site-packages:\n%s", text)
	}
}
