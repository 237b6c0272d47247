package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsgi-wasm/wsgi-wasm/internal/testinterp"
)

// TestSnapshotCommand: `wsgi-wasm snapshot DIR` builds one verified file per
// tenant and exits 0; a tenant that cannot be snapshotted makes it exit 1,
// naming the tenant, while the others still get theirs. With
// --snapshot-base they share one base image.
func TestSnapshotCommand(t *testing.T) {
	in := testinterp.Require(t)
	bin := binary(t)
	tree := t.TempDir()
	tenant := func(name, app string) {
		os.MkdirAll(filepath.Join(tree, name), 0o755)
		os.WriteFile(filepath.Join(tree, name, "tenant.toml"), []byte("app = \"app:application\"\nhosts = [\""+name+".test\"]\n"), 0o644)
		os.WriteFile(filepath.Join(tree, name, "app.py"), []byte(app), 0o644)
	}
	hello := "def application(environ, start_response):\n    start_response('200 OK', [])\n    return [b'hi']\n"
	tenant("a", hello)
	tenant("b", hello)
	// run builds the tree's snapshots with args; wantBases base images.
	run := func(wantBases int, args ...string) (out string, code, files int) {
		snaps := t.TempDir()
		cmd := exec.Command(bin, append(append([]string{"snapshot", "--snapshot-dir", snaps}, args...), tree)...)
		cmd.Env = append(os.Environ(), "WSGI_WASM_PYTHON_DIR="+in.Dir)
		b, err := cmd.CombinedOutput()
		code = exitCode(t, err)
		// The tenants' snapshots, beside any base image they share.
		all, _ := filepath.Glob(filepath.Join(snaps, "*.snap"))
		bases, _ := filepath.Glob(filepath.Join(snaps, "base-*.snap"))
		if len(bases) != wantBases {
			t.Errorf("%v: base images %v, want %d", args, bases, wantBases)
		}
		return string(b), code, len(all) - len(bases)
	}
	out, code, files := run(0)
	if code != 0 || files != 2 || !strings.Contains(out, "2 tenant(s) with a snapshot") {
		t.Fatalf("exit %d with %d files, want 0 and two snapshots:\n%s", code, files, out)
	}
	tenant("c", "_f = open(__file__)\n"+hello)
	out, code, files = run(1, "--snapshot-base")
	if code != 1 || files != 2 || !strings.Contains(out, "tenant c has no snapshot") || !strings.Contains(out, "is open after the app's import") {
		t.Fatalf("exit %d with %d files, want 1, two snapshots and tenant c named with the reason:\n%s", code, files, out)
	}
}
