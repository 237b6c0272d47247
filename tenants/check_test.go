package tenants_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	if err != nil || n != 4 {
		t.Fatalf("checked %d tenants, err %v", n, err)
	}
	for _, p := range problems {
		if p.Error {
			t.Errorf("%s", p)
		}
	}
}
